"""The risk model on its own: later data is held out, explanations add up to the score, the top
features are the largest contributions, and too few outcomes is a clear error."""

import numpy as np
import pandas as pd
import pytest

from compliance_assets.ml.risk_model import ANOMALY_FEATURE, TrainingDataError, TrainingParams, time_split, train

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


def test_the_holdout_is_the_latest_outcomes():
    train_df, cal_df, hold_df = time_split(frame(), TrainingParams())
    assert train_df["event_time"].max() < cal_df["event_time"].min() <= cal_df["event_time"].max() < hold_df["event_time"].min()
    labelled = [part["label"].notna().sum() for part in (train_df, cal_df, hold_df)]
    assert labelled[2] == pytest.approx(0.2 * sum(labelled), rel=0.02)


def test_metrics_and_thresholds(trained):
    model, metrics = trained
    for name in ("average_precision", "roc_auc", "recall_at_budget", "precision_at_budget", "alert_rate"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["average_precision"] > 0.6 and metrics["roc_auc"] > 0.9
    assert 0 < model.thresholds["MEDIUM"] < model.thresholds["HIGH"] < 1
    assert metrics["alert_rate"] == pytest.approx(0.005, abs=0.01)


def test_explanations_add_up_and_the_top_features_are_the_largest(trained):
    model, _ = trained
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
