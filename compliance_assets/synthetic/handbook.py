"""The card-transaction simulator of Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud
Detection - Practical Handbook", chapter 3 ("Transaction data simulator"), vectorised and seeded.

A second, independent source of labelled transactions (customers and terminals on a 100 x 100 grid, three
fraud scenarios) so models and the evaluation protocol can be checked against the textbook's figures.
One numpy Generator seeded from ``HandbookConfig.seed`` drives every draw: the same seed gives identical
frames (not the handbook's exact random stream). The handbook's fraud loops run over
``range(max TX_TIME_DAYS)``, skipping the last day; here a compromise is drawn on every day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DAY_SECONDS = 86_400
TX_COLUMNS = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TIME_SECONDS", "TX_TIME_DAYS"]
SCENARIO_1_THRESHOLD = 220.0  # scenario 1: every transaction above this amount is fraud
TERMINALS_PER_DAY, TERMINAL_DAYS = 2, 28  # scenario 2: compromised terminals a day, and for how long
CUSTOMERS_PER_DAY, CUSTOMER_DAYS, CNP_MULTIPLIER = 3, 14, 5  # scenario 3: 1/3 of their tx, amount x 5


@dataclass(frozen=True)
class HandbookConfig:
    n_customers: int = 5000
    n_terminals: int = 10000
    nb_days: int = 183
    start_date: dt.date = dt.date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 0


@dataclass
class HandbookDataset:
    customers: pd.DataFrame  # CUSTOMER_ID, x/y_customer_id, mean_amount, std_amount, mean_nb_tx_per_day, nb_terminals
    terminals: pd.DataFrame  # TERMINAL_ID, x_terminal_id, y_terminal_id
    transactions: pd.DataFrame  # TX_COLUMNS + TX_FRAUD, TX_FRAUD_SCENARIO
    # the draws of scenarios 2 and 3, one row per compromise: DAY and TERMINAL_ID / CUSTOMER_ID
    compromised_terminals: pd.DataFrame = field(default_factory=pd.DataFrame)
    compromised_customers: pd.DataFrame = field(default_factory=pd.DataFrame)


def _available_terminals(cxy: np.ndarray, txy: np.ndarray, radius: float, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the terminals strictly within ``radius`` of each customer: (offsets, terminal ids)."""
    counts, members = [], []
    for lo in range(0, len(cxy), chunk):
        d2 = ((cxy[lo:lo + chunk, None, :] - txy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(d2 < radius**2)  # row-major: grouped by customer, terminal ids ascending
        counts.append(np.bincount(rows, minlength=len(d2)))
        members.append(cols)
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    return np.r_[0, np.cumsum(counts)], (np.concatenate(members) if members else np.zeros(0, np.int64))


def _profiles(config: HandbookConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    c = rng.uniform([0, 0, 5, 0], [100, 100, 100, 4], size=(config.n_customers, 4))
    t = rng.uniform(0, 100, size=(config.n_terminals, 2))
    offsets, members = _available_terminals(c[:, :2], t, config.radius)
    customers = pd.DataFrame({
        "CUSTOMER_ID": np.arange(config.n_customers), "x_customer_id": c[:, 0], "y_customer_id": c[:, 1],
        "mean_amount": c[:, 2], "std_amount": c[:, 2] / 2, "mean_nb_tx_per_day": c[:, 3], "nb_terminals": np.diff(offsets),
    })
    terminals = pd.DataFrame({"TERMINAL_ID": np.arange(config.n_terminals), "x_terminal_id": t[:, 0], "y_terminal_id": t[:, 1]})
    return customers, terminals, offsets, members


def _transactions(config: HandbookConfig, customers: pd.DataFrame, offsets: np.ndarray, members: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n_c, days = config.n_customers, config.nb_days
    counts = rng.poisson(np.repeat(customers.mean_nb_tx_per_day.to_numpy()[:, None], days, axis=1))
    flat = np.repeat(np.arange(n_c * days), counts.ravel())
    cust, day = flat // days, flat % days
    secs = rng.normal(DAY_SECONDS / 2, 20_000, len(flat)).astype(np.int64)  # int() truncates like the handbook
    keep = (secs > 0) & (secs < DAY_SECONDS)
    cust, day, secs = cust[keep], day[keep], secs[keep]
    mean = customers.mean_amount.to_numpy()[cust]
    amount = rng.normal(mean, mean / 2)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    amount = np.round(amount, 2)
    n_avail = np.diff(offsets)[cust]
    pick = np.floor(rng.random(len(cust)) * n_avail).astype(np.int64)
    has = n_avail > 0  # customers without a terminal in reach make no transaction
    terminal = members[offsets[cust[has]] + pick[has]]
    cust, day, secs, amount = cust[has], day[has], secs[has], amount[has]
    seconds = secs + day * DAY_SECONDS
    order = np.argsort(seconds, kind="stable")  # TRANSACTION_ID in TX_DATETIME order (ties: generation order)
    tx = pd.DataFrame({
        "TRANSACTION_ID": np.arange(len(order)),
        "TX_DATETIME": pd.Timestamp(config.start_date) + pd.to_timedelta(seconds[order], unit="s"),
        "CUSTOMER_ID": cust[order], "TERMINAL_ID": terminal[order], "TX_AMOUNT": amount[order],
        "TX_TIME_SECONDS": seconds[order], "TX_TIME_DAYS": day[order],
    })
    return tx


def _add_frauds(config: HandbookConfig, tx: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The handbook's three scenarios, applied in its order (a later scenario overwrites an earlier one)."""
    days = config.nb_days
    amount, day = tx.TX_AMOUNT.to_numpy().copy(), tx.TX_TIME_DAYS.to_numpy()
    term, cust = tx.TERMINAL_ID.to_numpy(), tx.CUSTOMER_ID.to_numpy()
    scenario = np.where(amount > SCENARIO_1_THRESHOLD, 1, 0)
    # scenario 2: each day, TERMINALS_PER_DAY terminals; all their transactions of that day and the next 27
    comp_t = np.stack([rng.choice(config.n_terminals, TERMINALS_PER_DAY, replace=False) for _ in range(days)])
    hit = np.zeros((config.n_terminals, days + 1), np.int64)
    np.add.at(hit, (comp_t, np.arange(days)[:, None] + 1), 1)  # column d + 1: compromised on day d
    cum = hit.cumsum(axis=1)  # cum[:, d + 1] = compromises on days <= d
    active = cum[term, day + 1] - cum[term, np.maximum(day + 1 - TERMINAL_DAYS, 0)] > 0
    scenario[active] = 2
    # scenario 3: each day, CUSTOMERS_PER_DAY customers; 1/3 of their transactions of that day and the next
    # 13 (pooled over the day's customers) get amount x 5. Sequential: overlapping windows compound.
    by_cust = np.lexsort((day, cust))
    starts = np.searchsorted(cust[by_cust], np.arange(config.n_customers + 1))
    comp_c = np.stack([rng.choice(config.n_customers, CUSTOMERS_PER_DAY, replace=False) for _ in range(days)])
    for d in range(days):
        pool = []
        for c in comp_c[d]:
            rows = by_cust[starts[c]:starts[c + 1]]
            lo, hi = np.searchsorted(day[rows], [d, d + CUSTOMER_DAYS])
            pool.append(rows[lo:hi])
        pool = np.concatenate(pool)
        chosen = rng.choice(pool, len(pool) // 3, replace=False)
        amount[chosen] = np.round(amount[chosen] * CNP_MULTIPLIER, 2)
        scenario[chosen] = 3
    out = tx.assign(TX_AMOUNT=amount, TX_FRAUD=(scenario > 0).astype(np.int64), TX_FRAUD_SCENARIO=scenario.astype(np.int64))
    d_idx = np.arange(days)
    return out, (
        pd.DataFrame({"DAY": np.repeat(d_idx, TERMINALS_PER_DAY), "TERMINAL_ID": comp_t.ravel()}),
        pd.DataFrame({"DAY": np.repeat(d_idx, CUSTOMERS_PER_DAY), "CUSTOMER_ID": comp_c.ravel()}),
    )


def generate(config: HandbookConfig = HandbookConfig()) -> HandbookDataset:
    """Customer and terminal profiles, their transactions over ``nb_days`` days and the fraud labels."""
    rng = np.random.default_rng(config.seed)
    customers, terminals, offsets, members = _profiles(config, rng)
    tx = _transactions(config, customers, offsets, members, rng)
    tx, (comp_t, comp_c) = _add_frauds(config, tx, rng)
    return HandbookDataset(customers, terminals, tx, comp_t, comp_c)


def write_export(dataset: HandbookDataset, folder: Path | str) -> dict[str, Path]:
    """The dataset as a public card dataset is published: transactions without labels, the customer and
    terminal locations, and the fraud labels apart. Returns the four paths by name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tx = dataset.transactions
    frames = {
        "transactions": tx[["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]].assign(
            TX_DATETIME=tx.TX_DATETIME.dt.strftime("%Y-%m-%d %H:%M:%S")),
        "customers": dataset.customers[["CUSTOMER_ID", "x_customer_id", "y_customer_id"]],
        "terminals": dataset.terminals[["TERMINAL_ID", "x_terminal_id", "y_terminal_id"]],
        "fraud_labels": tx[["TRANSACTION_ID", "TX_FRAUD", "TX_FRAUD_SCENARIO"]],
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False, float_format="%.6f" if name in ("customers", "terminals") else None)
    return paths
