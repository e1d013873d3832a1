"""The ingest domain's job: the day's reference data and transaction delivery into bronze, silver, the DLQ and dq_results."""

from dagster import AssetSelection, define_asset_job

daily_ingest_job = define_asset_job(
    "daily_ingest",
    selection=AssetSelection.groups("reference_data", "ingest"),
    description="Load the day's reference data and transaction delivery into bronze, then validate into silver, the DLQ and dq_results.",
)
