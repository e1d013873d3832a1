"""The evaluation protocol, metrics and baseline of the fraud-detection handbook (Le Borgne et al., chapters 3
and 4-5): delayed outcomes, a train / delay / test split that drops known-compromised cards, AP, ROC AUC,
card precision@k and a tree-ensemble baseline on the handbook's features.

Generic over any transaction frame with columns transaction_id (str), event_time (datetime64),
customer_id (str), terminal_id (str), amount (float), label (0/1) and scenario ("" / 0 for legitimate),
so the same protocol scores the handbook simulator and the platform's own generator. The handbook's exact
setup is ``handbook_features`` on ``outcomes_table(..., "all_after_delay")`` (it computes features from every
label, shifted by the delay) with ``split(..., protocol="train_week")``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

PROTOCOLS = ("train_week", "all_after_delay")
WINDOWS = (1, 7, 30)
FEATURES = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"] + [
    f"{who}_{what}_{w}DAY_WINDOW" for who, whats in (("CUSTOMER_ID", ("NB_TX", "AVG_AMOUNT")), ("TERMINAL_ID", ("NB_TX", "RISK")))
    for w in WINDOWS for what in whats
]
DAY_NS = pd.Timedelta(days=1).value


def _ns(times) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(times)).as_unit("ns").asi8


def _train_start(test_start: pd.Timestamp, protocol: str, delay_days: int, train_days: int, training_days: int) -> pd.Timestamp:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    return test_start - pd.Timedelta(days=delay_days + (train_days if protocol == "train_week" else training_days))


def outcomes_table(frame: pd.DataFrame, delay_days: int, protocol: str, test_start, train_days: int = 7) -> pd.DataFrame:
    """The outcomes a bank would know: (transaction_id, label, decision_time = event_time + delay). Under
    "train_week" only the train week [test_start - delay - train_days, test_start - delay) has outcomes."""
    test_start = pd.Timestamp(test_start)
    lo = _train_start(test_start, protocol, delay_days, train_days, 0)
    rows = frame
    if protocol == "train_week":
        rows = frame[(frame.event_time >= lo) & (frame.event_time < test_start - pd.Timedelta(days=delay_days))]
    return pd.DataFrame({
        "transaction_id": rows.transaction_id.to_numpy(), "label": rows.label.to_numpy().astype(np.int64),
        "decision_time": rows.event_time.to_numpy() + pd.Timedelta(days=delay_days).to_timedelta64(),
    })


def split(frame: pd.DataFrame, test_start, train_days: int = 7, delay_days: int = 7, test_days: int = 7,
          protocol: str = "train_week", training_days: int = 28) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) by the handbook protocol. Train: the training period ([test_start - delay - train_days,
    test_start - delay) for "train_week", the ``training_days`` before test_start - delay otherwise), all of
    whose outcomes are decided before test_start. Test: [test_start, test_start + test_days) without the
    cards known to be compromised by the start of each test day (a fraud decided before it; under
    "train_week" only frauds from the training period on count, as in the handbook)."""
    test_start = pd.Timestamp(test_start)
    start = _train_start(test_start, protocol, delay_days, train_days, training_days)
    t = _ns(frame.event_time)
    decision = t + delay_days * DAY_NS
    ts = test_start.value
    train = frame[(t >= start.value) & (t < ts - delay_days * DAY_NS) & (decision < ts)]
    # the moment each card became known compromised: its first fraud's decision
    observed = (frame.label.to_numpy() == 1) & (t >= (start.value if protocol == "train_week" else np.iinfo(np.int64).min))
    known = pd.Series(decision[observed], index=frame.customer_id.to_numpy()[observed]).groupby(level=0).min()
    in_test = (t >= ts) & (t < ts + test_days * DAY_NS)
    day_start = ts + (t - ts) // DAY_NS * DAY_NS
    card = known.index.get_indexer(frame.customer_id)
    known_at = np.where(card >= 0, known.to_numpy()[card], np.iinfo(np.int64).max)
    test = frame[in_test & ~(known_at < day_start)]
    return train, test


# --- metrics -----------------------------------------------------------------------------------------------

def average_precision(labels, scores) -> float:
    return float(average_precision_score(labels, scores)) if np.any(labels) else float("nan")


def roc_auc(labels, scores) -> float:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def card_precision_at_k(frame: pd.DataFrame, k: int = 100, score: str = "score") -> float:
    """Handbook card precision top-k: per calendar day, each card's max score and max label, the k
    best-scored cards, share compromised (out of k); cards detected on a day leave the later days; mean over
    days. Score ties are broken by customer_id so the figure is deterministic."""
    days = pd.to_datetime(frame.event_time).dt.normalize()
    detected: set = set()
    per_day = []
    for _, rows in frame.assign(_day=days).groupby("_day", sort=True):
        rows = rows[~rows.customer_id.isin(detected)]
        cards = rows.groupby("customer_id").agg(score=(score, "max"), label=("label", "max")).reset_index()
        top = cards.sort_values(["score", "customer_id"], ascending=[False, True], kind="stable").head(k)
        hits = top.customer_id[top.label == 1]
        per_day.append(len(hits) / k)
        detected.update(hits)
    return float(np.mean(per_day)) if per_day else float("nan")


def _scenario_keys(frame: pd.DataFrame) -> np.ndarray:
    return frame.scenario.astype(str).to_numpy()


def per_scenario_ap(frame: pd.DataFrame, scores) -> dict[str, float]:
    """AP of each fraud scenario's rows against all legitimate rows."""
    scores, labels, keys = np.asarray(scores, float), frame.label.to_numpy(), _scenario_keys(frame)
    legit = labels == 0
    return {s: average_precision(labels[legit | (keys == s)], scores[legit | (keys == s)])
            for s in sorted(set(keys[labels == 1]))}


def evaluate(test: pd.DataFrame, scores, k: int = 100) -> dict:
    scores, labels = np.asarray(scores, float), test.label.to_numpy()
    return {
        "n": len(test), "fraud_rate": float(labels.mean()) if len(test) else float("nan"),
        "average_precision": average_precision(labels, scores), "roc_auc": roc_auc(labels, scores),
        f"card_precision_at_{k}": card_precision_at_k(test.assign(score=scores), k),
        "per_scenario_ap": per_scenario_ap(test, scores),
    }


# --- the handbook baseline ---------------------------------------------------------------------------------

def _sum_upto(groups: np.ndarray, values: np.ndarray, q_groups: np.ndarray, q_values: np.ndarray,
              weights: np.ndarray | None = None) -> np.ndarray:
    """For each query, the total weight of the points of its group with value <= the query value."""
    n, m = len(values), len(q_values)
    weights = np.ones(n) if weights is None else np.asarray(weights, float)
    kind = np.r_[np.zeros(n), np.ones(m)]  # on equal values the points sort first: "<="
    order = np.lexsort((kind, np.r_[values, q_values], np.r_[groups, q_groups]))
    running = np.cumsum(np.r_[weights, np.zeros(m)][order])
    position = np.empty(n + m, np.int64)
    position[order] = np.arange(n + m)
    n_groups = int(max(groups.max(initial=-1), q_groups.max(initial=-1))) + 1
    before = np.r_[0.0, np.cumsum(np.bincount(groups, weights, minlength=n_groups))]  # weight of lower groups
    return running[position[n:]] - before[q_groups]


def handbook_features(frame: pd.DataFrame, outcomes: pd.DataFrame, delay_days: int = 7) -> pd.DataFrame:
    """``frame`` plus the handbook's FEATURES. Customer windows (t - w, t] include the transaction itself;
    terminal windows are (t - delay - w, t - delay], with risk = known frauds / transactions there, a fraud
    counting only if its outcome is in ``outcomes`` and decided at or before t (point in time)."""
    ts = pd.to_datetime(frame.event_time)
    t = _ns(ts)
    amount = frame.amount.to_numpy(float)
    cust = pd.factorize(frame.customer_id)[0]
    term, terminals = pd.factorize(frame.terminal_id)
    out = frame.assign(TX_AMOUNT=amount, TX_DURING_WEEKEND=(ts.dt.weekday >= 5).astype(np.int64).to_numpy(),
                       TX_DURING_NIGHT=(ts.dt.hour <= 6).astype(np.int64).to_numpy())
    delay = delay_days * DAY_NS
    # known frauds: each counts for the transactions of its terminal at t in [max(e + delay, decided), e + delay + w)
    known = outcomes[outcomes.label.to_numpy() == 1]
    pos = pd.Index(frame.transaction_id).get_indexer(known.transaction_id)
    known_decision, pos = _ns(known.decision_time)[pos >= 0], pos[pos >= 0]
    f_term, f_start = term[pos], np.maximum(t[pos] + delay, known_decision)
    for w in WINDOWS:
        span = w * DAY_NS
        n_c = _sum_upto(cust, t, cust, t) - _sum_upto(cust, t, cust, t - span)
        s_c = _sum_upto(cust, t, cust, t, amount) - _sum_upto(cust, t, cust, t - span, amount)
        n_t = _sum_upto(term, t, term, t - delay) - _sum_upto(term, t, term, t - delay - span)
        f_end = t[pos] + delay + span
        live = f_start < f_end
        frauds = _sum_upto(f_term[live], f_start[live], term, t) - _sum_upto(f_term[live], f_end[live], term, t)
        out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = np.rint(n_c).astype(np.int64)
        out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = s_c / n_c
        out[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = np.rint(n_t).astype(np.int64)
        out[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = np.where(n_t > 0, frauds / np.maximum(n_t, 1), 0.0)
    return out


def train_baseline(train: pd.DataFrame, seed: int = 0, num_threads: int = 2):
    """LightGBM in the spirit of the handbook's XGBoost baseline (100 depth-6 trees), deterministic."""
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(n_estimators=100, max_depth=6, num_leaves=63, learning_rate=0.1, deterministic=True,
                           force_row_wise=True, num_threads=num_threads, random_state=seed, verbose=-1)
    return model.fit(train[FEATURES].to_numpy(float), train.label.to_numpy())


def score_baseline(model, rows: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(rows[FEATURES].to_numpy(float))[:, 1]


def handbook_frame(dataset) -> pd.DataFrame:
    """The simulator's transactions (a ``HandbookDataset``) in the generic frame shape."""
    tx = dataset.transactions
    return pd.DataFrame({
        "transaction_id": tx.TRANSACTION_ID.astype(str), "event_time": tx.TX_DATETIME,
        "customer_id": tx.CUSTOMER_ID.astype(str), "terminal_id": tx.TERMINAL_ID.astype(str),
        "amount": tx.TX_AMOUNT.astype(float), "label": tx.TX_FRAUD.astype(np.int64),
        "scenario": tx.TX_FRAUD_SCENARIO.astype(np.int64),
    })
