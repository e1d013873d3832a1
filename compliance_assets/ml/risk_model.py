"""The risk model: gradient-boosted trees on confirmed outcomes plus an unsupervised anomaly signal,
stacked and calibrated to a [0, 1] risk score, with exact per-row TreeSHAP attributions.

Every confirmed outcome trains the trees: calibration is cross-fitted (K folds by event time; each
fold's out-of-fold tree scores fit the stacker), and the latest fold's out-of-fold scores are the
evaluation a promotion compares. Features a dataset does not have (all missing) are recorded as
absent and left out of the anomaly model, never filled with a constant.

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

from compliance_assets.ml.isolation import IsolationTables, compile_forest, score_samples
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
    folds: int = 5  # cross-fitting folds by event time; the latest is the evaluation period
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
    absent_features: tuple[str, ...] = ()  # missing on every training row: no tree splits on them, the anomaly model ignores them

    # --- scoring ---------------------------------------------------------------------------
    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"model input lacks features: {', '.join(missing)}")
        return frame.loc[:, list(self.features)].to_numpy(dtype=np.float64, na_value=np.nan)

    def _present(self) -> np.ndarray:
        present = self.__dict__.get("_present_mask")  # built once (the model is not changed once trained)
        if present is None:
            absent = set(getattr(self, "absent_features", ()))  # models registered before absence was recorded have none
            present = self.__dict__["_present_mask"] = np.array([f not in absent for f in self.features])
        return present

    def anomaly_signal(self, X: np.ndarray) -> np.ndarray:
        present = self._present()
        filled = np.where(np.isnan(X), self.fill_values, X)[:, present]
        return -score_samples(self._isolation_tables(), filled)

    def _isolation_tables(self) -> IsolationTables:
        """The anomaly forest flattened (ml/isolation.py: sklearn's scores without its per-tree overhead), built once."""
        tables = self.__dict__.get("_isolation")
        if tables is None:
            tables = self.__dict__["_isolation"] = compile_forest(self.anomaly)
        return tables

    def __getstate__(self) -> dict:
        """Pickled without the flattened forest and the present-feature mask: they are rebuilt on first use."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_isolation", "_present_mask")}

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
        return self.score_matrix(self._matrix(frame))

    def score_matrix(self, X: np.ndarray) -> ScoredBatch:
        """`score` of a float matrix in `features` order, NaN = unknown (the real-time lane builds it without pandas)."""
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
@dataclass
class Evaluation:
    """The evaluation period (the latest fold by event time) with every labelled row's out-of-fold
    score: what trees trained without those rows made of them. A promotion compares on it."""

    start: pd.Timestamp
    scores: pd.DataFrame  # transaction_id, label, score


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].notna()]


def fold_ids(n: int, folds: int) -> np.ndarray:
    """Fold of each of n rows in event-time order: `folds` contiguous blocks of (nearly) equal size."""
    return (np.arange(n) * folds) // max(n, 1)


def _check_positives(name: str, labels: np.ndarray) -> None:
    pos = int((labels == 1).sum())
    if pos < MIN_POSITIVES or pos == len(labels):
        raise TrainingDataError(
            f"{name} has {len(labels)} confirmed outcomes of which {pos} are positive; at least "
            f"{MIN_POSITIVES} positives and some negatives are needed. Widen the training window or wait for more outcomes."
        )


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(idx, len(values) - 1)])


def evaluate(model: RiskModel, frame: pd.DataFrame, scores: np.ndarray | None = None) -> dict[str, float]:
    """Metrics on the confirmed outcomes of `frame` (the model's scores, or the given `scores` of
    every row); the alert threshold is the model's HIGH bound."""
    all_scores = model.score(frame).risk_score if scores is None else scores  # every row once; the labelled ones are a subset
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


def evaluation_scores(model: RiskModel, frame: pd.DataFrame, evaluation: pd.DataFrame) -> np.ndarray:
    """Scores of `frame`'s rows for `evaluate`: the out-of-fold score where `evaluation` has one
    (labelled rows the model's trees were also trained on), else the model's own."""
    scores = model.score(frame).risk_score
    oof = frame["transaction_id"].map(evaluation.set_index("transaction_id")["score"]).to_numpy(dtype=np.float64)
    return np.where(np.isnan(oof), scores, oof)


def _booster(X: np.ndarray, y: np.ndarray, features: tuple[str, ...], params: TrainingParams) -> lgb.Booster:
    return lgb.train(
        {
            "objective": "binary", "num_leaves": params.num_leaves, "max_depth": params.max_depth,
            "learning_rate": params.learning_rate, "min_data_in_leaf": params.min_data_in_leaf,
            "seed": params.seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbose": -1,
        },
        lgb.Dataset(X, label=y, feature_name=list(features)),
        num_boost_round=params.num_trees,
    )


def train(frame: pd.DataFrame, features: tuple[str, ...], params: TrainingParams, label_delay_days: int) -> tuple[RiskModel, dict[str, float], Evaluation]:
    """Train, stack, calibrate and set band thresholds; return the model, its metrics on the
    evaluation period and that period's out-of-fold scores.

    `frame` holds the features, `label` (null where no outcome was known at the cut-off),
    `event_time`, `transaction_id` and `weight` (1 / sampling rate of the row). The final trees
    learn from every label; the stacker (log-odds = c + a * trees + b * anomaly) learns from the
    out-of-fold tree scores of `params.folds` folds by event time, so it is calibrated on scores of
    rows the trees did not see.
    """
    frame = frame.sort_values(["event_time", "transaction_id"], kind="stable").reset_index(drop=True)
    labelled_mask = frame["label"].notna().to_numpy()
    labelled = frame[labelled_mask]
    y = labelled["label"].to_numpy().astype(int)
    folds = fold_ids(len(labelled), params.folds)
    if not len(labelled):
        raise TrainingDataError("the training window has no confirmed outcomes")
    for k in range(params.folds):
        _check_positives(f"fold {k + 1} of {params.folds} (by event time)", y[folds == k])

    X_all = frame.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    X = X_all[labelled_mask]
    oof = np.empty(len(y))
    for k in range(params.folds):
        oof[folds == k] = _booster(X[folds != k], y[folds != k], features, params).predict(X[folds == k], raw_score=True)
    booster = _booster(X, y, features, params)

    absent = tuple(f for f, col in zip(features, X_all.T) if np.isnan(col).all())
    present = np.array([f not in absent for f in features])
    fill = np.nan_to_num(np.nanmedian(np.where(present, X_all, 0.0), axis=0), nan=0.0)
    anomaly = IsolationForest(n_estimators=params.anomaly_trees, max_samples=256, random_state=params.seed)
    w = frame["weight"].to_numpy()
    anomaly.fit(np.where(np.isnan(X_all), fill, X_all)[:, present], sample_weight=w)

    model = RiskModel(
        features=tuple(features), booster_text=booster.model_to_string(), tables=compile_tables(booster), anomaly=anomaly,
        fill_values=fill, anomaly_mean=0.0, stack_coef=(1.0, 0.0), stack_intercept=0.0, thresholds={"MEDIUM": 1.0, "HIGH": 1.0},
        label_delay_days=label_delay_days, top_k=params.top_k, params=asdict(params), absent_features=absent,
    )
    signal = model.anomaly_signal(X_all)
    model.anomaly_mean = float(np.average(signal, weights=w))

    stacker = LogisticRegression(C=1.0).fit(np.column_stack([oof, signal[labelled_mask]]), y)
    model.stack_coef = (float(stacker.coef_[0][0]), float(stacker.coef_[0][1]))
    model.stack_intercept = float(stacker.intercept_[0])
    oof_score = stacker.predict_proba(np.column_stack([oof, signal[labelled_mask]]))[:, 1]

    # band thresholds from the whole population (the alert budget is a volume): labelled rows at their out-of-fold score
    scores = model.score(frame).risk_score
    scores[labelled_mask] = oof_score
    model.thresholds = {
        "MEDIUM": weighted_quantile(scores, w, 1 - params.review_budget),
        "HIGH": weighted_quantile(scores, w, 1 - params.alert_budget),
    }
    last = folds == params.folds - 1
    start = labelled["event_time"].to_numpy()[last].min()
    period = (frame["event_time"] >= start).to_numpy()
    evaluation = Evaluation(pd.Timestamp(start), pd.DataFrame({"transaction_id": labelled["transaction_id"].to_numpy()[last], "label": y[last], "score": oof_score[last]}))
    metrics = evaluate(model, frame[period], scores[period])
    metrics.update(
        cv_average_precision=float(average_precision_score(y, oof_score)), cv_roc_auc=float(roc_auc_score(y, oof_score)),
        training_outcomes=float(len(y)), training_positives=float(y.sum()), folds=float(params.folds),
        absent_features=float(len(absent)), stack_weight_trees=model.stack_coef[0], stack_weight_anomaly=model.stack_coef[1],
        threshold_medium=model.thresholds["MEDIUM"], threshold_high=model.thresholds["HIGH"],
    )
    return model, metrics, evaluation
