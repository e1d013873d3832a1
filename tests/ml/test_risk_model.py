"""The risk model on its own: every label trains the trees (cross-fitted calibration), the
evaluation period's scores are out of fold, absent features are recorded, explanations add up to
the score, the top features are the largest contributions, and too few outcomes is a clear error."""

import numpy as np
import pandas as pd
import pytest

from compliance_assets.ml.risk_model import ANOMALY_FEATURE, TrainingDataError, TrainingParams, evaluate, evaluation_scores, fold_ids, train

FEATURES = ("amount", "velocity", "distance", "noise")


def frame(n: int = 6000, positives: float = 0.05, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    df.loc[rng.random(n) < 0.05, "distance"] = np.nan
    risk = 2.5 * df["amount"] + 1.5 * df["velocity"] * (df["distance"].fillna(0) > 0)
    df["label"] = (risk > np.quantile(risk, 1 - positives)).astype(float)
    df.loc[rng.random(n) < 0.5, "label"] = np.nan  # half the transactions never get an outcome
    df["event_time"] = pd.Timestamp("2026-03-01") + pd.to_timedelta(np.arange(n) * 60, unit="s")
    df["transaction_id"] = [f"T{i:06d}" for i in range(n)]
    df["weight"] = 1.0
    return df


@pytest.fixture(scope="module")
def trained():
    return train(frame(), FEATURES, TrainingParams(num_trees=60, anomaly_trees=50), label_delay_days=2)


def test_every_label_trains_the_trees_and_the_evaluation_is_out_of_fold(trained):
    model, metrics, evaluation = trained
    df = frame()
    labelled = df[df["label"].notna()]
    assert metrics["training_outcomes"] == len(labelled)  # no label held back from the final trees
    assert list(fold_ids(10, 5)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # the evaluation period is the latest fifth of the outcomes by event time
    assert len(evaluation.scores) == pytest.approx(len(labelled) / 5, abs=1)
    assert evaluation.start == labelled["event_time"].iloc[-len(evaluation.scores)]
    # its scores are out of fold: not what the final model (trained on those rows) gives them
    rows = df[df["transaction_id"].isin(evaluation.scores["transaction_id"])]
    in_sample = model.score(rows).risk_score
    assert not np.allclose(in_sample, evaluation.scores.set_index("transaction_id").loc[rows["transaction_id"], "score"].to_numpy())
    period = df[df["event_time"] >= evaluation.start]
    assert evaluate(model, period, evaluation_scores(model, period, evaluation.scores))["average_precision"] == pytest.approx(metrics["average_precision"])
    assert metrics["cv_average_precision"] > 0.6


def test_an_absent_feature_is_recorded_and_ignored():
    df = frame().assign(missing_everywhere=np.nan)
    model, metrics, _ = train(df, (*FEATURES, "missing_everywhere"), TrainingParams(num_trees=20, anomaly_trees=20), label_delay_days=2)
    assert model.absent_features == ("missing_everywhere",) and metrics["absent_features"] == 1
    X = df.loc[:, [*FEATURES, "missing_everywhere"]].to_numpy()
    _, contrib, _ = model.attributions(X)
    assert np.all(contrib[:, len(FEATURES)] == 0)  # no tree uses it; the anomaly model never sees it
    X[:, len(FEATURES)] = 1.0
    assert np.allclose(model.anomaly_signal(X), model.anomaly_signal(df.loc[:, [*FEATURES, "missing_everywhere"]].to_numpy()))


def test_metrics_and_thresholds(trained):
    model, metrics, _ = trained
    for name in ("average_precision", "roc_auc", "recall_at_budget", "precision_at_budget", "alert_rate"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["average_precision"] > 0.6 and metrics["roc_auc"] > 0.9
    assert 0 < model.thresholds["MEDIUM"] < model.thresholds["HIGH"] < 1
    assert metrics["alert_rate"] == pytest.approx(0.005, abs=0.01)


def test_explanations_add_up_and_the_top_features_are_the_largest(trained):
    model, _, _ = trained
    df = frame(seed=9).head(2000)
    X = df.loc[:, list(FEATURES)].to_numpy()
    logit, contrib, _ = model.attributions(X)
    assert np.allclose(model.base_log_odds + contrib.sum(axis=1), logit)
    scored = model.score(df)
    assert np.allclose(scored.risk_score, 1 / (1 + np.exp(-logit)))
    assert set(scored.risk_band) <= {"LOW", "MEDIUM", "HIGH"}
    k = scored.top_contributions.shape[1]
    expected = -np.sort(-np.abs(contrib), axis=1)[:, :k]
    assert np.allclose(np.abs(scored.top_contributions), expected)
    assert model.feature_names == (*FEATURES, ANOMALY_FEATURE)
    for row in range(20):
        for i, value, c in zip(scored.top_index[row], scored.top_values[row], scored.top_contributions[row]):
            assert c == contrib[row, i]
            assert (np.isnan(value) and np.isnan(X[row, i])) or i == len(FEATURES) or value == X[row, i]
    predicted = model.predict(None, df)
    assert list(predicted.columns) == ["risk_score", "risk_band"] and len(predicted) == len(df)


def test_too_few_outcomes_is_a_clear_error():
    df = frame(positives=0.0005)
    with pytest.raises(TrainingDataError, match="positive"):
        train(df, FEATURES, TrainingParams(num_trees=10), label_delay_days=2)
