"""The ingest domain: reference data, bronze, silver (with the DLQ and dq_results), the ledger's file drop, their
checks, the daily_ingest job and the sensors that start it when a delivery lands."""

from dagster import Definitions, load_asset_checks_from_modules

from compliance_assets.ingest import bronze, checks, silver
from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.jobs import daily_ingest_job
from compliance_assets.ingest.landing_sensor import landing_delivery_sensor
from compliance_assets.ingest.ledger_drop_sensor import ledger_drop_sensor
from compliance_assets.ingest.ledger_drops import ledger_files
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.reference_data import reference_assets, reference_checks

defs = Definitions(
    assets=[*reference_assets, transactions_bronze, validate_transactions, ledger_files],
    asset_checks=[*reference_checks, *load_asset_checks_from_modules([bronze, checks, silver])],
    jobs=[daily_ingest_job],
    sensors=[landing_delivery_sensor, ledger_drop_sensor],
)
