"""The reporting domain: reconciliation with the ledger, the write-once regulatory snapshots and their manifest, and
the exports to the file drop, with the monthly-snapshot and export jobs and schedules."""

from dagster import Definitions, load_asset_checks_from_modules

from compliance_assets.reporting import reconciliation, snapshots
from compliance_assets.reporting.exports import regulatory_exports
from compliance_assets.reporting.jobs import monthly_snapshot_job, monthly_snapshot_schedule, regulatory_export_job, regulatory_export_schedule
from compliance_assets.reporting.reconciliation import reconcile_with_ledger
from compliance_assets.reporting.snapshots import regulatory_snapshots, regulatory_snapshots_monthly, snapshot_manifest

defs = Definitions(
    assets=[reconcile_with_ledger, regulatory_snapshots, regulatory_snapshots_monthly, snapshot_manifest, regulatory_exports],
    asset_checks=load_asset_checks_from_modules([reconciliation, snapshots]),
    jobs=[monthly_snapshot_job, regulatory_export_job],
    schedules=[monthly_snapshot_schedule, regulatory_export_schedule],
)
