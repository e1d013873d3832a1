"""The risk pipeline end to end on a small synthetic lake: training registers a challenger with its
metrics, promotion needs an approver and a better model, gold rows follow the contract and are
stable on re-runs, rollback re-scores only the chosen range, a missing or broken champion fails."""

import datetime as dt
import json
import shutil
from pathlib import Path

import jsonschema
import mlflow
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from rfc3339_validator import validate_rfc3339

from compliance_assets.ml.alerts import alert_volume_within_budget, anomaly_alerts
from compliance_assets.ml.gold import band_distribution_within_bounds, every_silver_row_scored_once, risk_scores_gold, scores_in_unit_interval
from compliance_assets.ml.registry import promote_challenger
from compliance_assets.ml.training import load_training_frame, risk_model
from contracts import load_contract
from resources.mlflow import CHALLENGER, CHAMPION
from tests.conftest import make_resources
from tests.helpers import CHAMPION_DAYS, TRAIN_PARTITION, check_results, read_delta
from catalog import MODEL_AUDIT

DAYS = CHAMPION_DAYS
LABEL_CUTOFF = (dt.date.fromisoformat(TRAIN_PARTITION) + dt.timedelta(days=1)).isoformat()  # the model's cut-off: the day after its partition
GOLD_ASSETS = [risk_scores_gold, anomaly_alerts, every_silver_row_scored_once, scores_in_unit_interval, band_distribution_within_bounds, alert_volume_within_budget]
CONTENT = ["transaction_id", "risk_score", "risk_band", "top_features", "model_version", "model_run_id"]


def run(lake, assets, partition_key, run_config=None, raise_on_error=False):
    return materialize(
        assets, partition_key=partition_key, resources=make_resources(lake), instance=DagsterInstance.ephemeral(),
        run_config=run_config, raise_on_error=raise_on_error,
    )


def registry(lake):
    return make_resources(lake)["model_registry"]


def promote(lake, approver: str, min_improvement: float = 0.0):
    resources = make_resources(lake)
    return promote_challenger.execute_in_process(
        run_config={"ops": {"promote_challenger_op": {"config": {"approver": approver, "reason": "test", "min_improvement": min_improvement}}}},
        resources={k: resources[k] for k in ("spark", "lake", "model_registry")},
        instance=DagsterInstance.ephemeral(), raise_on_error=False,
    )


def gold_rows(lake, day) -> pd.DataFrame:
    return read_delta(lake, "risk_scores_gold", ingest_date=day).sort_values("transaction_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def lake(ingested_lake, tmp_path_factory):
    """A copy of the session's ingested lake (five days of silver, outcomes and training features, no model yet)."""
    root = tmp_path_factory.mktemp("risk") / "lake"
    shutil.copytree(ingested_lake, root, ignore=shutil.ignore_patterns("mlflow", "stream_day"))
    return root


def test_missing_champion_fails_clearly_and_scores_nothing(lake):
    result = run(lake, [risk_scores_gold], DAYS[-1])
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "No champion model" in failure.step_failure_data.error.message
    assert not (Path(lake) / "tables" / "risk_scores_gold").exists()


def test_training_registers_a_challenger_with_its_metrics(lake):
    result = run(lake, [risk_model], TRAIN_PARTITION, raise_on_error=True)
    reg = registry(lake)
    version = reg.version_by_alias(CHALLENGER)
    assert version is not None and str(version.version) == "1"
    assert reg.version_by_alias(CHAMPION) is None
    run_data = mlflow.MlflowClient(tracking_uri=reg.tracking_uri).get_run(version.run_id).data
    for metric in ("average_precision", "roc_auc", "recall_at_budget", "precision_at_budget"):
        assert 0.0 <= run_data.metrics[metric] <= 1.0
    assert run_data.metrics["average_precision"] > 0.5  # well above the positive rate of the outcomes
    assert run_data.params["training_delta_version"] == version.tags["training_delta_version"]
    assert run_data.params["training_first_day"] <= DAYS[0] and run_data.params["label_cutoff"].startswith(LABEL_CUTOFF)
    assert run_data.tags["dagster_run_id"] == result.run_id
    mlflow.set_tracking_uri(reg.tracking_uri)
    mlmodel = mlflow.models.get_model_info(f"models:/{reg.model_name}/1")
    assert [c["name"] for c in mlmodel.signature.inputs.to_dict()] == list(reg.load(version).features)
    assert mlflow.MlflowClient(tracking_uri=reg.tracking_uri).get_run(version.run_id).info.status == "FINISHED"


def test_training_labels_are_the_outcomes_decided_before_the_cutoff(lake, spark):
    outcomes = read_delta(lake, "transaction_outcomes")
    if outcomes["decision_time"].dt.tz is not None:
        outcomes["decision_time"] = outcomes["decision_time"].dt.tz_convert(None)
    rows = set(read_delta(lake, "transactions_silver")["transaction_id"])
    first, last = dt.date.fromisoformat(DAYS[0]), dt.date.fromisoformat(DAYS[-1])
    resources = make_resources(lake)
    for cutoff in (dt.datetime.combine(dt.date.fromisoformat(DAYS[-1]), dt.time()), dt.datetime.fromisoformat(LABEL_CUTOFF)):
        frame, *_ = load_training_frame(spark, resources["lake"], first, last, cutoff)
        decided = outcomes[(outcomes["decision_time"] < pd.Timestamp(cutoff)) & outcomes["transaction_id"].isin(rows)]
        labelled = frame[frame["label"].notna()]
        assert 0 < len(labelled) == decided["transaction_id"].nunique()
        assert dict(zip(labelled["transaction_id"], labelled["label"])) == dict(zip(decided["transaction_id"], decided["label"].astype(float)))


def test_promotion_needs_an_approver_then_gold_follows_the_contract_and_is_stable(lake):
    assert not promote(lake, approver=" ").success
    assert registry(lake).version_by_alias(CHAMPION) is None
    assert promote(lake, approver="a.auditor").success
    champion = registry(lake).version_by_alias(CHAMPION)
    assert str(champion.version) == "1" and champion.tags["approved_by"] == "a.auditor"

    for day in DAYS[-2:]:
        result = run(lake, GOLD_ASSETS, day)
        assert result.success and all(check_results(result).values()), check_results(result)
    day = DAYS[-1]
    gold = gold_rows(lake, day)
    silver = read_delta(lake, "transactions_silver", ingest_date=day)
    assert sorted(gold["transaction_id"]) == sorted(silver["transaction_id"])
    assert set(gold["model_version"]) == {"1"} and set(gold["model_run_id"]) == {champion.run_id}
    assert gold["pipeline_run_id"].nunique() == 1 and gold["top_features"].map(len).eq(5).all()

    validator = jsonschema.Draft202012Validator(load_contract("risk_scores"), format_checker=jsonschema.FormatChecker())
    for record in json.loads(gold.to_json(orient="records", date_format="iso")):
        record["event_time"] = pd.Timestamp(record["event_time"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        record["scored_at"] = pd.Timestamp(record["scored_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        record["event_date"], record["ingest_date"] = record["event_date"][:10], record["ingest_date"][:10]
        assert validate_rfc3339(record["event_time"])
        validator.validate(record)

    alerts = read_delta(lake, "anomaly_alerts", ingest_date=day)
    high = set(gold.loc[gold["risk_band"] == "HIGH", "transaction_id"])
    assert high and high <= set(alerts["transaction_id"])
    assert all(("HIGH_RISK_SCORE" in r) == (t in high) for t, r in zip(alerts["transaction_id"], alerts["reasons"]))

    again = run(lake, GOLD_ASSETS, day)
    assert again.success
    assert gold_rows(lake, day).equals(gold)  # same champion: not one byte of a row changes
    assert read_delta(lake, "anomaly_alerts", ingest_date=day).sort_values("alert_id").reset_index(drop=True).equals(alerts.sort_values("alert_id").reset_index(drop=True))


def test_a_weaker_challenger_is_refused_and_rollback_restores_the_first_versions_scores(lake):
    before = {day: gold_rows(lake, day) for day in DAYS[-2:]}
    weak = {"ops": {"risk_model": {"config": {"num_trees": 1, "num_leaves": 2, "max_depth": 1}}}}
    assert run(lake, [risk_model], TRAIN_PARTITION, run_config=weak, raise_on_error=True).success
    refused = promote(lake, approver="a.auditor")
    assert not refused.success and registry(lake).version_by_alias(CHAMPION).version == 1

    # a second champion regardless of quality (the approver accepts up to 1.0 less average precision)
    assert promote(lake, approver="b.approver", min_improvement=-1.0).success
    assert registry(lake).version_by_alias(CHAMPION).version == 2
    for day in DAYS[-2:]:
        assert run(lake, GOLD_ASSETS, day).success
        assert set(gold_rows(lake, day)["model_version"]) == {"2"}
    v2_last = gold_rows(lake, DAYS[-1])

    rollback = {"ops": {"risk_scores_gold": {"config": {"rollback_to_version": 1, "requested_by": "c.officer", "reason": "v2 misfires"}}}}
    assert run(lake, [risk_scores_gold, anomaly_alerts], DAYS[-2], run_config=rollback).success
    assert registry(lake).version_by_alias(CHAMPION).version == 1
    restored = gold_rows(lake, DAYS[-2])
    assert restored[CONTENT].equals(before[DAYS[-2]][CONTENT])  # the first version's scores, row for row
    assert gold_rows(lake, DAYS[-1]).equals(v2_last)  # the partition outside the range is untouched

    audit = read_delta(lake, MODEL_AUDIT).sort_values("decided_at")
    assert list(audit["action"]) == ["PROMOTED", "PROMOTION_REJECTED", "PROMOTED", "ROLLED_BACK"]
    assert list(audit["approver"]) == ["a.auditor", "a.auditor", "b.approver", "c.officer"]
    assert list(audit["to_version"]) == ["1", "2", "2", "1"]


def test_a_broken_champion_fails_the_run_and_changes_nothing(lake):
    reg = registry(lake)
    champion = reg.version_by_alias(CHAMPION)
    day = DAYS[-1]
    before = gold_rows(lake, day)
    source = Path(mlflow.MlflowClient(tracking_uri=reg.tracking_uri).get_model_version_download_uri(reg.model_name, champion.version).removeprefix("file://"))
    backup = source.with_name(source.name + ".bak")
    shutil.move(source, backup)
    try:
        result = run(lake, [risk_scores_gold], day)
    finally:
        shutil.move(backup, source)
    assert not result.success
    message = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error.message
    assert f"version {champion.version}" in message and "could not be loaded" in message
    assert gold_rows(lake, day).equals(before)
