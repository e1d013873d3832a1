"""Per-record rule outcomes as bit masks: cheap to compute, carry and count.

Each group of up to 63 rules keeps two BIGINT columns per record: bit i of `failed` is set when
rule i failed, bit i of `unchecked` when it did not apply. Reason codes are spelled out only for
records that failed something, and dq_results counts come from one aggregation over the masks.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from contracts.rules import Rule

MAX_RULES = 63


@dataclass(frozen=True)
class RuleMasks:
    """A group of rules and the names of the columns holding their outcome masks."""

    rules: tuple[Rule, ...]
    failed: str
    unchecked: str

    def failed_bit(self, i: int) -> Column:
        return bit_set(F.col(self.failed), i)

    def any_failed(self) -> Column:
        return F.col(self.failed) != 0

    def reason_codes(self) -> Column:
        """The reason codes of the failed rules, in rule order (empty where none failed)."""
        codes = F.filter(F.array(*[F.when(self.failed_bit(i), F.lit(r.reason_code)) for i, r in enumerate(self.rules)]), lambda c: c.isNotNull())
        return F.when(self.any_failed(), codes).otherwise(F.array().cast("array<string>"))

    def columns(self, failed: list[Column], unchecked: list[Column]) -> list[Column]:
        """The two mask columns from per-rule failed / not-applicable conditions."""
        return [bitmask(failed).alias(self.failed), bitmask(unchecked).alias(self.unchecked)]


def bit_set(mask: Column, i: int) -> Column:
    return mask.bitwiseAND(F.lit(1 << i)) != 0


def bitmask(conditions: list[Column]) -> Column:
    """A BIGINT with bit i set where conditions[i] is true (null counts as false)."""
    if len(conditions) > MAX_RULES:
        raise ValueError(f"{len(conditions)} rules in one group; at most {MAX_RULES} fit a mask")
    out = F.lit(0).cast("long")
    for i, cond in enumerate(conditions):
        out = out + F.when(cond, F.lit(1 << i).cast("long")).otherwise(F.lit(0).cast("long"))
    return out


def outcome_tallies(df: DataFrame, groups: list[RuleMasks], by: tuple[str, ...] = ()) -> tuple[list[tuple[Rule, int, int]], dict[tuple, int]]:
    """(rule, records it did not apply to, records that failed it) for every rule of `groups`, and
    the record count per value of the `by` columns.

    One aggregation: records are counted per distinct combination of masks (few: most records
    fail nothing), and the bits are tallied from those counts.
    """
    keys = [c for group in groups for c in (group.unchecked, group.failed)]
    combos = df.groupBy(*keys, *by).count().collect()
    tallies = []
    for group in groups:
        for i, rule in enumerate(group.rules):
            unchecked = sum(r["count"] for r in combos if (r[group.unchecked] >> i) & 1)
            failed = sum(r["count"] for r in combos if (r[group.failed] >> i) & 1)
            tallies.append((rule, unchecked, failed))
    records: dict[tuple, int] = {}
    for r in combos:
        key = tuple(r[c] for c in by)
        records[key] = records.get(key, 0) + r["count"]
    return tallies, records
