"""The operations audit: every backfill, replay and rollback that rewrote a table, with who asked and why.

The assets that rewrite tables in backfills, replays and rollbacks carry one decorator, `@audited` (under their
`@asset`): a replay must say who asked for it and the incident it belongs to (run tags `requested_by`,
`incident_id`) or it fails before the body writes anything, and once the body has succeeded every table the step
materialised gets its operations_audit row. Runs that are neither a backfill, a replay nor a rollback are not
recorded (their provenance is the run id on every row).
"""

import datetime as dt
import functools
import inspect
from collections.abc import Callable

from dagster import AssetExecutionContext, AssetSpec, Failure
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from resources.lake import LakeResource
from catalog import OPERATIONS_AUDIT

REPLAY_JOB = "replay"
ROLLBACK_JOB = "rollback_model"
REQUESTED_BY, INCIDENT_ID, REASON = "requested_by", "incident_id", "reason"
BACKFILL, REPLAY, ROLLBACK = "BACKFILL", "REPLAY", "ROLLBACK"

SCHEMA = T.StructType(
    [
        T.StructField("audit_id", T.StringType(), False),
        T.StructField("operation", T.StringType(), False),
        T.StructField("asset", T.StringType(), False),
        T.StructField("partition_start", T.StringType()),
        T.StructField("partition_end", T.StringType()),
        T.StructField("partitions", T.LongType()),
        T.StructField("requested_by", T.StringType()),
        T.StructField("incident_id", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("job_name", T.StringType()),
        T.StructField("backfill_id", T.StringType()),
        T.StructField("dagster_run_id", T.StringType(), False),
        T.StructField("recorded_at", T.TimestampType(), False),
        T.StructField("event_date", T.DateType(), False),
    ]
)

operations_audit = AssetSpec(
    OPERATIONS_AUDIT,
    group_name="operations",
    kinds={"delta"},
    description=(
        "Audit trail of every backfill, replay and model rollback: which table and partition range was rewritten, "
        "by which Dagster run and backfill, who asked for it, the incident id and the reason (from the run's tags)."
    ),
    metadata={"partition_column": "event_date (day recorded)", "key": "audit_id (run id and asset)"},
)


def operation_of(job_name: str, tags: dict[str, str], rollback: bool = False) -> str | None:
    """REPLAY, ROLLBACK or BACKFILL for the run, None for ordinary (scheduled, sensor, manual) runs."""
    if job_name == REPLAY_JOB:
        return REPLAY
    if rollback or job_name == ROLLBACK_JOB:
        return ROLLBACK
    if "dagster/backfill" in tags:
        return BACKFILL
    return None


def require_replay_tags(context: AssetExecutionContext) -> None:
    """A replay without `requested_by` and `incident_id` run tags fails before anything is written."""
    if context.run.job_name != REPLAY_JOB:
        return
    missing = [t for t in (REQUESTED_BY, INCIDENT_ID) if not context.run.tags.get(t, "").strip()]
    if missing:
        raise Failure(
            f"A replay must say who asked for it and why: add the run tags {', '.join(missing)} "
            f"(and optionally {REASON}) when launching the replay job or its backfill."
        )


def audited(body: Callable | None = None, *, rollback: Callable[[object], bool] | None = None):
    """Decorate an asset body (the function under `@asset` / `@multi_asset`, with `spark` and `lake` resources):
    replay tags enforced before it runs, one operations_audit row per materialised table after it succeeds.
    `rollback(config)`: whether the run's config makes it a model rollback."""

    def decorate(fn: Callable) -> Callable:
        def record(context, kwargs) -> None:
            is_rollback = bool(rollback and rollback(kwargs.get("config")))
            for key in sorted(context.selected_asset_keys):
                record_operation(context, kwargs["spark"].spark_session, kwargs["lake"], key.to_user_string(), rollback=is_rollback)

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(context, *args, **kwargs):
                require_replay_tags(context)
                yield from fn(context, *args, **kwargs)
                record(context, kwargs)

            return generator

        @functools.wraps(fn)
        def plain(context, *args, **kwargs):
            require_replay_tags(context)
            result = fn(context, *args, **kwargs)
            record(context, kwargs)
            return result

        return plain

    return decorate(body) if body is not None else decorate


def record_operation(context: AssetExecutionContext, spark: SparkSession, lake: LakeResource, asset: str, rollback: bool = False) -> str | None:
    """Write the run's operation on `asset` for its partition range to operations_audit (once per run
    and asset: a retried step does not add a second row). Returns the operation, or None."""
    tags = dict(context.run.tags)
    operation = operation_of(context.run.job_name, tags, rollback)
    if operation is None:
        return None
    keys = context.partition_keys if context.has_partition_key or context.has_partition_key_range else []
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    row = (
        f"{context.run_id}:{asset}", operation, asset, keys[0] if keys else None, keys[-1] if keys else None, len(keys),
        tags.get(REQUESTED_BY), tags.get(INCIDENT_ID), tags.get(REASON), context.run.job_name, tags.get("dagster/backfill"),
        context.run_id, now, now.date(),
    )
    lake.insert_new(spark.createDataFrame([row], SCHEMA), OPERATIONS_AUDIT, "audit_id")
    context.log.info(f"{OPERATIONS_AUDIT}: {operation} of {asset} {row[3]}..{row[4]} requested by {row[6] or 'unknown'} (incident {row[7] or '-'})")
    return operation
