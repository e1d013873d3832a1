"""The handbook simulator (chapter 3 of Le Borgne et al.): deterministic by seed, transactions and fraud
scenarios as the mechanism prescribes, and the public-dataset export round-trips."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from compliance_assets.synthetic import handbook
from compliance_assets.synthetic.handbook import HandbookConfig, generate, write_export

SMALL = HandbookConfig(n_customers=200, n_terminals=400, nb_days=20, seed=11)
MEDIUM = HandbookConfig(n_customers=1000, n_terminals=2000, nb_days=60, seed=5)
P_TIME_KEPT = math.erf(43_200 / 20_000 / math.sqrt(2))  # P(0 < N(43200, 20000) < 86400)


@pytest.fixture(scope="module")
def medium():
    return generate(MEDIUM)


def _phi_sf(z: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(v / math.sqrt(2)) for v in z])


def test_same_seed_gives_identical_frames_and_another_seed_other_data():
    a, b = generate(SMALL), generate(SMALL)
    for name in ("customers", "terminals", "transactions", "compromised_terminals", "compromised_customers"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = generate(replace(SMALL, seed=12))
    assert not np.allclose(a.customers.x_customer_id, c.customers.x_customer_id)
    assert len(a.transactions) != len(c.transactions) or not a.transactions.TX_AMOUNT.equals(c.transactions.TX_AMOUNT)


def test_profiles_and_transactions_follow_the_handbook(medium):
    cust, term, tx = medium.customers, medium.terminals, medium.transactions
    assert cust.CUSTOMER_ID.tolist() == list(range(MEDIUM.n_customers)) and term.TERMINAL_ID.tolist() == list(range(MEDIUM.n_terminals))
    for col, lo, hi in (("x_customer_id", 0, 100), ("y_customer_id", 0, 100), ("mean_amount", 5, 100), ("mean_nb_tx_per_day", 0, 4)):
        assert cust[col].between(lo, hi).all() and cust[col].std() > (hi - lo) / 4  # spread like a uniform
    assert np.allclose(cust.std_amount, cust.mean_amount / 2)
    assert list(tx.columns) == handbook.TX_COLUMNS + ["TX_FRAUD", "TX_FRAUD_SCENARIO"]
    assert tx.TRANSACTION_ID.tolist() == list(range(len(tx))) and tx.TX_DATETIME.is_monotonic_increasing
    # times: within the day, consistent across the three time columns
    assert ((tx.TX_TIME_SECONDS % 86_400) > 0).all()
    assert (tx.TX_TIME_DAYS == tx.TX_TIME_SECONDS // 86_400).all() and tx.TX_TIME_DAYS.between(0, MEDIUM.nb_days - 1).all()
    assert (tx.TX_DATETIME == pd.Timestamp(MEDIUM.start_date) + pd.to_timedelta(tx.TX_TIME_SECONDS, unit="s")).all()
    # every terminal is within the radius of its customer
    c, t = cust.set_index("CUSTOMER_ID").loc[tx.CUSTOMER_ID], term.set_index("TERMINAL_ID").loc[tx.TERMINAL_ID]
    dist = np.hypot(c.x_customer_id.to_numpy() - t.x_terminal_id.to_numpy(), c.y_customer_id.to_numpy() - t.y_terminal_id.to_numpy())
    assert (dist < MEDIUM.radius).all()
    # volume: Poisson(mean_nb_tx_per_day) a day, thinned by the kept times (customers without terminals make none)
    expected = (cust.mean_nb_tx_per_day * (cust.nb_terminals > 0)).sum() * MEDIUM.nb_days * P_TIME_KEPT
    assert abs(len(tx) / expected - 1) < 0.02
    legit = tx[tx.TX_FRAUD_SCENARIO != 3]
    assert (legit.TX_AMOUNT >= 0).all() and np.allclose(legit.TX_AMOUNT, legit.TX_AMOUNT.round(2))
    per_cust = legit.groupby("CUSTOMER_ID").TX_AMOUNT.mean()
    assert np.corrcoef(per_cust, cust.mean_amount.loc[per_cust.index])[0, 1] > 0.95


def test_fraud_rate_and_scenario_mix_follow_from_the_mechanism(medium):
    """Expected shares derived from the mechanism: scenario 1 = P(N(m, m/2) > 220) weighted by activity;
    scenario 2 = 2 / n_terminals per active compromise (min(d + 1, 28) on day d); scenario 3 = 1/3 of
    3 / n_customers per active compromise (min(d + 1, 14))."""
    cust, tx = medium.customers, medium.transactions
    days = np.arange(MEDIUM.nb_days)
    weight = cust.mean_nb_tx_per_day * (cust.nb_terminals > 0)
    p1 = (weight * _phi_sf((220 - cust.mean_amount) / cust.std_amount)).sum() / weight.sum()
    p2 = 2 / MEDIUM.n_terminals * np.minimum(days + 1, 28).mean()
    p3 = 1 / MEDIUM.n_customers * np.minimum(days + 1, 14).mean()
    share = tx.TX_FRAUD_SCENARIO.value_counts(normalize=True)
    assert share[1] == pytest.approx(p1 * (1 - p2 - p3), rel=0.4)  # scenarios 2 and 3 overwrite some
    assert share[2] == pytest.approx(p2 * (1 - p3), rel=0.25)
    assert share[3] == pytest.approx(p3, rel=0.25)
    assert tx.TX_FRAUD.mean() == pytest.approx(p1 + p2 + p3, rel=0.2)
    assert (tx.TX_FRAUD == (tx.TX_FRAUD_SCENARIO > 0)).all()
    frauds = tx.TX_FRAUD_SCENARIO[tx.TX_FRAUD == 1].value_counts(normalize=True)
    assert 0 < frauds[1] < 0.15 and frauds[2] + frauds[3] > 0.85 and frauds[2] > frauds[3]


def test_scenario_1_is_every_large_amount_not_overwritten(medium):
    tx = medium.transactions
    assert ((tx.TX_AMOUNT > 220) | (tx.TX_FRAUD_SCENARIO != 1)).all()
    assert (tx.TX_FRAUD[tx.TX_AMOUNT > 220] == 1).all()  # scenario 3 may have made it large; still fraud


def test_scenario_2_is_exactly_the_compromised_terminals_next_28_days(medium):
    tx, comp = medium.transactions, medium.compromised_terminals
    assert (comp.groupby("DAY").TERMINAL_ID.nunique() == 2).all() and comp.DAY.nunique() == MEDIUM.nb_days
    pairs = tx[["TRANSACTION_ID", "TERMINAL_ID", "TX_TIME_DAYS"]].merge(comp, on="TERMINAL_ID")
    within = pairs[(pairs.TX_TIME_DAYS >= pairs.DAY) & (pairs.TX_TIME_DAYS < pairs.DAY + 28)]
    active = tx.TRANSACTION_ID.isin(within.TRANSACTION_ID)
    assert active.sum() > 100
    assert (tx.TX_FRAUD_SCENARIO[active].isin([2, 3])).all()  # all fraud; scenario 3 may come on top
    assert (active[tx.TX_FRAUD_SCENARIO == 2]).all()  # and nothing else is scenario 2
    # the day after the window the terminal is clean again (unless compromised anew)
    after = pairs[pairs.TX_TIME_DAYS == pairs.DAY + 28]
    clean = after[~after.TRANSACTION_ID.isin(within.TRANSACTION_ID)]
    assert len(clean) and (tx.set_index("TRANSACTION_ID").TX_FRAUD_SCENARIO.loc[clean.TRANSACTION_ID] != 2).all()


def test_scenario_3_multiplies_a_third_of_the_compromised_customers_amounts_by_5():
    config = MEDIUM
    rng = np.random.default_rng(config.seed)  # replay generate(): profiles, then transactions, then frauds
    customers, _, offsets, members = handbook._profiles(config, rng)
    before = handbook._transactions(config, customers, offsets, members, rng)
    after = generate(config)
    tx, comp = after.transactions, after.compromised_customers
    pd.testing.assert_frame_equal(before.drop(columns="TX_AMOUNT"), tx[handbook.TX_COLUMNS].drop(columns="TX_AMOUNT"))
    s3 = (tx.TX_FRAUD_SCENARIO == 3).to_numpy()
    assert (tx.TX_AMOUNT[~s3] == before.TX_AMOUNT[~s3]).all()
    ratio = tx.TX_AMOUNT[s3] / before.TX_AMOUNT[s3]
    powers = np.log(ratio[before.TX_AMOUNT[s3] > 0]) / np.log(5)  # x 5, or x 25 where windows overlap
    assert np.allclose(powers, np.rint(powers), atol=0.01) and (np.rint(powers) >= 1).all() and (np.rint(powers) == 1).mean() > 0.9
    # a third of each day's pooled 14-day transactions of its 3 compromised customers
    pairs = tx[["TRANSACTION_ID", "CUSTOMER_ID", "TX_TIME_DAYS"]].merge(comp, on="CUSTOMER_ID")
    within = pairs[(pairs.TX_TIME_DAYS >= pairs.DAY) & (pairs.TX_TIME_DAYS < pairs.DAY + 14)]
    assert tx.TRANSACTION_ID[s3].isin(within.TRANSACTION_ID).all()
    drawn = (within.groupby("DAY").size() // 3).sum()
    assert 0.9 * drawn <= s3.sum() <= drawn


def test_export_is_the_published_shape_and_round_trips(tmp_path):
    data = generate(SMALL)
    paths = write_export(data, tmp_path / "export")
    assert set(paths) == {"transactions", "customers", "terminals", "fraud_labels"} and all(p.exists() for p in paths.values())
    tx = pd.read_csv(paths["transactions"])
    assert list(tx.columns) == ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]
    assert len(tx) == len(data.transactions)
    assert (pd.to_datetime(tx.TX_DATETIME, format="%Y-%m-%d %H:%M:%S") == data.transactions.TX_DATETIME).all()
    assert np.allclose(tx.TX_AMOUNT, data.transactions.TX_AMOUNT)
    labels = pd.read_csv(paths["fraud_labels"])
    assert list(labels.columns) == ["TRANSACTION_ID", "TX_FRAUD", "TX_FRAUD_SCENARIO"]
    joined = tx.merge(labels, on="TRANSACTION_ID", validate="one_to_one")
    assert (joined.TX_FRAUD.to_numpy() == data.transactions.TX_FRAUD.to_numpy()).all() and joined.TX_FRAUD.sum() > 0
    customers, terminals = pd.read_csv(paths["customers"]), pd.read_csv(paths["terminals"])
    assert list(customers.columns) == ["CUSTOMER_ID", "x_customer_id", "y_customer_id"] and len(customers) == SMALL.n_customers
    assert list(terminals.columns) == ["TERMINAL_ID", "x_terminal_id", "y_terminal_id"] and len(terminals) == SMALL.n_terminals
    assert np.allclose(customers.x_customer_id, data.customers.x_customer_id, atol=1e-6)
