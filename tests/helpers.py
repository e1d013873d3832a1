"""Test helpers: the ingest asset selection, the shared champion lake's days and generator settings, Delta
read-back with an independent reader (delta-rs)."""

import dataclasses
import os
import socket

import pandas as pd
from dagster import AssetChecksDefinition, load_asset_checks_from_modules
from deltalake import DeltaTable

from compliance_assets.ingest import bronze, checks, silver
from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.ingest.reference_data import reference_assets, reference_checks
from compliance_assets.synthetic.config import SynthConfig

VOLATILE = {"ingested_at", "processed_at", "rejected_at", "dagster_run_id"}

INGEST_ASSETS = [*reference_assets, transactions_bronze, validate_transactions]
INGEST_CHECKS: list[AssetChecksDefinition] = [*reference_checks, *load_asset_checks_from_modules([bronze, checks, silver])]

# the session's shared champion lake (tests/conftest.py `champion_lake`): five batch-ingested days and a
# trained, promoted champion, plus the reference data of the day after them (the streaming tests' day)
CHAMPION_DAYS = [f"2026-04-0{i}" for i in range(1, 6)]
STREAM_DAY = "2026-04-06"
SCORED_DAYS = CHAMPION_DAYS[3:5]  # scored (gold + alerts) in the shared `scored_lake`
TRAIN_PARTITION = "2026-04-20"
CHAMPION_CONFIG = SynthConfig(seed=23, events_per_day=3000, anomaly_rate=0.03, outcome_sample_rate=0.05, rows_per_file=500)
# the stream day: fewer events, one file per micro-batch, no late arrivals (a late event arriving
# after later events of its account were scored changes their batch features but not their scores)
STREAM_CONFIG = dataclasses.replace(CHAMPION_CONFIG, events_per_day=1500, late_arrival=0.0)


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


# the environment of a Spark process a test starts itself (a dagster CLI run, a webserver's runs): small and quiet
SPARK_ENV = {
    "SPARK_MASTER": os.environ.get("SPARK_MASTER", "local[2]"),
    "SPARK_SHUFFLE_PARTITIONS": "2",
    "SPARK_DRIVER_MEMORY": "2g",
    "SPARK_UI_ENABLED": "false",
    "DELTA_SNAPSHOT_PARTITIONS": "1",
}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
