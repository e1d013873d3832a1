"""The risk model: gradient-boosted trees on confirmed outcomes plus an unsupervised anomaly signal,
stacked and calibrated to a [0, 1] risk score, with exact per-row TreeSHAP attributions.

Pure Python (numpy, LightGBM, scikit-learn): training runs on the driver; `RiskModel.score` is
what every Spark scoring path calls inside `mapInPandas`. The model is an MLflow pyfunc model, so
the registry holds everything scoring needs (features, thresholds, the label delay it was built for).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from compliance_assets.ml.treeshap import TreeTables, compile_tables, contributions

ANOMALY_FEATURE = "anomaly_signal"
BANDS = ("LOW", "MEDIUM", "HIGH")
MIN_POSITIVES = 5  # per split; fewer gives metrics and thresholds nobody should trust


@dataclass(frozen=True)
class TrainingParams:
    """Hyper-parameters and the alert budget; logged to MLflow as run parameters."""

    num_trees: int = 100
    num_leaves: int = 15
    max_depth: int = 4
    learning_rate: float = 0.08
    min_data_in_leaf: int = 20
    anomaly_trees: int = 100
    alert_budget: float = 0.005  # share of transactions that may be HIGH (alerted)
    review_budget: float = 0.03  # share that may be MEDIUM or HIGH
    calibration_fraction: float = 0.2
    holdout_fraction: float = 0.2
    top_k: int = 5
    seed: int = 7


class TrainingDataError(ValueError):
    """The training window does not hold enough confirmed outcomes to train and evaluate a model."""


@dataclass
class ScoredBatch:
    """Scores of a batch with the top-k signed contributions per row (log-odds units)."""

    risk_score: np.ndarray
    risk_band: np.ndarray
    top_index: np.ndarray  # (n, k) positions in RiskModel.feature_names, largest |contribution| first
    top_values: np.ndarray  # (n, k) feature values
    top_contributions: np.ndarray  # (n, k)


@dataclass
class RiskModel(mlflow.pyfunc.PythonModel):
    """Everything needed to score: the booster, its TreeSHAP tables, the anomaly model, the stacker,
    band thresholds, the feature order and the label delay merchant-risk features were built with."""

    features: tuple[str, ...]
    booster_text: str
    tables: TreeTables
    anomaly: IsolationForest
    fill_values: np.ndarray  # per-feature medians for the anomaly model (it takes no nulls)
    anomaly_mean: float
    stack_coef: tuple[float, float]  # weights of the trees' log-odds and of the anomaly signal
    stack_intercept: float
    thresholds: dict[str, float]  # lower bound of MEDIUM and HIGH
    label_delay_days: int
    top_k: int = 5
    params: dict = field(default_factory=dict)

    # --- scoring ---------------------------------------------------------------------------
    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"model input lacks features: {', '.join(missing)}")
        return frame.loc[:, list(self.features)].to_numpy(dtype=np.float64, na_value=np.nan)

    def anomaly_signal(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.fill_values, X)
        return -self.anomaly.score_samples(filled)

    def attributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log-odds of the risk score, per-feature contributions with the anomaly signal's last, the
        anomaly signal). Contributions add up to the log-odds minus `base_log_odds`."""
        a, b = self.stack_coef
        phi = contributions(self.tables, X) * a
        signal = self.anomaly_signal(X)
        contrib = np.column_stack([phi, b * (signal - self.anomaly_mean)])
        return self.base_log_odds + contrib.sum(axis=1), contrib, signal

    @property
    def base_log_odds(self) -> float:
        a, b = self.stack_coef
        return self.stack_intercept + a * self.tables.base_value + b * self.anomaly_mean

    def band(self, score: np.ndarray) -> np.ndarray:
        return np.where(score >= self.thresholds["HIGH"], "HIGH", np.where(score >= self.thresholds["MEDIUM"], "MEDIUM", "LOW"))

    def score(self, frame: pd.DataFrame) -> ScoredBatch:
        X = self._matrix(frame)
        logit, contrib, signal = self.attributions(X)
        risk = 1.0 / (1.0 + np.exp(-logit))
        k = min(self.top_k, contrib.shape[1])
        rows = np.arange(len(X))[:, None]
        magnitude = -np.abs(contrib)
        top = np.argpartition(magnitude, k - 1, axis=1)[:, :k] if len(X) else np.zeros((0, k), dtype=np.int64)
        order = np.take_along_axis(top, np.argsort(magnitude[rows, top], axis=1, kind="stable"), axis=1)
        values = np.column_stack([X, signal])
        return ScoredBatch(risk, self.band(risk), order.astype(np.int32), values[rows, order], contrib[rows, order])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """What the contribution columns stand for: the features, then the anomaly signal."""
        return (*self.features, ANOMALY_FEATURE)

    def predict(self, context, model_input, params=None):
        """MLflow entry point: risk_score and risk_band per row."""
        scored = self.score(model_input)
        return pd.DataFrame({"risk_score": scored.risk_score, "risk_band": scored.risk_band})

    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_str=self.booster_text)


# --- training ------------------------------------------------------------------------------
def time_split(frame: pd.DataFrame, params: TrainingParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train / calibration / holdout by event time: the model is always judged on later data.

    The cut points are quantiles of the confirmed outcomes' event times (the latest days have few
    outcomes yet, since they arrive late); unlabelled rows fall into the period of their time.
    """
    frame = frame.sort_values(["event_time", "transaction_id"], kind="stable").reset_index(drop=True)
    times = frame.loc[frame["label"].notna(), "event_time"]
    if times.empty:
        raise TrainingDataError("the training window has no confirmed outcomes")
    train_end = times.quantile(1 - params.calibration_fraction - params.holdout_fraction, interpolation="lower")
    cal_end = times.quantile(1 - params.holdout_fraction, interpolation="lower")
    t = frame["event_time"]
    return frame[t <= train_end], frame[(t > train_end) & (t <= cal_end)], frame[t > cal_end]


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].notna()]


def _check_positives(name: str, frame: pd.DataFrame) -> None:
    labelled = _labelled(frame)
    pos = int((labelled["label"] == 1).sum())
    if pos < MIN_POSITIVES or pos == len(labelled):
        raise TrainingDataError(
            f"the {name} split has {len(labelled)} confirmed outcomes of which {pos} are positive; at least "
            f"{MIN_POSITIVES} positives and some negatives are needed. Widen the training window or wait for more outcomes."
        )


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(idx, len(values) - 1)])


def evaluate(model: RiskModel, frame: pd.DataFrame) -> dict[str, float]:
    """Holdout metrics on confirmed outcomes; the alert threshold is the model's HIGH bound."""
    all_scores = model.score(frame).risk_score  # every row once; the labelled ones are a subset
    known = frame["label"].notna().to_numpy()
    y = frame["label"].to_numpy()[known].astype(int)
    score = all_scores[known]
    alerted = score >= model.thresholds["HIGH"]
    w = frame["weight"].to_numpy()
    return {
        "average_precision": float(average_precision_score(y, score)),
        "roc_auc": float(roc_auc_score(y, score)),
        "recall_at_budget": float(alerted[y == 1].mean()),
        "precision_at_budget": float(y[alerted].mean()) if alerted.any() else 0.0,
        "alert_rate": float((w * (all_scores >= model.thresholds["HIGH"])).sum() / w.sum()),
        "holdout_outcomes": float(known.sum()),
        "holdout_positives": float(y.sum()),
    }


def train(frame: pd.DataFrame, features: tuple[str, ...], params: TrainingParams, label_delay_days: int) -> tuple[RiskModel, dict[str, float]]:
    """Train, stack, calibrate and set band thresholds; return the model and its holdout metrics.

    `frame` holds the features, `label` (null where no outcome was known at the cut-off),
    `event_time`, `transaction_id` and `weight` (1 / sampling rate of the row).
    """
    train_df, cal_df, hold_df = time_split(frame, params)
    for name, part in (("training", train_df), ("calibration", cal_df), ("holdout", hold_df)):
        _check_positives(name, part)

    labelled = _labelled(train_df)
    X = labelled.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    booster = lgb.train(
        {
            "objective": "binary", "num_leaves": params.num_leaves, "max_depth": params.max_depth,
            "learning_rate": params.learning_rate, "min_data_in_leaf": params.min_data_in_leaf,
            "seed": params.seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbose": -1,
        },
        lgb.Dataset(X, label=labelled["label"].to_numpy().astype(int), feature_name=list(features)),
        num_boost_round=params.num_trees,
    )
    X_all = train_df.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    fill = np.nan_to_num(np.nanmedian(X_all, axis=0), nan=0.0)
    anomaly = IsolationForest(n_estimators=params.anomaly_trees, max_samples=256, random_state=params.seed)
    anomaly.fit(np.where(np.isnan(X_all), fill, X_all), sample_weight=train_df["weight"].to_numpy())

    model = RiskModel(
        features=tuple(features), booster_text=booster.model_to_string(), tables=compile_tables(booster), anomaly=anomaly,
        fill_values=fill, anomaly_mean=0.0, stack_coef=(1.0, 0.0), stack_intercept=0.0, thresholds={"MEDIUM": 1.0, "HIGH": 1.0},
        label_delay_days=label_delay_days, top_k=params.top_k, params=asdict(params),
    )
    model.anomaly_mean = float(np.average(model.anomaly_signal(X_all), weights=train_df["weight"].to_numpy()))

    # stack and calibrate on later data than the trees saw: log-odds = c + a * trees + b * anomaly
    cal = _labelled(cal_df)
    Xc = cal.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    trees = model.tables.base_value + contributions(model.tables, Xc).sum(axis=1)
    stacker = LogisticRegression(C=1.0).fit(np.column_stack([trees, model.anomaly_signal(Xc)]), cal["label"].to_numpy().astype(int))
    model.stack_coef = (float(stacker.coef_[0][0]), float(stacker.coef_[0][1]))
    model.stack_intercept = float(stacker.intercept_[0])

    # band thresholds from the calibration period's whole population: the alert budget is a volume
    cal_scores = model.score(cal_df).risk_score
    w = cal_df["weight"].to_numpy()
    model.thresholds = {
        "MEDIUM": weighted_quantile(cal_scores, w, 1 - params.review_budget),
        "HIGH": weighted_quantile(cal_scores, w, 1 - params.alert_budget),
    }
    metrics = evaluate(model, hold_df)
    metrics.update(
        training_outcomes=float(len(labelled)), training_positives=float(labelled["label"].sum()),
        calibration_outcomes=float(len(cal)), stack_weight_trees=model.stack_coef[0], stack_weight_anomaly=model.stack_coef[1],
        threshold_medium=model.thresholds["MEDIUM"], threshold_high=model.thresholds["HIGH"],
    )
    return model, metrics
