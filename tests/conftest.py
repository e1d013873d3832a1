"""Shared fixtures: one real SparkSession with Delta per test session (local[2], 2 shuffle partitions,
UI off) and helpers to materialise assets into a throwaway lake with an ephemeral Dagster instance."""

import os
from pathlib import Path

import pytest

from tests.kafka_brokers import kafka_broker, kafka_sasl_broker  # noqa: F401  (session fixtures for every test package)

os.environ.setdefault("SPARK_MASTER", "local[2]")
os.environ["SPARK_SHUFFLE_PARTITIONS"] = "2"
os.environ["SPARK_DRIVER_MEMORY"] = "2g"
os.environ["SPARK_UI_ENABLED"] = "false"
os.environ["DELTA_SNAPSHOT_PARTITIONS"] = "1"


SHARED_LAKES = frozenset({"ingested_lake", "champion_lake", "scored_lake", "stream_day_batch_lake"})


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, one file that needs the deepest shared lake goes first, then every file that needs no
    shared lake, then the other files that do: while one worker builds the lakes (minutes), the other runs files
    that need none instead of waiting for them. Files keep their own order; every worker collects the same."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    uses = {f: set().union(*(SHARED_LAKES & set(i.fixturenames) for i in its)) for f, its in files.items()}
    needs = [f for f in files if uses[f]]
    first = [next((f for f in needs if "scored_lake" in uses[f]), needs[0])] if needs else []
    order = first + [f for f in files if not uses[f]] + [f for f in needs if f not in first]
    items[:] = [i for f in order for i in files[f]]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from resources.spark import start_session

    with _run_wide_lock(tmp_path_factory, "spark-start"):  # parallel workers resolve Spark's packages one at a time
        session = start_session()
    yield session
    session.stop()


def _run_wide_lock(tmp_path_factory, name: str):
    """A lock every worker of this test run shares (pytest-xdist workers have one base folder's parent in common)."""
    from filelock import FileLock

    return FileLock(str(tmp_path_factory.getbasetemp().parent / f"{name}.lock"))


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """A session lake `build(folder)` writes to `folder/lake`, built once per test run and shared read-only. Under
    pytest-xdist (scripts/test.sh runs two workers) the first worker that needs it builds it behind a file lock
    and the others wait for it, so no worker builds it twice."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder / "lake"
    import shutil

    folder = tmp_path_factory.getbasetemp().parent / name
    with _run_wide_lock(tmp_path_factory, name):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder / "lake"


def make_resources(lake_root: Path, landing_root: Path | None = None) -> dict:
    """The production resource classes pointed at a test lake (the Spark resource reuses the session);
    MLflow is a SQLite store with its artifacts beside the lake."""
    from resources import resources_for_lake

    return resources_for_lake(lake_root, landing_root, salt="test-salt")


@pytest.fixture(scope="session")
def ingested_lake(spark, tmp_path_factory):
    """Five batch-ingested days (CHAMPION_DAYS) with their outcomes and training features, and the reference data
    of STREAM_DAY (its transactions are in stream_day/, not landed); no model yet. Built once per session and
    shared read-only: the risk pipeline's tests train on a copy, `champion_lake` adds a promoted champion."""
    return _built_once(tmp_path_factory, "ingested_lake", _build_ingested_lake)


def _build_ingested_lake(folder: Path) -> None:
    import datetime as dt
    import shutil

    from dagster import DagsterInstance, materialize

    from compliance_assets.ingest.reference_data import reference_assets
    from compliance_assets.ml.features_training import features_cover_silver, ml_features_training
    from compliance_assets.ml.outcomes import transaction_outcomes
    from compliance_assets.synthetic.writer import generate_day
    from tests.helpers import CHAMPION_CONFIG, CHAMPION_DAYS, INGEST_ASSETS, STREAM_CONFIG, STREAM_DAY, check_results

    root = folder / "lake"

    def run(assets, key):
        result = materialize(assets, partition_key=key, resources=make_resources(root), instance=DagsterInstance.ephemeral(), raise_on_error=True)
        assert result.success
        return result

    for day in CHAMPION_DAYS:
        generate_day(CHAMPION_CONFIG, root / "landing", dt.date.fromisoformat(day))
        run([*INGEST_ASSETS, transaction_outcomes], day)
        features = run([ml_features_training, features_cover_silver], day)
        assert check_results(features) == {("ml_features_training", "features_cover_silver"): True}, check_results(features)
    # the stream day's reference snapshots are loaded by the daily job; its transactions are not
    generate_day(STREAM_CONFIG, root / "stream_day", dt.date.fromisoformat(STREAM_DAY))
    shutil.copytree(root / "stream_day" / "reference", root / "landing" / "reference", dirs_exist_ok=True)
    run(reference_assets, STREAM_DAY)


@pytest.fixture(scope="session")
def champion_lake(ingested_lake, tmp_path_factory):
    """The ingested lake with a trained and promoted champion. Built once per session and shared read-only:
    tests copy it before changing anything."""
    return _built_once(tmp_path_factory, "champion", lambda folder: _build_champion_lake(ingested_lake, folder / "lake"))


def _build_champion_lake(ingested_lake: Path, root: Path) -> None:
    import shutil

    from dagster import DagsterInstance, materialize

    from compliance_assets.ml.registry import promote_challenger
    from compliance_assets.ml.training import risk_model
    from tests.helpers import TRAIN_PARTITION

    shutil.copytree(ingested_lake, root, ignore=shutil.ignore_patterns("mlflow"))  # its own MLflow store
    result = materialize([risk_model], partition_key=TRAIN_PARTITION, resources=make_resources(root), instance=DagsterInstance.ephemeral(), raise_on_error=True)
    assert result.success
    resources = make_resources(root)
    promoted = promote_challenger.execute_in_process(
        run_config={"ops": {"promote_challenger_op": {"config": {"approver": "test-session", "reason": "test", "min_improvement": 0.0}}}},
        resources={k: resources[k] for k in ("spark", "lake", "model_registry")},
        instance=DagsterInstance.ephemeral(),
    )
    assert promoted.success


@pytest.fixture(scope="session")
def scored_lake(champion_lake, tmp_path_factory):
    """The champion lake (without the stream day) with gold and alerts for SCORED_DAYS (04-04, 04-05): shared
    read-only by the monitoring, investigation and serving tests, which copy it before changing anything."""
    return _built_once(tmp_path_factory, "scored_lake", lambda folder: _build_scored_lake(champion_lake, folder / "lake"))


def _build_scored_lake(champion_lake: Path, root: Path) -> None:
    import shutil

    from dagster import DagsterInstance, materialize

    from compliance_assets.ml.alerts import anomaly_alerts
    from compliance_assets.ml.gold import risk_scores_gold
    from tests.helpers import SCORED_DAYS

    shutil.copytree(champion_lake, root, ignore=shutil.ignore_patterns("stream_day"))
    result = materialize(
        [risk_scores_gold, anomaly_alerts], resources=make_resources(root), instance=DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": SCORED_DAYS[0], "dagster/asset_partition_range_end": SCORED_DAYS[-1]},
    )
    assert result.success


@pytest.fixture(scope="session")
def stream_day_batch_lake(champion_lake, tmp_path_factory):
    """The champion lake with STREAM_DAY delivered and processed by the daily assets (bronze, silver, DLQ,
    gold, alerts): the batch path's rows that both streaming lanes must reproduce. Shared read-only."""
    return _built_once(tmp_path_factory, "stream_day_batch", lambda folder: _build_stream_day_batch_lake(champion_lake, folder / "lake"))


def _build_stream_day_batch_lake(champion_lake: Path, root: Path) -> None:
    import shutil

    from dagster import DagsterInstance, materialize

    from compliance_assets.ingest.bronze import transactions_bronze
    from compliance_assets.ingest.silver import validate_transactions
    from compliance_assets.ml.alerts import anomaly_alerts
    from compliance_assets.ml.gold import risk_scores_gold
    from tests.helpers import STREAM_DAY

    shutil.copytree(champion_lake, root, ignore=shutil.ignore_patterns("stream_day"))
    src = champion_lake / "stream_day" / "transactions" / f"event_date={STREAM_DAY}"
    shutil.copytree(src, root / "landing" / "transactions" / f"event_date={STREAM_DAY}")
    result = materialize(
        [transactions_bronze, validate_transactions, risk_scores_gold, anomaly_alerts], partition_key=STREAM_DAY,
        resources=make_resources(root), instance=DagsterInstance.ephemeral(), raise_on_error=True,
    )
    assert result.success
