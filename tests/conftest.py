"""Shared fixtures: one real SparkSession with Delta per test session (local[2], 2 shuffle partitions,
UI off) and helpers to materialise assets into a throwaway lake with an ephemeral Dagster instance."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_MASTER", "local[2]")
os.environ["SPARK_SHUFFLE_PARTITIONS"] = "2"
os.environ["SPARK_DRIVER_MEMORY"] = "2g"
os.environ["SPARK_UI_ENABLED"] = "false"
os.environ["DELTA_SNAPSHOT_PARTITIONS"] = "1"


@pytest.fixture(scope="session")
def spark():
    from resources.spark import start_session

    session = start_session()
    yield session
    session.stop()


def make_resources(lake_root: Path, landing_root: Path | None = None) -> dict:
    """The production resource classes pointed at a test lake (the Spark resource reuses the session);
    MLflow is a SQLite store with its artifacts beside the lake."""
    from resources import resources_for_lake

    return resources_for_lake(lake_root, landing_root, salt="test-salt")
