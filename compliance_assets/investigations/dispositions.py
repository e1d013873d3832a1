"""alert_dispositions: investigators' decisions (confirm, dismiss, escalate) on alerts, as an append-only history.

Decisions arrive as CSV or JSON files in the file drop's `dispositions/<day>/` folder (written by case-management
exports, by hand, or by the `compliance-dispositions` CLI). Partition = the day they were received. Each record is
checked against contracts/alert_dispositions.schema.json, then against the lake: the alert must exist in
anomaly_alerts, and the decision cannot predate the transaction or lie in the future. Valid decisions are
inserted once (keyed by a content hash), never updated or deleted: a later decision on the same alert supersedes
the earlier one while both stay in the table. Everything else goes to alert_dispositions_dlq with reason codes:
one bad record or one unreadable file never fails the day, and a day without decisions (no folder, or files with
no records) is materialised with zero rows.

Alerts are looked up as the table stands (no graph dependency on anomaly_alerts): training features depend on
this asset, and alerts depend on scores that depend on those features.
"""

import datetime as dt
import json
from collections import Counter

from dagster import AssetCheckResult, AssetExecutionContext, AssetSpec, BackfillPolicy, MaterializeResult, asset_check, multi_asset
from dagster_pyspark import PySparkResource
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.investigations.decision_files import (
    DECIDED_BEFORE_TRANSACTION, DECIDED_IN_FUTURE, UNKNOWN_ALERT, Decision, Rejected, check_file, unreadable_file,
)
from compliance_assets.investigations.labels import SCHEMA, current_decisions
from compliance_assets.metadata import delta_metadata, markdown_table
from partitions import daily_partitions
from resources.file_drops import FileDropResource
from resources.lake import LakeResource
from catalog import DISPOSITIONS, DISPOSITIONS_DLQ, Days

ALERTS = "anomaly_alerts"
DROP_FOLDER = "dispositions"
FUTURE_TOLERANCE = dt.timedelta(minutes=10)  # clock skew between the investigators' tools and the platform

DLQ_SCHEMA = T.StructType(
    [
        T.StructField("source_file", T.StringType(), False),
        T.StructField("source_row", T.IntegerType(), True),  # null: the whole file could not be read
        T.StructField("alert_id", T.StringType(), True),
        T.StructField("raw", T.StringType(), False),
        T.StructField("reason_codes", T.ArrayType(T.StringType(), False), False),
        T.StructField("reason_detail", T.StringType(), False),
        T.StructField("received_day", T.DateType(), False),
        T.StructField("rejected_at", T.TimestampType(), False),
        T.StructField("dagster_run_id", T.StringType(), False),
    ]
)


def day_folder(day: str) -> str:
    """The drop folder of decisions received on `day`."""
    return f"{DROP_FOLDER}/{day}/"


def alert_keys(spark: SparkSession, lake: LakeResource, alert_ids: set[str]) -> dict[str, tuple[str, dt.datetime]]:
    """alert_id -> (transaction_id, event_time) for the ids that exist in anomaly_alerts."""
    if not alert_ids or not lake.table_exists(spark, ALERTS):
        return {}
    wanted = spark.createDataFrame([(a,) for a in sorted(alert_ids)], "alert_id string")
    found = lake.read(spark, ALERTS).select("alert_id", "transaction_id", "event_time").join(wanted, "alert_id").distinct().collect()
    return {r.alert_id: (r.transaction_id, r.event_time) for r in found}


def against_the_lake(decisions: list[Decision], alerts: dict[str, tuple[str, dt.datetime]], now: dt.datetime) -> tuple[list[tuple[Decision, str, dt.datetime]], list[Rejected]]:
    """(decision, transaction_id, event_time) for decisions on known alerts made between the transaction and
    now; the rest rejected with UNKNOWN_ALERT, DECIDED_BEFORE_TRANSACTION or DECIDED_IN_FUTURE."""
    ok, rejected = [], []
    for d in decisions:
        decided = d.decided_at.replace(tzinfo=None)
        raw = json.dumps({"alert_id": d.alert_id, "decision": d.decision, "investigator": d.investigator, "decided_at": d.decided_at.isoformat(), "note": d.note})
        if d.alert_id not in alerts:
            rejected.append(Rejected(d.source_file, d.source_row, raw, (UNKNOWN_ALERT,), f"no alert {d.alert_id} in {ALERTS}", d.alert_id))
            continue
        transaction_id, event_time = alerts[d.alert_id]
        if decided < event_time:
            rejected.append(Rejected(d.source_file, d.source_row, raw, (DECIDED_BEFORE_TRANSACTION,), f"decided_at {decided} is before the transaction ({event_time})", d.alert_id))
        elif decided > now + FUTURE_TOLERANCE:
            rejected.append(Rejected(d.source_file, d.source_row, raw, (DECIDED_IN_FUTURE,), f"decided_at {decided} is after the time it was processed ({now:%Y-%m-%d %H:%M} UTC)", d.alert_id))
        else:
            ok.append((d, transaction_id, event_time))
    return ok, rejected


def read_day(file_drops: FileDropResource, day: str) -> tuple[list[str], list[Decision], list[Rejected], int]:
    """(files, contract-valid decisions, rejected records, records read) of the day's drop folder (none: an
    empty delivery). A file that cannot be opened counts as one record, rejected as UNREADABLE_FILE."""
    names = file_drops.list_names(day_folder(day))
    decisions, rejected, read = [], [], 0
    for name in names:
        try:
            data = file_drops.read_bytes(name)
        except OSError as err:  # e.g. permissions: the file's own problem, not the day's
            d, r, n = [], [unreadable_file(name, b"", f"could not be opened ({type(err).__name__})")], 1
        else:
            d, r, n = check_file(name, data)
        decisions += d
        rejected += r
        read += n
    return names, decisions, rejected, read


KEY_COLUMNS = ("alert_id", "decision", "investigator", "decided_at", "note")


def existing_ids(spark: SparkSession, lake: LakeResource, decisions: list[Decision]) -> set[str]:
    """The disposition_ids of `decisions` already in the history. Matched on the decision's content (the fields
    its id hashes), so a decision recorded under an earlier id scheme is not recorded a second time."""
    if not decisions or not lake.table_exists(spark, DISPOSITIONS):
        return set()
    unique = {d.disposition_id: d for d in decisions}
    wanted = spark.createDataFrame(
        [(i, d.alert_id, d.decision, d.investigator, d.decided_at, d.note) for i, d in unique.items()],
        "disposition_id string, alert_id string, decision string, investigator string, decided_at timestamp, note string",
    ).alias("w")
    table = lake.read(spark, DISPOSITIONS).select(*KEY_COLUMNS).alias("t")
    same = [F.col(f"w.{c}").eqNullSafe(F.col(f"t.{c}")) for c in KEY_COLUMNS]
    return {r.disposition_id for r in wanted.join(table, same, "left_semi").select("disposition_id").collect()}


def _text(value):
    """A string Spark can store (an unpaired surrogate in a submitted record becomes its escape)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


@multi_asset(
    name="record_alert_dispositions",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    specs=[
        AssetSpec(
            DISPOSITIONS,
            group_name="investigations",
            kinds={"spark", "delta"},
            description=(
                "Investigators' decisions on alerts: CONFIRM (suspicious), DISMISS (legitimate) or ESCALATE, with who "
                "decided, when, and why. Append-only: nothing is edited or deleted; a later decision on the same alert "
                "supersedes the earlier one and both are kept. CONFIRM and DISMISS become training labels from their "
                "decision time on. Partition = the day the decision files were received (drop folder dispositions/<day>/)."
            ),
            metadata={"contract": "contracts/alert_dispositions.schema.json", "partition_column": "received_day", "key": "disposition_id (SHA-256 of the decision's canonical JSON)"},
        ),
        AssetSpec(
            DISPOSITIONS_DLQ,
            group_name="investigations",
            kinds={"spark", "delta"},
            description=(
                "Decisions that could not be recorded, with the submitted record and reason codes (e.g. UNKNOWN_ALERT, "
                "INVALID_DECISION, MISSING_FIELD, INVALID_TIMESTAMP, DECIDED_BEFORE_TRANSACTION, UNREADABLE_FILE). "
                "Fix and resubmit: nothing submitted is dropped silently."
            ),
            metadata={"partition_column": "received_day", "key": "source_file, source_row"},
        ),
    ],
)
def record_alert_dispositions(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, file_drops: FileDropResource):
    session = spark.spark_session
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    totals: Counter = Counter()
    reasons: Counter = Counter()
    version, dlq_version = -1, -1
    for key in context.partition_keys:
        day = dt.date.fromisoformat(key)
        files, decisions, rejected, read = read_day(file_drops, key)
        accepted, late_rejects = against_the_lake(decisions, alert_keys(session, lake, {d.alert_id for d in decisions}), now)
        rejected += late_rejects
        unique = {}
        for d, transaction_id, event_time in accepted:
            unique.setdefault(d.disposition_id, (d, transaction_id, event_time))
        already = existing_ids(session, lake, [d for d, _, _ in unique.values()])
        rows = [
            (did, d.alert_id, tid, et, d.decision, d.investigator, d.decided_at, d.note, d.source_file, d.source_row, day, now, context.run_id)
            for did, (d, tid, et) in unique.items()
            if did not in already
        ]
        if rows or not lake.table_exists(session, DISPOSITIONS):
            version = lake.insert_new(session.createDataFrame(rows, SCHEMA), DISPOSITIONS, "disposition_id", partition_by=DISPOSITIONS.partition_by)
        dlq_rows = [
            (_text(r.source_file), r.source_row, _text(r.alert_id), _text(r.raw), list(r.reason_codes), _text(r.detail), day, now, context.run_id)
            for r in rejected
        ]
        dlq_version = lake.replace_days(session.createDataFrame(dlq_rows, DLQ_SCHEMA), DISPOSITIONS_DLQ, Days.of(key))
        counts = {
            "files": len(files), "records_read": read, "recorded": len(rows), "already_recorded": len(accepted) - len(rows),
            "rejected": len(rejected),
        }
        totals.update(counts)
        reasons.update(code for r in rejected for code in r.reason_codes)
        context.log.info(f"{DISPOSITIONS} {key}: {counts}")
    version = lake.version(session, DISPOSITIONS) if version < 0 and lake.table_exists(session, DISPOSITIONS) else version
    current = current_decisions(lake.read(session, DISPOSITIONS)).groupBy("decision").count().collect() if lake.table_exists(session, DISPOSITIONS) else []
    yield MaterializeResult(
        asset_key=DISPOSITIONS,
        metadata=delta_metadata(
            lake.table_path(DISPOSITIONS), version, totals["recorded"], SCHEMA,
            records_read=totals["records_read"], files=totals["files"], already_recorded=totals["already_recorded"], rejected=totals["rejected"],
            current_decisions=markdown_table([{"decision": r["decision"], "alerts": r["count"]} for r in sorted(current, key=lambda r: r["decision"])]),
        ),
    )
    yield MaterializeResult(
        asset_key=DISPOSITIONS_DLQ,
        metadata=delta_metadata(
            lake.table_path(DISPOSITIONS_DLQ), dlq_version, totals["rejected"], DLQ_SCHEMA,
            reasons=markdown_table([{"reason": k, "records": v} for k, v in reasons.most_common()]),
        ),
    )


@asset_check(
    asset=DISPOSITIONS,
    partitions_def=daily_partitions,
    additional_deps=[DISPOSITIONS_DLQ],
    blocking=True,
    description="Nothing lost: every record in the day's decision files is in alert_dispositions (now or from an earlier submission) or in alert_dispositions_dlq.",
)
def dispositions_account_for_every_record(context, spark: PySparkResource, lake: LakeResource, file_drops: FileDropResource) -> AssetCheckResult:
    session = spark.spark_session
    meta, passed = {}, True
    for key in context.partition_keys:
        _, decisions, rejected, read = read_day(file_drops, key)
        recorded = existing_ids(session, lake, decisions)
        in_dlq = lake.read_days(session, DISPOSITIONS_DLQ, Days.span(key)).count() if lake.table_exists(session, DISPOSITIONS_DLQ) else 0
        valid_but_unrecorded = [d for d in decisions if d.disposition_id not in recorded]
        # a contract-valid record is either recorded or was rejected against the lake (and so is in the DLQ)
        ok = in_dlq == len(rejected) + len(valid_but_unrecorded) and sum(1 for d in decisions if d.disposition_id in recorded) + in_dlq == read
        passed &= ok
        meta[key] = f"read={read} recorded={len(decisions) - len(valid_but_unrecorded)} dlq={in_dlq}"
    return AssetCheckResult(passed=passed, metadata=meta)


@asset_check(
    asset=DISPOSITIONS,
    description="Append-only: no commit of the table ever deleted, updated or overwrote a decision (Delta history).",
)
def dispositions_are_append_only(spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    if not lake.table_exists(session, DISPOSITIONS):
        return AssetCheckResult(passed=True, metadata={"commits": 0})
    bad = []
    history = lake.history(session, DISPOSITIONS).select("version", "operation", "operationParameters", "operationMetrics").collect()
    for h in history:
        params, metrics = h.operationParameters or {}, h.operationMetrics or {}
        if h.operation in ("DELETE", "UPDATE", "TRUNCATE", "RESTORE", "REPLACE TABLE", "CREATE OR REPLACE TABLE AS SELECT"):
            bad.append(f"v{h.version} {h.operation}")
        elif h.operation == "WRITE" and params.get("mode") == "Overwrite":
            bad.append(f"v{h.version} WRITE Overwrite")
        elif h.operation == "MERGE" and (int(metrics.get("numTargetRowsUpdated", 0)) or int(metrics.get("numTargetRowsDeleted", 0))):
            bad.append(f"v{h.version} MERGE changed rows")
    return AssetCheckResult(passed=not bad, metadata={"commits": len(history), "violations": ", ".join(bad) or "none"})
