"""bi_serving: the delivery day's scores, alerts, data-quality results, reconciliation and snapshot summaries in
the SQL database BI tools read, and the check that what was published matches the Delta tables."""

from dagster import AssetCheckResult, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check

from compliance_assets.metadata import markdown_table
from compliance_assets.serving.bi_tables import SERVING_TABLES, VIEWS
from compliance_assets.serving.publish import compare_day, publish
from compliance_assets.serving.delta_sources import DeltaReader
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.serving import ServingDatabaseResource
from catalog import ALERTS, DQ_RESULTS, GOLD, RECONCILIATION_REPORT, SILVER, SNAPSHOTS

ASSET = "bi_serving"


@asset(
    name=ASSET,
    group_name="serving",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, ALERTS, SILVER, DQ_RESULTS, RECONCILIATION_REPORT, SNAPSHOTS],
    kinds={"sql", "delta"},
    description=(
        "The delivery day published to the BI database (Power BI through Azure SQL / Synapse, or any SQL client): "
        "risk scores, alerts (with scenario, channel and country), data-quality results, the reconciliation report "
        "and the regulatory snapshot versions, each row stamped with the day, the publishing run and time. Views answer "
        "the daily questions: alerts per day by band, scenario, channel and country (bi_alerts_daily); DQ pass rate per "
        "rule (bi_dq_pass_rate); model versions in use (bi_model_versions); reconciliation status "
        "(bi_reconciliation_status); current snapshot versions (bi_snapshot_status). Re-publishing a day replaces it "
        "in one transaction."
    ),
    metadata={"tables": ", ".join(t.name for t in SERVING_TABLES), "views": ", ".join(VIEWS), "partition_column": "partition_day (delivery day)"},
)
def bi_serving(context: AssetExecutionContext, lake: LakeResource, serving_db: ServingDatabaseResource) -> MaterializeResult:
    engine = serving_db.create_engine()
    try:
        days = publish(engine, DeltaReader(lake), list(context.partition_keys), context.run.run_id)
    finally:
        engine.dispose()
    for d in days:
        context.log.info(f"{ASSET} {d.day}: {sum(d.rows.values())} rows to {serving_db.safe_target()} in {d.seconds:.1f}s: {d.rows}")
        for table, note in d.notes.items():
            if table == "alerts_without_silver_row":
                if note:
                    context.log.warning(f"{ASSET} {d.day}: {note} alerts have no transactions_silver row: channel and country are NULL")
            else:
                context.log.warning(f"{ASSET} {d.day}: {table}: {note}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(sum(d.rows.values()) for d in days),
            "database": serving_db.safe_target(),
            "days": markdown_table([{"day": d.day, **d.rows, "seconds": round(d.seconds, 1)} for d in days]),
            "notes": markdown_table([{"day": d.day, "about": k, "note": v} for d in days for k, v in d.notes.items()]),
        }
    )


@asset_check(
    asset=ASSET,
    partitions_def=daily_partitions,
    blocking=True,
    description=(
        "Every published table holds what its Delta source holds for the day: the same row count and the same totals "
        "(risk_score for scores, amount_base for alerts, checked and failed for DQ results, transactions and amount for "
        "the reconciliation report, row_count and alerts for snapshot versions)."
    ),
)
def bi_serving_matches_delta(context, lake: LakeResource, serving_db: ServingDatabaseResource) -> AssetCheckResult:
    engine = serving_db.create_engine()
    try:
        reader = DeltaReader(lake)
        results = [r for day in context.partition_keys for r in compare_day(engine, reader, day)]
    finally:
        engine.dispose()
    bad = [r for r in results if not r["ok"]]
    return AssetCheckResult(
        passed=not bad,
        metadata={
            "database": serving_db.safe_target(),
            "mismatches": len(bad),
            "tables": markdown_table(results),
        },
    )
