"""Drift, champion-challenger and SLOs on a copy of the session's champion lake (five batch-ingested days and a
promoted champion), with two of its days scored and a third day generated with shifted amounts."""

import dataclasses
import datetime as dt
import json
import shutil

import pytest
from dagster import DagsterInstance, materialize
from delta.tables import DeltaTable

from compliance_assets.definitions import defs
from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.ml.features_training import ml_features_training
from compliance_assets.ml.gold import risk_scores_gold
from compliance_assets.ml.model_features import MODEL_FEATURES
from compliance_assets.ml.registry import promote_challenger
from compliance_assets.ml.training import TABLE_URI_TAGS
from compliance_assets.monitoring import challenger, drift, slo
from compliance_assets.monitoring.drift import psi
from compliance_assets.reporting.reconciliation import reconcile_with_ledger
from compliance_assets.synthetic.writer import generate_day
from resources.mlflow import CHALLENGER, CHAMPION
from tests.conftest import make_resources
from tests.helpers import CHAMPION_CONFIG, SCORED_DAYS, check_results, read_delta

SCORED = SCORED_DAYS  # 04-04 (the alert-volume baseline) and 04-05, scored in the shared lake
DAY = SCORED[-1]
SHIFTED_DAY = "2026-04-06"  # generated with every amount x6; its reference data is in the champion lake
DRIFT_ASSETS = [drift.model_drift, drift.feature_psi_within_thresholds, drift.risk_band_shift_within_thresholds, drift.dlq_rate_within_thresholds, drift.dq_pass_rate_within_thresholds]


def run(lake, assets, partition_key=None, first=None, last=None, raise_on_error=True):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else {}
    return materialize(assets, partition_key=partition_key, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=raise_on_error)


def checks(result, asset: str) -> dict[str, bool]:
    return {name: passed for (a, name), passed in check_results(result).items() if a == asset}


@pytest.fixture(scope="module")
def lake(scored_lake, tmp_path_factory):
    return shutil.copytree(scored_lake, tmp_path_factory.mktemp("monitoring") / "lake")  # this module's own copy


def test_psi_is_zero_for_equal_distributions_and_grows_with_the_shift():
    base = {0: 500, 1: 300, 2: 200}
    assert psi(base, {0: 50, 1: 30, 2: 20}) == pytest.approx(0.0, abs=1e-12)
    small, large = psi(base, {0: 450, 1: 330, 2: 220}), psi(base, {0: 100, 1: 300, 2: 600})
    assert 0 < small < 0.1 < 0.25 < large
    # a bin the reference never saw still counts (smoothed, not dropped)
    assert psi(base, {0: 500, 1: 300, 2: 150, 9: 50}) > psi(base, {0: 500, 1: 300, 2: 200})


def registered_in(lake):
    """The lake's model registry, made MLflow's process-wide tracking store too: registering a version from a
    `models:/` source looks the logged model up through the global store, whatever the client's own URI
    (mlflow's SqlAlchemyStore.create_model_version), and an earlier test may have pointed it at another lake."""
    import mlflow

    registry = make_resources(lake)["model_registry"]
    mlflow.set_tracking_uri(registry.tracking_uri)
    return registry


def copy_of_champion(lake, alias: str, **tags: str) -> str:
    """Register the champion's artifacts again as a new version, its tags with `tags` changed, under `alias`."""
    registry = registered_in(lake)
    champion = registry.version_by_alias(CHAMPION)
    copy = registry.client().create_model_version(registry.model_name, champion.source, run_id=champion.run_id, tags={**champion.tags, **tags})
    registry.set_alias(alias, copy.version)
    return str(copy.version)


def champion_with_training_window(lake, window: str, spark) -> str:
    """A copy of the champion whose recorded training data is `window` of this lake's ml_features_training at its
    current Delta version, made the champion."""
    from catalog import TRAINING_FEATURES as TABLE

    version = DeltaTable.forPath(spark, str(lake / "tables" / TABLE)).history(1).collect()[0].version
    return copy_of_champion(lake, CHAMPION, training_window=window, training_delta_version=str(version), training_table_uri=str(lake / "tables" / TABLE))


def test_an_unshifted_day_passes_and_the_same_day_with_shifted_amounts_fails_the_psi_check(lake, spark, tmp_path):
    # The test lake starts on 04-01, so its window features (7- and 30-day counts and sums) ramp up over the
    # first days and any day differs from the pooled five. A model whose training data is 04-04..04-05 isolates
    # the one change under test: the same day regenerated with every amount x6, against the same reference.
    base, lake = lake, tmp_path / "lake"
    shutil.copytree(base, lake)
    version = champion_with_training_window(lake, f"{SCORED[0]}..{DAY}", spark)
    assert run(lake, [risk_scores_gold], partition_key=DAY).success  # re-scored: the day's model is the new version
    result = run(lake, DRIFT_ASSETS, partition_key=DAY)
    rows = read_delta(lake, "model_drift", event_date=DAY)
    features = rows[rows.metric == "FEATURE_PSI"]
    assert checks(result, "model_drift")["feature_psi_within_thresholds"], features.sort_values("value").tail(5)
    assert len(features) == len(MODEL_FEATURES) and set(features.status) <= {"OK", "EXEMPT", "ABSENT"} and set(rows.model_version) == {version}
    # ABSENT: no value in the training rows nor on the day; one generator never gives a feature to one side only
    assert all(json.loads(d)["absent"] == "both" for d in features[features.status == "ABSENT"].detail), features[features.status == "ABSENT"]
    assert set(rows.metric) == {"FEATURE_PSI", "BAND_PSI", "DLQ_RATE", "DQ_MIN_PASS_RATE"}
    dlq = rows[rows.metric == "DLQ_RATE"].iloc[0]
    assert 0 < dlq.value < 0.05 and json.loads(dlq.detail)["rejected"] == len(read_delta(lake, "transactions_dlq", event_date=DAY))
    plot = result.asset_materializations_for_node("model_drift")[0].metadata["plot"].value
    assert "PSI per feature" in plot and "amount_base" in plot

    # the same day and population with every amount multiplied by 6, through the whole daily path; the
    # reference is read at the model's recorded Delta version, so re-ingesting the day does not move it
    generate_day(dataclasses.replace(CHAMPION_CONFIG, amount_shift=6.0), lake / "landing", dt.date.fromisoformat(DAY))
    assert run(lake, [transactions_bronze, validate_transactions], partition_key=DAY).success
    assert run(lake, [ml_features_training, risk_scores_gold], partition_key=DAY).success
    result = run(lake, DRIFT_ASSETS, partition_key=DAY)
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "feature_psi_within_thresholds")
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    shifted = read_delta(lake, "model_drift", event_date=DAY).set_index("name")
    failed = set(shifted[(shifted.metric == "FEATURE_PSI") & (shifted.status == "FAIL")].index)
    assert {"amount_base", "amount_sum_24h"} <= failed, failed
    # features that do not depend on amounts did not move
    assert shifted.loc["hour_of_day", "status"] == "OK" and shifted.loc["txn_count_24h", "status"] == "OK"


def test_drift_reads_the_champions_training_rows_where_they_were_recorded_and_names_them_when_they_are_gone(lake, spark, tmp_path):
    # a copy of the session's lake: its champion was trained on the champion lake, and the version records that
    # table's URI, so the drift reference is the champion lake's training rows
    lake = shutil.copytree(lake, tmp_path / "lake")
    registry = registered_in(lake)
    champion = registry.version_by_alias(CHAMPION)
    assert champion.tags["training_table_uri"] != str(lake / "tables" / "ml_features_training")
    assert run(lake, DRIFT_ASSETS[:1], partition_key=DAY).success
    # a champion whose training table is no longer where it was recorded: the step fails and says which rows it lacks
    gone = tmp_path / "moved" / "ml_features_training"
    version = copy_of_champion(lake, CHAMPION, training_table_uri=str(gone))
    assert run(lake, [risk_scores_gold], partition_key=DAY).success
    result = run(lake, DRIFT_ASSETS[:1], partition_key=DAY, raise_on_error=False)
    (failure,) = [e for e in result.get_step_failure_events() if e.step_key == "model_drift"]
    text = failure.step_failure_data.error.to_string()
    assert f"model version {version}'s training rows ({gone} at Delta version {champion.tags['training_delta_version']}) cannot be read" in text, text


def test_a_promotion_evaluates_the_challenger_on_its_holdout_where_it_was_recorded(lake, spark, tmp_path):
    # the challenger (a copy of the champion, trained on the champion lake) is promoted in a lake without the
    # tables it was trained from: its holdout rows and labels are read where its version recorded them, so the
    # holdout's average precision is the one it was registered with
    lake = shutil.copytree(lake, tmp_path / "lake")
    version = copy_of_champion(lake, CHALLENGER)
    tags = registered_in(lake).version(version).tags
    for table, tag in TABLE_URI_TAGS.items():  # training features, outcomes, dispositions
        assert tags[tag] != str(lake / "tables" / table)
        shutil.rmtree(lake / "tables" / table, ignore_errors=True)
    resources = make_resources(lake)
    promoted = promote_challenger.execute_in_process(
        run_config={"ops": {"promote_challenger_op": {"config": {"approver": "model-risk", "reason": "holdout test", "min_improvement": -1.0}}}},
        resources={k: resources[k] for k in ("spark", "lake", "model_registry")}, instance=DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert promoted.success, [e.step_failure_data.error.to_string() for e in promoted.all_events if e.is_step_failure]
    audit = read_delta(lake, "model_audit")
    evidence = json.loads(audit[(audit.action == "PROMOTED") & (audit.to_version == version)].iloc[0].evidence)
    assert f"{evidence['metrics']['challenger']['average_precision']:.4f}" == tags["average_precision"]


def register_copy_of_champion(lake) -> str:
    """A copy of the champion made the challenger (same scores, new version)."""
    return copy_of_champion(lake, CHALLENGER)


def test_challenger_scores_stay_in_the_shadow_and_the_comparison_reports_planted_disagreements(lake, spark):
    from pyspark.sql import functions as F

    version = register_copy_of_champion(lake)
    gold_path, alerts_path = lake / "tables" / "risk_scores_gold", lake / "tables" / "anomaly_alerts"
    before = {p: DeltaTable.forPath(spark, str(p)).history(1).collect()[0].version for p in (gold_path, alerts_path)}
    shadow_assets = [challenger.challenger_scores, challenger.challenger_scores_stay_in_shadow]
    compare_assets = [challenger.challenger_comparison, challenger.challenger_comparison_passes]
    result = run(lake, shadow_assets + compare_assets, partition_key=DAY)
    assert checks(result, "challenger_scores")["challenger_scores_stay_in_shadow"]
    assert {p: DeltaTable.forPath(spark, str(p)).history(1).collect()[0].version for p in (gold_path, alerts_path)} == before
    shadow, gold = read_delta(lake, "challenger_scores", ingest_date=DAY), read_delta(lake, "risk_scores_gold", ingest_date=DAY)
    assert len(shadow) == len(gold) and set(shadow.model_version) == {version} and version not in set(gold.model_version)
    assert not (set(read_delta(lake, "anomaly_alerts").model_version) & {version})
    row = read_delta(lake, "challenger_comparison", event_date=DAY).iloc[0]
    assert row.rows_compared == len(gold) and row.band_agreement == 1.0 and row.band_changes == 0 and row.passed
    assert checks(result, "challenger_comparison")["challenger_comparison_passes"]

    # plant disagreements: 40 rows the champion calls LOW become HIGH in the shadow table
    low = gold[gold.risk_band == "LOW"].transaction_id.head(40).tolist()
    DeltaTable.forPath(spark, str(lake / "tables" / "challenger_scores")).update(F.col("transaction_id").isin(low), {"risk_band": F.lit("HIGH"), "risk_score": F.lit(0.99)})
    result = run(lake, compare_assets, partition_key=DAY)
    row = read_delta(lake, "challenger_comparison", event_date=DAY).iloc[0]
    transitions = json.loads(row.band_transitions)
    assert row.band_changes == 40 and transitions["LOW->HIGH"] == 40
    assert row.challenger_high == row.champion_high + 40 and not row.passed and "HIGH rows" in row.findings
    assert not checks(result, "challenger_comparison")["challenger_comparison_passes"]

    # the promotion job, told to require a passing comparison, refuses and records why
    resources = make_resources(lake)
    promoted = promote_challenger.execute_in_process(
        run_config={"ops": {"promote_challenger_op": {"config": {"approver": "model-risk", "reason": "shadow test", "require_comparison_days": 1}}}},
        resources={k: resources[k] for k in ("spark", "lake", "model_registry")}, instance=DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not promoted.success
    assert str(resources["model_registry"].version_by_alias(CHAMPION).version) != version
    audit = read_delta(lake, "model_audit")
    rejected = audit[(audit.action == "PROMOTION_REJECTED") & (audit.to_version == version)]
    assert len(rejected) == 1 and json.loads(rejected.iloc[0].evidence)["comparisons"][0]["passed"] is False


def slo_checks(lake) -> dict[str, bool]:
    result = run(lake, [slo.slo_status, slo.streaming_latency_within_slo, slo.reconciliation_within_slo, slo.dq_critical_pass_rate_within_slo, slo.alert_volume_within_bounds], partition_key=DAY)
    return checks(result, "slo_status")


def test_slo_checks_pass_on_a_healthy_day_and_fail_on_planted_breaches(lake, spark):
    from pyspark.sql import functions as F

    assert run(lake, [reconcile_with_ledger], partition_key=DAY).success
    report = DeltaTable.forPath(spark, str(lake / "tables" / "reconciliation_report"))
    day = F.col("event_date") == F.lit(DAY).cast("date")
    # the historical day was reconciled today: say it was done at 05:00 on T+1, an hour before the deadline
    report.update(day, {"first_reconciled_at": F.expr("deadline - INTERVAL 1 HOUR")})
    assert slo_checks(lake) == {"streaming_latency_within_slo": True, "reconciliation_within_slo": True, "dq_critical_pass_rate_within_slo": True, "alert_volume_within_bounds": True}
    status = read_delta(lake, "slo_status", event_date=DAY).set_index("slo")
    assert status.loc["STREAM_LATENCY_P95", "status"] == "NO_DATA"  # batch-scored only
    assert status.loc["RECONCILIATION_BY_DEADLINE", "measured"] == 60.0
    assert status.loc["ALERT_VOLUME", "status"] == "MET"

    # breaches: streamed rows 90 s late, a critical rule failing half the records, reconciliation an hour late,
    # five times the usual alerts
    ingest_day = F.col("ingest_date") == F.lit(DAY).cast("date")
    DeltaTable.forPath(spark, str(lake / "tables" / "risk_scores_gold")).update(ingest_day, {"latency_ms": F.lit(90_000.0)})
    dq = DeltaTable.forPath(spark, str(lake / "tables" / "dq_results"))
    rule = read_delta(lake, "dq_results", event_date=DAY).query("severity == 'critical'").rule_id.iloc[0]
    dq.update(day & (F.col("rule_id") == rule), {"pass_rate": F.lit(0.5)})
    report.update(day, {"first_reconciled_at": F.expr("deadline + INTERVAL 1 HOUR")})
    alerts = spark.read.format("delta").load(str(lake / "tables" / "anomaly_alerts")).where(ingest_day)
    for _ in range(4):
        alerts.write.format("delta").mode("append").save(str(lake / "tables" / "anomaly_alerts"))
    assert slo_checks(lake) == {"streaming_latency_within_slo": False, "reconciliation_within_slo": False, "dq_critical_pass_rate_within_slo": False, "alert_volume_within_bounds": False}
    status = read_delta(lake, "slo_status", event_date=DAY).set_index("slo")
    assert status.loc["STREAM_LATENCY_P95", "measured"] == 90.0
    assert status.loc["RECONCILIATION_BY_DEADLINE", "measured"] == -60.0
    assert status.loc["DQ_CRITICAL_PASS_RATE", "measured"] == 0.5 and rule in status.loc["DQ_CRITICAL_PASS_RATE", "evidence"]
    assert json.loads(status.loc["ALERT_VOLUME", "evidence"])["ratio"] >= 3


def test_the_daily_pipeline_includes_monitoring():
    job = defs.resolve_job_def("daily_pipeline")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"model_drift", "challenger_scores", "challenger_comparison", "slo_status"} <= keys
