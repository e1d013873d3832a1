"""The bronze → silver/DLQ/dq_results processing of one delivery: one implementation for batch and streaming.

Steps: validate every payload against the contract, look up reference keys and FX rates, apply
referential and timeliness rules, split rejects (DLQ) from valid rows, drop duplicates (counted),
then compute behaviour features, enrich with reference data and mask PII for silver.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from contracts.rules import Rule
from compliance_assets.transforms.enrichment import BASE_CURRENCY, amount_in_base, join_references, limit_flags, mask_contract_pii, mask_payload_pii, reference_checks
from compliance_assets.transforms.ingestion import ingest_id
from compliance_assets.transforms.features import FEATURE_COLUMNS, HISTORY_DAYS, behaviour_features, reference_features
from compliance_assets.transforms.outcomes import RuleMasks, outcome_tallies
from compliance_assets.transforms.quality import DUPLICATE, flagging_rule_exprs, rejecting_rule_exprs
from compliance_assets.transforms.validation import validate_payloads

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


@dataclass
class CheckedBatch:
    """A delivery after every rule ran, persisted: one narrow row per record with the typed
    contract columns, the reference lookups, `reason_codes` / `dq_warnings`, the rule outcome
    masks of `groups` and, for rejected records only, the raw payload."""

    rows: DataFrame
    groups: list[tuple[RuleMasks, str]]  # each group's masks and what failing its rules does (REJECT / FLAG)
    delivery_date: str

    def valid(self) -> DataFrame:
        return self.rows.where(~F.col("_rejected"))

    def unpersist(self) -> None:
        self.rows.unpersist()


def _rule_masks(rules: list, failed: str, unchecked: str, gate: Column | None = None) -> tuple[RuleMasks, list[Column]]:
    """Masks for pipeline rule expressions (optionally only where `gate` holds)."""
    masks = RuleMasks(tuple(e.rule for e in rules), failed, unchecked)
    fails = [(gate & e.failed) if gate is not None else e.failed for e in rules]
    checked = [(gate & e.checked) if gate is not None else e.checked for e in rules]
    return masks, masks.columns(fails, [~c for c in checked])


def check_batch(bronze: DataFrame, refs: ReferenceFrames, delivery_date: str, lateness_days: int = DEFAULT_LATENESS_DAYS) -> CheckedBatch:
    """Validate and reference-check a delivery's bronze rows; the result is persisted for reuse."""
    delivered = bronze.withColumnRenamed("event_date", "ingest_date")
    validated, contract = validate_payloads(delivered)
    df = reference_checks(validated, refs.kyc, refs.fx, refs.merchants)

    rejecting, reject_cols = _rule_masks(rejecting_rule_exprs(delivery_date, lateness_days), "_reject_failed", "_reject_unchecked")
    df = df.select("*", *reject_cols)
    rejected = contract.any_failed() | rejecting.any_failed()
    flagging, flag_cols = _rule_masks(flagging_rule_exprs(), "_flag_failed", "_flag_unchecked", gate=~rejected)
    df = df.select("*", *flag_cols, rejected.alias("_rejected"))
    contract_cols = [c for c in validated.columns if c not in delivered.columns and not c.startswith("_") and c != "reason_codes"]
    rows = df.select(
        "ingest_id", "ingest_date", "source", "source_file", "source_line",
        # the raw record is kept for the DLQ only (masked there); valid records are re-derivable from bronze,
        # and so is a mapped source's original row, which the DLQ does not copy
        F.when(F.col("_rejected"), F.col("payload")).alias("payload"),
        *contract_cols, "event_date", "fx_rate_to_base", "fx_rate_date",
        F.when(F.col("_rejected"), F.concat("reason_codes", rejecting.reason_codes())).otherwise(F.array().cast("array<string>")).alias("reason_codes"),
        flagging.reason_codes().alias("dq_warnings"),
        "_rejected", contract.failed, contract.unchecked, rejecting.failed, rejecting.unchecked, flagging.failed, flagging.unchecked,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    return CheckedBatch(rows, [(contract, REJECT), (rejecting, REJECT), (flagging, FLAG)], delivery_date)


def duplicate_ingest_ids(batch: CheckedBatch, seen: DataFrame, late_only: bool = True) -> DataFrame:
    """Ingest ids of valid records whose transaction_id was already delivered.

    Within the delivery the first copy (by source, file, line) is kept; a record whose
    transaction_id is in `seen` (earlier silver rows: earlier deliveries, or earlier micro-batches
    of a streamed day) is a duplicate too. A daily delivery checks only its late records, since an
    earlier delivery cannot hold a later event date; a micro-batch checks all of them.
    """
    valid = batch.valid().select("transaction_id", "event_date", "source", "source_file", "source_line")
    key = ingest_id(F.col("source"), F.col("source_file"), F.col("source_line")).alias("ingest_id")
    first = Window.partitionBy("transaction_id").orderBy("source", "source_file", "source_line")
    in_batch = valid.withColumn("_rn", F.row_number().over(first)).where("_rn > 1").select(key)
    candidates = valid.where(F.col("event_date") < F.lit(dt.date.fromisoformat(batch.delivery_date))) if late_only else valid
    across = candidates.join(seen.select("transaction_id").distinct(), "transaction_id", "left_semi").select(key)
    return in_batch.unionByName(across).distinct()


def batch_tallies(batch: CheckedBatch) -> tuple[list[tuple[Rule, str, int, int]], dict[str, int]]:
    """(rule, action, checked, failed) for every rule, and the batch's record counts (`records`,
    `valid`), from one aggregation over the outcome masks."""
    tallies, by_rejected = outcome_tallies(batch.rows, [masks for masks, _ in batch.groups], by=("_rejected",))
    records = sum(by_rejected.values())
    actions = [action for masks, action in batch.groups for _ in masks.rules]
    counts = [(rule, action, records - unchecked, failed) for (rule, unchecked, failed), action in zip(tallies, actions)]
    return counts, {"records": records, "valid": by_rejected.get((False,), 0)}


def rule_counts(batch_counts: list[tuple[Rule, str, int, int]], duplicates: int, valid_rows: int) -> list[tuple[Rule, str, int, int]]:
    """The batch's rule counts plus the duplicate rule (checked over the valid records)."""
    return [*batch_counts, (DUPLICATE, DROP, valid_rows, duplicates)]


def dlq_frame(batch: CheckedBatch, run_id: str | None, pii_salt: str) -> DataFrame:
    """Every rejected record, with its payload and all its reason codes.

    The payload's names and free text (the contract's `x-pii` fields) are masked as in silver: the
    record in clear stays only in bronze (access-restricted), which `ingest_id` points to; so does a
    mapped source's original row, which the DLQ does not copy.
    """
    return (
        batch.rows.where(F.col("_rejected"))
        .withColumn("event_date", F.col("ingest_date"))
        .withColumn("payload", mask_payload_pii(F.col("payload"), "transactions", pii_salt))
        .withColumn("source_payload", F.lit(None).cast("string"))  # in bronze only (ingest_id)
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
    refs: ReferenceFrames,
    duplicates: DataFrame,
    history: DataFrame,
    pii_salt: str,
    run_id: str | None,
) -> DataFrame:
    """Valid, first-seen records: FX-normalised, enriched, PII-masked, with behaviour features."""
    day = F.lit(batch.delivery_date).cast("date")
    valid = amount_in_base(batch.valid().join(F.broadcast(duplicates), "ingest_id", "left_anti"))
    # window features on the transaction's own columns; reference attributes, constants and the
    # ingest id (derived from source, file and line) are added after the shuffle so it moves only
    # what the record itself carries
    featured = behaviour_features(valid.drop("ingest_id", "ingest_date", "base_currency"), history)
    enriched = join_references(featured, refs.kyc, refs.limits, refs.merchants, refs.watchlists)
    enriched = mask_contract_pii(reference_features(limit_flags(enriched)), "transactions", pii_salt)
    return (
        enriched.withColumn("ingest_id", ingest_id(F.col("source"), F.col("source_file"), F.col("source_line")))
        .withColumn("ingest_date", day)
        .withColumn("base_currency", F.lit(BASE_CURRENCY))
        .withColumn("arrival_delay_days", F.datediff(day, F.col("event_date")))
        .withColumn("is_late_arrival", F.col("arrival_delay_days") > 0)
        .withColumn("dq_status", F.when(F.size("dq_warnings") > 0, "WARN").otherwise("PASS"))
        .withColumn("dagster_run_id", F.lit(run_id))
        .withColumn("processed_at", F.current_timestamp())
        .select(*SILVER_COLUMNS)
    )
