"""The handbook's evaluation protocol, metrics and baseline (compliance_assets.ml.evaluation): delayed
outcomes, the train / delay / test split without known-compromised cards, point-in-time features equal to the
handbook's rolling windows, card precision@k, and a baseline that beats the base rate end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from compliance_assets.ml import evaluation as ev
from compliance_assets.synthetic.handbook import HandbookConfig, generate

START = pd.Timestamp("2018-04-01")
SIM = HandbookConfig(n_customers=300, n_terminals=600, nb_days=40, seed=3)
SIM_TEST_START = START + pd.Timedelta(days=28)


def frame_of(rows) -> pd.DataFrame:
    """rows: (event_time, customer, terminal, amount, label[, scenario]); ids t0, t1, ... in row order."""
    df = pd.DataFrame([r if len(r) == 6 else (*r, r[4]) for r in rows],
                      columns=["event_time", "customer_id", "terminal_id", "amount", "label", "scenario"])
    return df.assign(transaction_id=[f"t{i}" for i in range(len(df))], event_time=pd.to_datetime(df.event_time))


@pytest.fixture(scope="module")
def sim():
    return ev.handbook_frame(generate(SIM))


@pytest.fixture(scope="module")
def sim_features(sim):
    return ev.handbook_features(sim, ev.outcomes_table(sim, 7, "all_after_delay", SIM_TEST_START))


# --- outcomes and split --------------------------------------------------------------------------------------

def test_outcomes_table_has_the_delayed_decisions_of_the_protocol(sim):
    week = ev.outcomes_table(sim, 7, "train_week", SIM_TEST_START)
    every = ev.outcomes_table(sim, 7, "all_after_delay", SIM_TEST_START)
    assert list(week.columns) == ["transaction_id", "label", "decision_time"] and len(every) == len(sim)
    events = sim.set_index("transaction_id").event_time
    assert (every.decision_time.to_numpy() == (events.loc[every.transaction_id] + pd.Timedelta(days=7)).to_numpy()).all()
    in_week = events.loc[week.transaction_id]
    assert in_week.min() >= SIM_TEST_START - pd.Timedelta(days=14) and in_week.max() < SIM_TEST_START - pd.Timedelta(days=7)
    assert len(week) == sim.event_time.between(SIM_TEST_START - pd.Timedelta(days=14), SIM_TEST_START - pd.Timedelta(days=7), inclusive="left").sum()
    with pytest.raises(ValueError, match="protocol"):
        ev.outcomes_table(sim, 7, "everything", SIM_TEST_START)


def test_split_drops_cards_known_compromised_by_each_test_day():
    ts = pd.Timestamp("2024-01-29")  # train week Jan 15-21, delay Jan 22-28, test Jan 29 - Feb 4
    rows = [
        ("2024-01-05 10:00", "c", "T", 10, 1),  # before the train week: known only under all_after_delay
        ("2024-01-16 10:00", "a", "T", 10, 1),  # train week
        ("2024-01-18 10:00", "e", "T", 10, 0),
        ("2024-01-24 12:00", "b", "T", 10, 1),  # delay period: decided Jan 31 12:00
        ("2024-01-29 09:00", "a", "T", 10, 0),
        ("2024-01-29 09:00", "c", "T", 10, 0),
        ("2024-01-30 09:00", "b", "T", 10, 0),
        ("2024-01-30 10:00", "d", "T", 10, 1),  # a fraud in the test week is not known yet
        ("2024-01-31 23:00", "b", "T", 10, 0),  # Jan 31: b's fraud decided at 12:00, after the day began
        ("2024-02-01 09:00", "b", "T", 10, 0),  # Feb 1: known, dropped
        ("2024-02-03 09:00", "d", "T", 10, 0),
        ("2024-02-04 23:59", "e", "T", 10, 0),
        ("2024-02-05 00:00", "e", "T", 10, 0),  # after the test week
    ]
    frame = frame_of(rows)
    train, test = ev.split(frame, ts)
    assert train.transaction_id.tolist() == ["t1", "t2"]
    assert test.transaction_id.tolist() == ["t5", "t6", "t7", "t8", "t10", "t11"]
    train, test = ev.split(frame, ts, protocol="all_after_delay", training_days=28)
    assert train.transaction_id.tolist() == ["t0", "t1", "t2"]
    assert test.transaction_id.tolist() == ["t6", "t7", "t8", "t10", "t11"]  # c's Jan 5 fraud is known too
    _, test = ev.split(frame, ts, test_days=2)
    assert test.transaction_id.tolist() == ["t5", "t6", "t7"]


def handbook_get_train_test_set(tx, start_date_training, delta_train=7, delta_delay=7, delta_test=7):
    """The handbook's get_train_test_set (chapter 3), on the simulator's own columns."""
    train_df = tx[(tx.TX_DATETIME >= start_date_training) & (tx.TX_DATETIME < start_date_training + pd.Timedelta(days=delta_train))]
    known = set(train_df[train_df.TX_FRAUD == 1].CUSTOMER_ID)
    first_day = train_df.TX_TIME_DAYS.min()
    test = []
    for day in range(delta_test):
        test_day = tx[tx.TX_TIME_DAYS == first_day + delta_train + delta_delay + day]
        delay_day = tx[tx.TX_TIME_DAYS == first_day + delta_train + day - 1]
        known |= set(delay_day[delay_day.TX_FRAUD == 1].CUSTOMER_ID)
        test.append(test_day[~test_day.CUSTOMER_ID.isin(known)])
    return train_df, pd.concat(test)


def test_split_equals_the_handbooks_train_test_set():
    data = generate(SIM)
    frame = ev.handbook_frame(data)
    for test_day in (21, 28, 33):
        train, test = ev.split(frame, START + pd.Timedelta(days=test_day))
        h_train, h_test = handbook_get_train_test_set(data.transactions, START + pd.Timedelta(days=test_day - 14))
        assert train.transaction_id.tolist() == h_train.TRANSACTION_ID.astype(str).tolist()
        assert test.transaction_id.tolist() == h_test.TRANSACTION_ID.astype(str).tolist()
        assert len(test) < frame.event_time.between(START + pd.Timedelta(days=test_day), START + pd.Timedelta(days=test_day + 7), inclusive="left").sum()


# --- metrics -------------------------------------------------------------------------------------------------

def test_card_precision_at_k_on_a_hand_built_frame():
    rows = [  # (time, card, terminal, amount, label), scores below
        ("2024-01-01 10:00", "A", "T", 1, 1), ("2024-01-01 11:00", "B", "T", 1, 0), ("2024-01-01 12:00", "B", "T", 1, 1),
        ("2024-01-01 13:00", "C", "T", 1, 1), ("2024-01-01 14:00", "D", "T", 1, 0),
        ("2024-01-02 10:00", "A", "T", 1, 1), ("2024-01-02 11:00", "D", "T", 1, 0), ("2024-01-02 12:00", "E", "T", 1, 0),
        ("2024-01-02 13:00", "C", "T", 1, 1),
    ]
    scores = [0.9, 0.8, 0.01, 0.7, 0.75, 0.95, 0.9, 0.8, 0.3]
    frame = frame_of(rows).assign(score=scores)
    # day 1: cards by max score A .9 (fraud), B .8 (its fraud row counts: card max label), D .75, C .7 -> top 2 = A, B: 2/2
    # day 2: A, B detected and gone; D .9, E .8, C .3 -> top 2 = D, E: 0/2
    assert ev.card_precision_at_k(frame, k=2) == pytest.approx(0.5)
    # k = 4: day 1 A, B, D, C -> 3/4; day 2 (A, B, C gone) D, E -> 0/4 (divided by k, not by the cards left)
    assert ev.card_precision_at_k(frame, k=4) == pytest.approx(0.375)
    # k = 1: day 1 A -> 1; day 2 A (.95) has left, D -> 0 (were A kept, day 2 would score 1)
    assert ev.card_precision_at_k(frame, k=1) == pytest.approx(0.5)
    assert ev.evaluate(frame, scores, k=2)["card_precision_at_2"] == pytest.approx(0.5)


def test_ap_roc_and_per_scenario_ap_are_sklearns():
    rng = np.random.default_rng(0)
    n = 400
    labels = (rng.random(n) < 0.2).astype(int)
    scenario = np.where(labels == 1, rng.choice(["amount", "terminal"], n), "")
    scores = rng.random(n) + labels * np.where(scenario == "amount", 0.8, 0.1)
    frame = pd.DataFrame({"transaction_id": [str(i) for i in range(n)], "event_time": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 3 * 86400, n), unit="s"),
                          "customer_id": rng.integers(0, 150, n).astype(str), "terminal_id": "T", "amount": 1.0, "label": labels, "scenario": scenario})
    result = ev.evaluate(frame, scores)
    assert result["average_precision"] == pytest.approx(average_precision_score(labels, scores))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["n"] == n and result["fraud_rate"] == pytest.approx(labels.mean())
    assert set(result["per_scenario_ap"]) == {"amount", "terminal"}
    for s, ap in result["per_scenario_ap"].items():
        keep = (labels == 0) | (scenario == s)
        assert ap == pytest.approx(average_precision_score(labels[keep], scores[keep]))
    assert result["per_scenario_ap"]["amount"] > result["per_scenario_ap"]["terminal"]
    assert 0 <= result["card_precision_at_100"] <= 1
    assert np.isnan(ev.roc_auc(np.zeros(5), np.arange(5)))


# --- features --------------------------------------------------------------------------------------------------

FEATURE_ROWS = [
    ("2024-01-01 10:00", "c1", "T", 10.0, 1),  # t0: a fraud at T, decided Jan 8 10:00 (delay 7)
    ("2024-01-03 10:00", "c1", "T", 20.0, 0),  # t1
    ("2024-01-06 03:00", "c2", "U", 5.0, 0),  # t2: Saturday night
    ("2024-01-08 11:00", "c2", "T", 30.0, 0),  # t3: T's windows end Jan 1 11:00
    ("2024-01-10 12:00", "c1", "T", 40.0, 0),  # t4: T's windows end Jan 3 12:00
]


def test_handbook_features_by_hand():
    frame = frame_of(FEATURE_ROWS)
    f = ev.handbook_features(frame, ev.outcomes_table(frame, 7, "all_after_delay", "2024-02-01")).set_index("transaction_id")
    assert set(ev.FEATURES) <= set(f.columns) and len(ev.FEATURES) == 15
    assert f.TX_DURING_WEEKEND.tolist() == [0, 0, 1, 0, 0] and f.TX_DURING_NIGHT.tolist() == [0, 0, 1, 0, 0]
    # customer windows (t - w, t], the transaction included
    assert f.loc["t4", ["CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_NB_TX_7DAY_WINDOW", "CUSTOMER_ID_NB_TX_30DAY_WINDOW"]].tolist() == [1, 1, 3]
    assert f.loc["t4", "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW"] == pytest.approx(70 / 3)
    assert f.loc["t1", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"] == pytest.approx(15.0)
    # terminal windows (t - 7 - w, t - 7]
    assert f.loc["t3", ["TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW"]].tolist() == [1, 1.0]
    assert f.loc["t4", ["TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW"]].tolist() == [1, 0.0]
    assert f.loc["t4", ["TERMINAL_ID_NB_TX_7DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW"]].tolist() == [2, 0.5]
    assert f.loc[["t0", "t1", "t2"], "TERMINAL_ID_NB_TX_30DAY_WINDOW"].tolist() == [0, 0, 0]
    assert (f.loc[["t0", "t1", "t2"], "TERMINAL_ID_RISK_30DAY_WINDOW"] == 0).all()


def test_a_fraud_decided_after_a_transaction_never_changes_its_features():
    frame = frame_of(FEATURE_ROWS)
    outcomes = ev.outcomes_table(frame, 7, "all_after_delay", "2024-02-01")
    base = ev.handbook_features(frame, outcomes).set_index("transaction_id")[ev.FEATURES]
    late = outcomes.assign(decision_time=outcomes.decision_time.where(outcomes.transaction_id != "t0", pd.Timestamp("2024-01-09")))
    moved = ev.handbook_features(frame, late).set_index("transaction_id")[ev.FEATURES]
    assert moved.loc["t3", "TERMINAL_ID_RISK_7DAY_WINDOW"] == 0.0 and base.loc["t3", "TERMINAL_ID_RISK_7DAY_WINDOW"] == 1.0
    pd.testing.assert_frame_equal(moved.drop(index="t3"), base.drop(index="t3"))  # t4 comes after Jan 9
    unknown = ev.handbook_features(frame, outcomes[outcomes.transaction_id != "t0"]).set_index("transaction_id")
    assert (unknown.loc[["t3", "t4"], "TERMINAL_ID_RISK_7DAY_WINDOW"] == 0).all()


def test_features_use_only_outcomes_decided_by_the_transaction(sim, sim_features):
    """Dropping every outcome decided after a cut-off leaves the features of the transactions up to it
    as they were, and changes later ones (so the check is not vacuous)."""
    outcomes = ev.outcomes_table(sim, 7, "all_after_delay", SIM_TEST_START)
    cut = START + pd.Timedelta(days=20, hours=13)
    early = ev.handbook_features(sim, outcomes[outcomes.decision_time <= cut])
    before = (sim.event_time <= cut).to_numpy()
    pd.testing.assert_frame_equal(early.loc[before, ev.FEATURES], sim_features.loc[before, ev.FEATURES])
    assert not early.loc[~before, ev.FEATURES].equals(sim_features.loc[~before, ev.FEATURES])
    later = outcomes.assign(decision_time=outcomes.decision_time.where(outcomes.decision_time <= cut, outcomes.decision_time + pd.Timedelta(days=3)))
    pd.testing.assert_frame_equal(ev.handbook_features(sim, later).loc[before, ev.FEATURES], sim_features.loc[before, ev.FEATURES])


def test_features_equal_the_handbooks_rolling_windows(sim, sim_features):
    """With every outcome decided after the delay, the features are the handbook's pandas rolling windows."""
    df = sim.sort_values("event_time", kind="stable")
    ref = pd.DataFrame(index=df.index)

    def rolling(key: str, days: int, column: str):  # per group, in time order; back on the frame's index
        values = df.groupby(key).rolling(f"{days}d", on="event_time")[column]
        return lambda how: pd.Series(getattr(values, how)().to_numpy(), index=df.sort_values(key, kind="stable").index)

    for w in ev.WINDOWS:
        amount = rolling("customer_id", w, "amount")
        ref[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = amount("count")
        ref[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = amount("mean")
        delay, both = rolling("terminal_id", 7, "label"), rolling("terminal_id", 7 + w, "label")
        nb_tx = both("count") - delay("count")
        ref[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = nb_tx
        ref[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = ((both("sum") - delay("sum")) / nb_tx).fillna(0)
    unique = ~sim.duplicated(["customer_id", "event_time"], keep=False)  # rolling windows on tied times are row-order dependent
    ours = sim_features.loc[unique, ref.columns]
    assert unique.mean() > 0.99
    np.testing.assert_allclose(ours.to_numpy(float), ref.loc[ours.index].to_numpy(float), rtol=1e-9, atol=1e-9)
    assert (ours.TERMINAL_ID_RISK_7DAY_WINDOW > 0).mean() > 0.05


# --- baseline, end to end -------------------------------------------------------------------------------------

def test_baseline_beats_the_base_rate_end_to_end(sim_features):
    train, test = ev.split(sim_features, SIM_TEST_START)
    assert train.label.sum() > 20 and test.label.sum() > 20
    model = ev.train_baseline(train, seed=1, num_threads=1)  # one thread: the test machine's cores are shared
    scores = ev.score_baseline(model, test)
    np.testing.assert_array_equal(scores, ev.score_baseline(ev.train_baseline(train, seed=1, num_threads=1), test))  # deterministic
    result = ev.evaluate(test, scores)
    assert result["average_precision"] > 3 * result["fraud_rate"] and result["roc_auc"] > 0.65
    assert result["per_scenario_ap"].keys() <= {"1", "2", "3"} and "2" in result["per_scenario_ap"]
    shuffled = ev.evaluate(test, np.random.default_rng(0).permutation(scores))
    assert result["average_precision"] > shuffled["average_precision"] + 0.2
