"""Test helpers: the ingest asset selection, Delta read-back with an independent reader (delta-rs)."""

import pandas as pd
from dagster import AssetChecksDefinition, load_asset_checks_from_modules
from deltalake import DeltaTable

from compliance_assets.ingest import bronze, checks, silver
from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.reference_data import reference_assets, reference_checks

VOLATILE = {"ingested_at", "processed_at", "rejected_at", "dagster_run_id"}

INGEST_ASSETS = [*reference_assets, transactions_bronze, validate_transactions]
INGEST_CHECKS: list[AssetChecksDefinition] = [*reference_checks, *load_asset_checks_from_modules([bronze, checks, silver])]


def read_delta(lake_root, table: str, **filters) -> pd.DataFrame:
    """A Delta table read with delta-rs (not Spark), optionally filtered on column equality."""
    df = DeltaTable(f"{lake_root}/tables/{table}").to_pandas()
    for column, value in filters.items():
        df = df[df[column].astype(str) == str(value)]
    return df.reset_index(drop=True)


def stable_rows(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows without run-specific columns, in a canonical order, with list cells made comparable."""
    out = df.drop(columns=[c for c in df.columns if c in VOLATILE])
    for column in out.columns:
        if out[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
            out[column] = out[column].map(lambda v: None if v is None else tuple(v))
    return out.sort_values(key).reset_index(drop=True)


def check_results(result) -> dict[tuple[str, str], bool]:
    """{(asset, check): passed} of a materialize() result."""
    return {
        (e.asset_check_key.asset_key.to_user_string(), e.asset_check_key.name): e.passed
        for e in result.get_asset_check_evaluations()
    }
