"""The bronze → silver/DLQ/dq_results processing of deliveries: one implementation for batch and streaming.

Steps: validate every payload against the contract, look up reference keys and FX rates, apply
referential and timeliness rules, split rejects (DLQ) from valid rows, drop duplicates (counted),
then compute behaviour features, enrich with reference data and mask PII for silver.

A batch may hold several delivery days (a range in one pass) and gives every row what a run of its
own day alone gives it: rules read the row's delivery day (`ingest_date`), reference frames carry the
day each snapshot serves, duplicates are resolved in delivery order (`find_duplicates`), and behaviour
features see only the rows a run of the row's day would have seen (`window_features`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from contracts.rules import Rule
from compliance_assets.transforms.enrichment import BASE_CURRENCY, amount_in_base, join_references, limit_flags, mask_contract_pii, mask_payload_pii, reference_checks
from compliance_assets.transforms.ingestion import ingest_id
from compliance_assets.transforms.features import FEATURE_COLUMNS, HISTORY_COLUMNS, HISTORY_DAYS, WINDOWS_SECONDS, behaviour_features, reference_features
from compliance_assets.transforms.rule_outcomes import RuleMasks, bit_set
from compliance_assets.transforms.quality import DUPLICATE, flagging_rule_exprs, rejecting_rule_exprs
from compliance_assets.transforms.validation import validate_payloads

REJECT, DROP, FLAG = "reject", "drop_duplicate", "flag"
DEFAULT_LATENESS_DAYS = 7
DAY = 10  # characters of a 'YYYY-MM-DD' key prefix
# window_features relies on it: a window reaches back at most HISTORY_DAYS before a row's earliest allowed
# event date, so it never holds a row that a run of the row's own delivery day would not have read
assert max(WINDOWS_SECONDS.values()) <= HISTORY_DAYS * 86_400


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
    """The reference data deliveries are validated and enriched against. A frame with an `ingest_date`
    column holds, for each delivery day, the snapshot that serves it, so one set of frames serves a range
    of days; a frame without one serves every delivery alike."""

    kyc: DataFrame
    limits: DataFrame
    fx: DataFrame
    merchants: DataFrame
    watchlists: DataFrame

    @property
    def by_delivery(self) -> bool:
        return "ingest_date" in self.kyc.columns


@dataclass
class CheckedBatch:
    """Deliveries after every rule ran, persisted: one narrow row per record with the typed contract
    columns, its delivery day (`ingest_date`), the reference lookups, `reason_codes` / `dq_warnings`, the
    rule outcome masks of `groups` and, for rejected records only, the raw payload. It holds the
    deliveries of days `delivery_date` .. `last_day` (one day when `last_day` is None)."""

    rows: DataFrame
    groups: list[tuple[RuleMasks, str]]  # each group's masks and what failing its rules does (REJECT / FLAG)
    delivery_date: str
    lateness_days: int = DEFAULT_LATENESS_DAYS
    last_day: str | None = None

    @property
    def days(self) -> list[str]:
        first, last = dt.date.fromisoformat(self.delivery_date), dt.date.fromisoformat(self.last_day or self.delivery_date)
        return [str(first + dt.timedelta(days=i)) for i in range((last - first).days + 1)]

    @property
    def single_day(self) -> bool:
        return (self.last_day or self.delivery_date) == self.delivery_date

    def valid(self) -> DataFrame:
        return self.rows.where(~F.col("_rejected"))

    def unpersist(self) -> None:
        self.rows.unpersist()


def _day_key(value: Column, day: Column) -> Column:
    """`value` behind a fixed-width 'YYYY-MM-DD' prefix (null stays null)."""
    return F.concat(F.date_format(day, "yyyy-MM-dd"), value)


def _keyed_rows(df: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """Rows with their reference keys behind their delivery day, to join frames from `_keyed_frame`."""
    return df.withColumns({k: _day_key(F.col(k), F.col("ingest_date")) for k in keys})


def _unkeyed_rows(df: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    return df.withColumns({k: F.expr(f"substring(`{k}`, {DAY + 1})") for k in keys})


def _keyed_frame(frame: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """A reference frame with its keys behind the delivery day each row serves: the plain equi-joins of
    enrichment.py then match every delivery with its own snapshot only."""
    return frame.withColumns({k: _day_key(F.col(k), F.col("ingest_date")) for k in keys}).drop("ingest_date")


def _rule_masks(rules: list, failed: str, unchecked: str, gate: Column | None = None) -> tuple[RuleMasks, list[Column]]:
    """Masks for pipeline rule expressions (optionally only where `gate` holds)."""
    masks = RuleMasks(tuple(e.rule for e in rules), failed, unchecked)
    fails = [(gate & e.failed) if gate is not None else e.failed for e in rules]
    checked = [(gate & e.checked) if gate is not None else e.checked for e in rules]
    return masks, masks.columns(fails, [~c for c in checked])


def check_batch(
    bronze: DataFrame, refs: ReferenceFrames, delivery_date: str, lateness_days: int = DEFAULT_LATENESS_DAYS, last_day: str | None = None
) -> CheckedBatch:
    """Validate and reference-check the bronze rows of the deliveries of `delivery_date` .. `last_day` (that
    day alone by default); the result is persisted for reuse."""
    delivered = bronze.withColumnRenamed("event_date", "ingest_date")
    validated, contract = validate_payloads(delivered)
    if refs.by_delivery:
        keys = ("account_id", "merchant_id", "currency")
        df = reference_checks(
            _keyed_rows(validated, keys), _keyed_frame(refs.kyc, ("account_id",)), _keyed_frame(refs.fx, ("currency",)), _keyed_frame(refs.merchants, ("merchant_id",))
        )
        df = _unkeyed_rows(df, keys)
    else:
        df = reference_checks(validated, refs.kyc, refs.fx, refs.merchants)

    rejecting, reject_cols = _rule_masks(rejecting_rule_exprs(F.col("ingest_date"), lateness_days), "_reject_failed", "_reject_unchecked")
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
    return CheckedBatch(rows, [(contract, REJECT), (rejecting, REJECT), (flagging, FLAG)], delivery_date, lateness_days, last_day)


@dataclass
class Duplicates:
    """The records dropped as duplicates: their ingest ids (a small local frame) and how many per delivery day."""

    ids: DataFrame
    per_day: dict[str, int]


def find_duplicates(batch: CheckedBatch, seen: DataFrame, late_only: bool = True) -> Duplicates:
    """Valid records whose transaction_id was already delivered, as runs of each delivery day find them.

    Within a delivery day the first copy (by source, file, line) is kept. A record is a duplicate too
    when its transaction_id is in silver already, with an event date a run of the record's own day reads
    (history_window): in `seen` (silver rows delivered before the batch: earlier days, or earlier
    micro-batches of a streamed day) or kept from an earlier day of the batch. A daily delivery checks
    only its late records, since an earlier delivery cannot hold a later event date; a micro-batch checks
    all of them. One Spark job collects the few candidates; a transaction_id delivered on several days of
    the batch is resolved here in delivery order, since whether an earlier copy was kept depends on its
    own check.
    """
    span = batch.lateness_days + HISTORY_DAYS
    first_copy = Window.partitionBy("transaction_id", "ingest_date").orderBy("source", "source_file", "source_line")
    same_id = Window.partitionBy("transaction_id")
    checked = (F.col("event_date") < F.col("ingest_date")) if late_only else F.lit(True)
    newest_seen = seen.groupBy("transaction_id").agg(F.max("event_date").alias("_seen"))
    candidates = (
        batch.valid()
        .select("transaction_id", "event_date", "ingest_date", "source", "source_file", "source_line")
        .withColumn("_rn", F.row_number().over(first_copy))
        .withColumn("_days", F.size(F.collect_set("ingest_date").over(same_id)))
        .join(newest_seen, "transaction_id", "left")
        .withColumn("_checked", checked)
        .withColumn("_seen_before", F.coalesce(checked & (F.col("_seen") >= F.date_sub("ingest_date", span)), F.lit(False)))
        .where((F.col("_rn") > 1) | F.col("_seen_before") | (F.col("_days") > 1))
        .select(
            ingest_id(F.col("source"), F.col("source_file"), F.col("source_line")).alias("ingest_id"),
            "transaction_id", "ingest_date", "event_date", "_rn", "_days", "_checked", "_seen_before",
        )
        .collect()
    )
    dropped: list[tuple[str, dt.date]] = []
    several_days: dict[str, list] = defaultdict(list)
    for r in candidates:
        if r._rn > 1 or (r._days == 1 and r._seen_before):
            dropped.append((r.ingest_id, r.ingest_date))
        elif r._rn == 1:
            several_days[r.transaction_id].append(r)
    for copies in several_days.values():
        kept: list = []
        for r in sorted(copies, key=lambda c: c.ingest_date):
            reach = r.ingest_date - dt.timedelta(days=span)
            if r._checked and (r._seen_before or any(k.event_date >= reach for k in kept)):
                dropped.append((r.ingest_id, r.ingest_date))
            else:
                kept.append(r)
    ids = batch.rows.sparkSession.createDataFrame([(i,) for i, _ in dropped], "ingest_id string")
    return Duplicates(ids, dict(Counter(str(day) for _, day in dropped)))


def duplicate_ingest_ids(batch: CheckedBatch, seen: DataFrame, late_only: bool = True) -> DataFrame:
    """Ingest ids of valid records whose transaction_id was already delivered (`find_duplicates`)."""
    return find_duplicates(batch, seen, late_only).ids


RuleCounts = list[tuple[Rule, str, int, int]]


def daily_tallies(batch: CheckedBatch) -> dict[str, tuple[RuleCounts, dict[str, int]]]:
    """{delivery day: ((rule, action, checked, failed) for every rule, the day's record counts `records` and
    `valid`)} for every day of the batch (zeros for a day without records), from one aggregation."""
    aggs = [F.count(F.lit(1)).alias("_records"), F.count(F.when(~F.col("_rejected"), 1)).alias("_valid")]
    for g, (masks, _) in enumerate(batch.groups):
        for i in range(len(masks.rules)):
            aggs += [F.count(F.when(bit_set(F.col(masks.unchecked), i), 1)).alias(f"_u{g}_{i}"), F.count(F.when(masks.failed_bit(i), 1)).alias(f"_f{g}_{i}")]
    by_day = {str(r.ingest_date): r for r in batch.rows.groupBy("ingest_date").agg(*aggs).collect()}
    out = {}
    for day in batch.days:
        r = by_day.get(day)
        records = r["_records"] if r else 0
        counts = [
            (rule, action, records - (r[f"_u{g}_{i}"] if r else 0), r[f"_f{g}_{i}"] if r else 0)
            for g, (masks, action) in enumerate(batch.groups)
            for i, rule in enumerate(masks.rules)
        ]
        out[day] = (counts, {"records": records, "valid": r["_valid"] if r else 0})
    return out


def batch_tallies(batch: CheckedBatch) -> tuple[RuleCounts, dict[str, int]]:
    """(rule, action, checked, failed) for every rule and the record counts of a one-day batch."""
    return daily_tallies(batch)[batch.delivery_date]


def rule_counts(batch_counts: RuleCounts, duplicates: int, valid_rows: int) -> RuleCounts:
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


def window_features(current: DataFrame, history: DataFrame, batch: CheckedBatch) -> DataFrame:
    """Behaviour features of `current` (valid rows of the batch, with `ingest_date`) over `history` (silver
    rows delivered before the batch), each row seeing what a run of its own delivery day would see: the
    account's rows delivered up to that day whose event date that run reads (history_window).

    One day: `behaviour_features` as it is. Several days, in one pass: a row's windows look back in event
    time, so a later day can only disturb them through a late record (event date before its delivery day).
    Each account's rows are therefore split into segments that start at every day delivering a late record
    of the account, and a segment's window partition holds the account's history, its earlier segments and
    itself: the later days of a segment bring on-time rows only, which come after every row of an earlier
    day. A run of one day also reads only event dates from lateness_days + HISTORY_DAYS days back. No
    count or sum window reaches that far (asserted above), but the previous transaction, or the previous
    located one, may lie further back in a segment than the row's own run reads. Where the segment does
    not show a located transaction the day's run reads before the day's earliest event date, the
    account's rows of that day get a partition of their own holding exactly what that run reads.
    """
    if batch.single_day:
        return behaviour_features(current, history)
    # read several times below: materialised once, which also spares the optimiser the validation plan each time
    current = current.localCheckpoint()
    span = batch.lateness_days + HISTORY_DAYS
    late_days = current.where(F.col("event_date") < F.col("ingest_date")).select("account_id", F.col("ingest_date").alias("_late")).distinct()
    starts = (
        current.select("account_id", "ingest_date").distinct()
        .join(late_days, "account_id", "left")
        .groupBy("account_id", "ingest_date")
        .agg(F.coalesce(F.max(F.when(F.col("_late") <= F.col("ingest_date"), F.col("_late"))), F.lit(batch.delivery_date).cast("date")).alias("_start"))
    )
    segments = starts.select("account_id", "_start").distinct()
    rows = current.join(starts, ["account_id", "ingest_date"])
    # what a segment reads before its own rows: the account's earlier segments, then its silver history
    earlier = (
        rows.select(*HISTORY_COLUMNS, F.col("ingest_date").alias("_delivered"))
        .join(segments, "account_id")
        .where((F.col("_delivered") < F.col("_start")) & (F.col("event_date") >= F.date_sub("_start", span)))
        .select(*HISTORY_COLUMNS, "_start")
    )
    before = history.select(*HISTORY_COLUMNS).join(segments, "account_id").where(F.col("event_date") >= F.date_sub("_start", span))
    context = earlier.unionByName(before.select(*HISTORY_COLUMNS, "_start"))

    # the (account, delivery day)s after a segment's first day whose run may read less than the segment holds:
    # no located transaction that run reads from before the day's earliest event date (conservative: such
    # a day only costs a partition of its own, which is exact)
    members = context.withColumn("_delivered", F.lit(None).cast("date")).unionByName(rows.select(*HISTORY_COLUMNS, "_start", F.col("ingest_date").alias("_delivered")))
    located = members.where(F.col("latitude").isNotNull() & F.col("longitude").isNotNull()).select("account_id", "_start", F.col("event_date").alias("_located")).distinct()
    days = rows.groupBy("account_id", "ingest_date", "_start").agg(F.min("event_date").alias("_earliest"))
    shown = (
        days.join(located, ["account_id", "_start"])
        .where((F.col("_located") >= F.date_sub("ingest_date", span)) & (F.col("_located") < F.col("_earliest")))
        .select("account_id", "ingest_date").distinct()
    )
    own = days.where(F.col("ingest_date") > F.col("_start")).join(shown, ["account_id", "ingest_date"], "left_anti").select("account_id", "ingest_date", "_start")
    rows = rows.join(own.select("account_id", "ingest_date", F.lit(True).alias("_own")), ["account_id", "ingest_date"], "left")
    own_context = (
        members.join(own.withColumnRenamed("ingest_date", "_day"), ["account_id", "_start"])
        .where(F.coalesce(F.col("_delivered") < F.col("_day"), F.lit(True)) & (F.col("event_date") >= F.date_sub("_day", span)))
    )

    def partition(frame: DataFrame, tag: str, day: str) -> DataFrame:
        """Window partitions by tag (S: a segment, D: an account's day), day and account."""
        return frame.withColumn("account_id", F.concat(F.lit(tag), _day_key(F.col("account_id"), F.col(day))))

    segment_history = context.unionByName(rows.where(F.col("_own")).select(*HISTORY_COLUMNS, "_start"))
    featured = behaviour_features(
        partition(rows.where(F.col("_own").isNull()), "S", "_start").unionByName(partition(rows.where(F.col("_own")), "D", "ingest_date")),
        partition(segment_history, "S", "_start").select(*HISTORY_COLUMNS).unionByName(partition(own_context, "D", "_day").select(*HISTORY_COLUMNS)),
    )
    return featured.withColumn("account_id", F.expr(f"substring(account_id, {DAY + 2})")).drop("_start", "_own")


def silver_frame(
    batch: CheckedBatch,
    refs: ReferenceFrames,
    duplicates: DataFrame,
    history: DataFrame,
    pii_salt: str,
    run_id: str | None,
) -> DataFrame:
    """Valid, first-seen records: FX-normalised, enriched, PII-masked, with behaviour features."""
    valid = amount_in_base(batch.valid().join(F.broadcast(duplicates), "ingest_id", "left_anti"))
    # window features on the transaction's own columns; reference attributes, constants and the
    # ingest id (derived from source, file and line) are added after the shuffle so it moves only
    # what the record itself carries
    featured = window_features(valid.drop("ingest_id", "base_currency"), history, batch)
    if refs.by_delivery:
        keys = ("account_id", "merchant_id", "counterparty_id")
        enriched = join_references(
            _keyed_rows(featured, keys), _keyed_frame(refs.kyc, ("account_id",)), _keyed_frame(refs.limits, ("account_id",)),
            _keyed_frame(refs.merchants, ("merchant_id",)), _keyed_frame(refs.watchlists, ("entity_id",)),
        )
        enriched = _unkeyed_rows(enriched, keys)
    else:
        enriched = join_references(featured, refs.kyc, refs.limits, refs.merchants, refs.watchlists)
    enriched = mask_contract_pii(reference_features(limit_flags(enriched)), "transactions", pii_salt)
    return (
        enriched.withColumn("ingest_id", ingest_id(F.col("source"), F.col("source_file"), F.col("source_line")))
        .withColumn("base_currency", F.lit(BASE_CURRENCY))
        .withColumn("arrival_delay_days", F.datediff(F.col("ingest_date"), F.col("event_date")))
        .withColumn("is_late_arrival", F.col("arrival_delay_days") > 0)
        .withColumn("dq_status", F.when(F.size("dq_warnings") > 0, "WARN").otherwise("PASS"))
        .withColumn("dagster_run_id", F.lit(run_id))
        .withColumn("processed_at", F.current_timestamp())
        .select(*SILVER_COLUMNS)
    )
