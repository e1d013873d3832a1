"""The bronze → silver/DLQ/dq_results processing of one delivery: one implementation for batch and streaming.

Steps: validate every payload against the contract, join reference data, apply referential and
timeliness rules, split rejects (DLQ) from valid rows, drop duplicates (counted), then enrich,
mask PII and compute behaviour features for silver.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from contracts.rules import Rule
from compliance_assets.transforms.enrichment import join_references, mask_contract_pii, normalise_amounts
from compliance_assets.transforms.features import FEATURE_COLUMNS, HISTORY_DAYS, behaviour_features
from compliance_assets.transforms.quality import DUPLICATE, flagging_rule_exprs, rejecting_rule_exprs
from compliance_assets.transforms.validation import rule_outcomes, validate_payloads

REJECT, DROP, FLAG = "reject", "drop_duplicate", "flag"
DEFAULT_LATENESS_DAYS = 7

SILVER_COLUMNS = (
    "transaction_id", "event_time", "event_date", "ingest_date", "account_id", "merchant_id", "counterparty_id",
    "amount", "currency", "amount_base", "base_currency", "fx_rate_to_base", "fx_rate_date", "channel", "country", "mcc_code",
    "merchant_mcc_code", "merchant_country", "risk_flags", "latitude", "longitude", "delivery_latitude",
    "delivery_longitude", "description", "counterparty_name", "home_country", "home_latitude", "home_longitude",
    "kyc_risk_rating", "pep_flag", "segment", "typical_amount", "account_opened_date", "last_activity_date",
    "single_transaction_limit", "daily_limit", "reporting_threshold", "exceeds_single_limit",
    "just_below_reporting_threshold", "watchlist_hit", "watchlist_names", *FEATURE_COLUMNS,
    "is_late_arrival", "arrival_delay_days", "dq_status", "dq_warnings", "source", "ingest_id", "source_file",
    "source_line", "dagster_run_id", "processed_at",
)
DLQ_COLUMNS = (
    "ingest_id", "event_date", "source", "source_file", "source_line", "payload", "source_payload",
    "transaction_id", "reason_codes", "primary_reason", "dagster_run_id", "rejected_at",
)


@dataclass(frozen=True)
class ReferenceFrames:
    """The reference data a delivery is validated and enriched against."""

    kyc: DataFrame
    limits: DataFrame
    fx: DataFrame
    merchants: DataFrame
    watchlists: DataFrame


@dataclass(frozen=True)
class RuleAction:
    """A rule and what failing it does (reject to the DLQ, or flag the silver row)."""

    rule: Rule
    action: str


@dataclass
class CheckedBatch:
    """A delivery after every rule ran: rows carry typed columns, reason codes and sparse rule
    outcomes (`_failed_rules`, `_unchecked_rules`: indices into `rules`)."""

    rows: DataFrame
    rules: list[RuleAction]
    delivery_date: str

    def unpersist(self) -> None:
        self.rows.unpersist()


def _append_rules(df: DataFrame, exprs, offset: int, gate=None) -> tuple[DataFrame, list[Column]]:
    """Add the outcomes of `exprs` (rule index offset `offset`) to the sparse outcome arrays;
    return the frame and the per-rule failure columns. `gate` limits where they apply."""
    pairs = [((gate & e.checked) if gate is not None else e.checked, (gate & e.failed) if gate is not None else e.failed) for e in exprs]
    failed, unchecked = rule_outcomes(pairs, offset)
    df = df.withColumn("_failed_rules", F.concat("_failed_rules", failed)).withColumn("_unchecked_rules", F.concat("_unchecked_rules", unchecked))
    return df, [F.array_contains("_failed_rules", offset + i) for i in range(len(exprs))]


def check_batch(bronze: DataFrame, refs: ReferenceFrames, delivery_date: str, lateness_days: int = DEFAULT_LATENESS_DAYS) -> CheckedBatch:
    """Validate and reference-check a delivery's bronze rows; the result is persisted for reuse."""
    validated, contract_rules = validate_payloads(bronze.withColumnRenamed("event_date", "ingest_date"))
    rules = [RuleAction(r, REJECT) for r in contract_rules]
    df = join_references(validated, refs.kyc, refs.limits, refs.fx, refs.merchants, refs.watchlists)

    rejecting = rejecting_rule_exprs(delivery_date, lateness_days)
    df, failed = _append_rules(df, rejecting, len(rules))
    rules += [RuleAction(e.rule, REJECT) for e in rejecting]
    pipeline_reasons = F.filter(F.array(*[F.when(f, F.lit(e.rule.reason_code)) for e, f in zip(rejecting, failed)]), lambda c: c.isNotNull())
    df = df.withColumn("reason_codes", F.concat("reason_codes", pipeline_reasons))

    flagging = flagging_rule_exprs()
    df, failed = _append_rules(df, flagging, len(rules), gate=F.size("reason_codes") == 0)
    rules += [RuleAction(e.rule, FLAG) for e in flagging]
    warnings = F.filter(F.array(*[F.when(f, F.lit(e.rule.reason_code)) for e, f in zip(flagging, failed)]), lambda c: c.isNotNull())
    rows = df.withColumn("dq_warnings", warnings).persist(StorageLevel.MEMORY_AND_DISK)
    return CheckedBatch(rows, rules, delivery_date)


def duplicate_ingest_ids(batch: CheckedBatch, prior_silver: DataFrame) -> DataFrame:
    """Ingest ids of valid records whose transaction_id was already delivered.

    Within the delivery the first copy (by source, file, line) is kept; a late record whose
    transaction_id is already in silver from an earlier delivery is a duplicate too.
    """
    valid = batch.rows.where(F.size("reason_codes") == 0).select("ingest_id", "transaction_id", "event_date", "source", "source_file", "source_line")
    first = Window.partitionBy("transaction_id").orderBy("source", "source_file", "source_line")
    in_batch = valid.withColumn("_rn", F.row_number().over(first)).where("_rn > 1").select("ingest_id")
    day = dt.date.fromisoformat(batch.delivery_date)
    late = valid.where(F.col("event_date") < F.lit(day))
    seen = prior_silver.where(F.col("ingest_date") < F.lit(day)).select("transaction_id").distinct()
    across = late.join(seen, "transaction_id", "left_semi").select("ingest_id")
    return in_batch.unionByName(across).distinct()


def rule_counts(batch: CheckedBatch, total: int, duplicates: int, valid_rows: int) -> list[tuple[Rule, str, int, int]]:
    """(rule, action, checked, failed) for every rule of a batch of `total` records, from one
    aggregation over the sparse outcomes."""
    coded = F.concat(F.transform("_failed_rules", lambda i: i * 2 + 1), F.transform("_unchecked_rules", lambda i: i * 2))
    tallies = {r["code"]: r["count"] for r in batch.rows.select(F.explode(coded).alias("code")).groupBy("code").count().collect()}
    counts = [(ra.rule, ra.action, total - tallies.get(2 * i, 0), tallies.get(2 * i + 1, 0)) for i, ra in enumerate(batch.rules)]
    counts.append((DUPLICATE, DROP, valid_rows, duplicates))
    return counts


def dlq_frame(batch: CheckedBatch, run_id: str | None) -> DataFrame:
    """Every rejected record, with its raw payload and all its reason codes."""
    return (
        batch.rows.where(F.size("reason_codes") > 0)
        .withColumn("event_date", F.col("ingest_date"))
        .withColumn("primary_reason", F.col("reason_codes")[0])
        .withColumn("dagster_run_id", F.lit(run_id))
        .withColumn("rejected_at", F.current_timestamp())
        .select(*DLQ_COLUMNS)
    )


def history_window(delivery_date: str, lateness_days: int = DEFAULT_LATENESS_DAYS) -> tuple[dt.date, dt.date]:
    """The event dates of earlier silver rows that features of this delivery may look at."""
    day = dt.date.fromisoformat(delivery_date)
    return day - dt.timedelta(days=lateness_days + HISTORY_DAYS), day


def silver_frame(
    batch: CheckedBatch,
    duplicates: DataFrame,
    history: DataFrame,
    pii_salt: str,
    run_id: str | None,
) -> DataFrame:
    """Valid, first-seen records: FX-normalised, enriched, PII-masked, with behaviour features."""
    day = F.lit(batch.delivery_date).cast("date")
    valid = batch.rows.where(F.size("reason_codes") == 0).join(F.broadcast(duplicates), "ingest_id", "left_anti")
    enriched = mask_contract_pii(normalise_amounts(valid), "transactions", pii_salt)
    featured = behaviour_features(enriched, history)
    return (
        featured.withColumn("arrival_delay_days", F.datediff(day, F.col("event_date")))
        .withColumn("is_late_arrival", F.col("arrival_delay_days") > 0)
        .withColumn("dq_status", F.when(F.size("dq_warnings") > 0, "WARN").otherwise("PASS"))
        .withColumn("dagster_run_id", F.lit(run_id))
        .withColumn("processed_at", F.current_timestamp())
        .select(*SILVER_COLUMNS)
    )
