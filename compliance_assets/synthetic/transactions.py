"""Transactions: normal behaviour (vectorised, per chunk) and the labelled anomaly scenarios.

Rows are first described as a "spec" (dict of column arrays: account, channel, merchant,
counterparty, amount in EUR, currency, location, time) and then assembled into contract records,
so normal and scenario rows share one code path. A day is cut into chunks that each cover a slice
of the day's diurnal time distribution, so the stream is in event-time order and memory is bounded
by one chunk.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from compliance_assets.synthetic.config import SCENARIO_WEIGHTS
from compliance_assets.synthetic.entities import (
    BASE_CURRENCY,
    CITY_COUNTRY,
    CITY_CURRENCY,
    CITY_DISTANCE_KM,
    CITY_LAT,
    CITY_LON,
    CURRENCIES,
    FAR_KM,
    NEARBY_CITY,
    NEARBY_KM,
    ONLINE_MCCS,
    REPORTING_THRESHOLD,
    Population,
    pick_in_city,
)
from contracts import load_contract

CHANNELS = tuple(load_contract("transactions")["properties"]["channel"]["enum"])
CARD_PRESENT, CARD_NOT_PRESENT, TRANSFER, ATM, DIRECT_DEBIT = (CHANNELS.index(c) for c in ("CARD_PRESENT", "CARD_NOT_PRESENT", "TRANSFER", "ATM", "DIRECT_DEBIT"))
CHANNEL_SHARE = np.zeros(len(CHANNELS))
CHANNEL_SHARE[[CARD_PRESENT, CARD_NOT_PRESENT, TRANSFER, ATM, DIRECT_DEBIT]] = (0.45, 0.25, 0.15, 0.07, 0.08)
OUTPUT_COLUMNS = list(load_contract("transactions")["properties"])
EUR = CURRENCIES.index(BASE_CURRENCY)
FOREIGN_ONLINE = np.array([CURRENCIES.index(c) for c in ("EUR", "USD", "GBP")])

# Relative transaction volume per UTC hour.
HOURLY = np.array([0.6, 0.4, 0.3, 0.25, 0.25, 0.4, 0.9, 1.8, 2.8, 3.2, 3.5, 3.8, 4.2, 4.0, 3.7, 3.6, 3.8, 4.2, 4.4, 4.0, 3.4, 2.6, 1.8, 1.1])
_CDF = np.concatenate([[0.0], np.cumsum(HOURLY) / HOURLY.sum()])
_KNOTS = np.arange(25) * 3600.0

# Roles of rows: normal, labelled scenario transaction, unlabelled leg of a scenario (first leg of
# an impossible-travel pair: an ordinary transaction at home).
NORMAL, LABELLED, LEG = 0, 1, 2
SPEC_FIELDS = {
    "secs": np.int64, "day_off": np.int64, "acct": np.int64, "channel": np.int64, "merch": np.int64, "cp": np.int64,
    "amount_base": float, "cur": np.int64, "lat": float, "lon": float, "dlat": float, "dlon": float,
    "flags": object, "scenario": object, "role": np.int64,
}
EMPTY_FLAGS: list[str] = []


def diurnal_seconds(q: np.ndarray) -> np.ndarray:
    """Seconds since midnight at quantile q of the diurnal distribution (piecewise-constant density)."""
    return np.interp(q, _CDF, _KNOTS)


@lru_cache(maxsize=8)
def time_strings(day: dt.date) -> np.ndarray:
    """ISO-8601 UTC strings for every second of `day` (index = seconds since midnight)."""
    d = day.isoformat()
    return np.array([f"{d}T{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)], dtype=object)


def _flags(n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out.fill(EMPTY_FLAGS)
    return out


def empty_spec(n: int) -> dict[str, np.ndarray]:
    spec = {k: (np.full(n, np.nan) if t is float else np.full(n, -1, dtype=np.int64) if t is np.int64 else np.empty(n, dtype=object)) for k, t in SPEC_FIELDS.items()}
    spec["day_off"][:] = 0
    spec["role"][:] = NORMAL
    spec["flags"] = _flags(n)
    spec["scenario"].fill("")
    return spec


def concat_specs(specs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not specs:
        return empty_spec(0)
    return {k: np.concatenate([s[k] for s in specs]) for k in SPEC_FIELDS}


def take_spec(spec: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in spec.items()}


def normal_spec(pop: Population, rng: np.random.Generator, secs: np.ndarray, day_off: np.ndarray | int = 0) -> dict[str, np.ndarray]:
    """Ordinary transactions of active accounts at the given times (vectorised)."""
    n = len(secs)
    s = empty_spec(n)
    s["secs"][:] = secs
    s["day_off"][:] = day_off
    acct = pop.active_idx[np.minimum(np.searchsorted(pop.active_cdf, rng.random(n), side="right"), len(pop.active_idx) - 1)]
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_SHARE)
    home = pop.home_city[acct]
    city = np.where(rng.random(n) < 0.03, NEARBY_CITY[home], home)
    card = (channel == CARD_PRESENT) | (channel == CARD_NOT_PRESENT)
    atm, transfer, dd = channel == ATM, channel == TRANSFER, channel == DIRECT_DEBIT
    merch = s["merch"]
    merch[card] = pick_in_city(rng, pop.shop_offsets, pop.shop_members, city[card])
    merch[atm] = pick_in_city(rng, pop.atm_offsets, pop.atm_members, city[atm])
    cp = s["cp"]
    cp[transfer] = pop.cp_normal_idx[rng.integers(0, len(pop.cp_normal_idx), int(transfer.sum()))]
    cp[dd] = pop.cp_company_idx[rng.integers(0, len(pop.cp_company_idx), int(dd.sum()))]

    typical = pop.typical_amount[acct]
    mult = rng.lognormal(0.0, 0.55, n)
    mult = np.where(dd, rng.lognormal(0.0, 0.3, n), np.where(atm, rng.lognormal(0.3, 0.4, n), mult))
    s["amount_base"][:] = typical * mult

    cur = np.where(transfer | dd, CITY_CURRENCY[home], CITY_CURRENCY[city])
    cnp = channel == CARD_NOT_PRESENT
    foreign = cnp & (rng.random(n) < 0.05)
    cur[foreign] = FOREIGN_ONLINE[rng.integers(0, len(FOREIGN_ONLINE), int(foreign.sum()))]
    s["cur"][:] = cur

    located = merch >= 0
    s["lat"][located] = pop.merchant_lat[merch[located]]
    s["lon"][located] = pop.merchant_lon[merch[located]]
    t_loc = transfer & (rng.random(n) < 0.7)
    s["lat"][t_loc] = np.round(pop.home_lat[acct[t_loc]] + rng.normal(0, 0.01, int(t_loc.sum())), 5)
    s["lon"][t_loc] = np.round(pop.home_lon[acct[t_loc]] + rng.normal(0, 0.01, int(t_loc.sum())), 5)
    deliv = cnp & (rng.random(n) < 0.4)
    s["dlat"][deliv] = np.round(pop.home_lat[acct[deliv]] + rng.normal(0, 0.005, int(deliv.sum())), 5)
    s["dlon"][deliv] = np.round(pop.home_lon[acct[deliv]] + rng.normal(0, 0.005, int(deliv.sum())), 5)

    r = rng.random(n)
    flags = s["flags"]
    for i in np.flatnonzero(cnp & (r < 0.03)):
        flags[i] = ["NEW_DEVICE"]
    for i in np.flatnonzero(cnp & (r >= 0.03) & (r < 0.04)):
        flags[i] = ["3DS_FAILED"]
    s["acct"][:] = acct
    s["channel"][:] = channel
    return s


def assemble(pop: Population, spec: dict[str, np.ndarray], day: dt.date, rates: dict[int, np.ndarray]) -> pd.DataFrame:
    """Contract records (columns in contract order) plus helper columns `_secs`, `_day_off`,
    `_amount_base`, `_scenario`, `_role` for the rows of a spec. `rates` maps day offset -> FX rates."""
    n = len(spec["secs"])
    acct, channel, merch, cp, cur = spec["acct"], spec["channel"], spec["merch"], spec["cp"], spec["cur"]
    rate = np.empty(n)
    event_time = np.empty(n, dtype=object)
    for off in np.unique(spec["day_off"]):
        sel = spec["day_off"] == off
        rate[sel] = rates[int(off)][cur[sel]]
        event_time[sel] = time_strings(day + dt.timedelta(days=int(off)))[spec["secs"][sel]]
    amount = np.maximum(np.round(spec["amount_base"] / rate, 2), 0.01)
    atm = channel == ATM
    amount[atm] = np.maximum(np.round(amount[atm], -1), 10.0)

    has_m, has_cp = merch >= 0, cp >= 0
    m, c = np.where(has_m, merch, 0), np.where(has_cp, cp, 0)
    merchant_id = np.where(has_m, pop.merchant_id[m], None)
    country = np.where(has_m, pop.merchant_city[m], pop.home_city[acct])
    cp_name = np.where(has_cp, pop.cp_name[c], None)
    description = np.where(
        atm,
        "Cash withdrawal " + pop.merchant_name[m],
        np.where(has_m, pop.merchant_name[m], np.where(channel == DIRECT_DEBIT, "Direct debit " + pop.cp_name[c], "Payment to " + pop.cp_name[c])),
    )
    return pd.DataFrame(
        {
            "transaction_id": np.empty(n, dtype=object),
            "event_time": event_time,
            "account_id": pop.account_id[acct],
            "merchant_id": merchant_id,
            "counterparty_id": np.where(has_cp, pop.cp_id[c], None),
            "amount": amount,
            "currency": np.array(CURRENCIES, dtype=object)[cur],
            "channel": np.array(CHANNELS, dtype=object)[channel],
            "country": CITY_COUNTRY[country],
            "mcc_code": np.where(has_m, pop.merchant_mcc[m], None),
            "risk_flags": spec["flags"],
            "latitude": spec["lat"],
            "longitude": spec["lon"],
            "delivery_latitude": spec["dlat"],
            "delivery_longitude": spec["dlon"],
            "description": description,
            "counterparty_name": cp_name,
            "_secs": spec["secs"],
            "_day_off": spec["day_off"],
            "_scenario": spec["scenario"],
            "_role": spec["role"],
        }
    )


# ---- scenarios ------------------------------------------------------------------------------

@dataclass
class ScenarioPlan:
    """Scenario rows for the day with the chunk each one belongs to."""

    spec: dict[str, np.ndarray]
    chunk: np.ndarray
    counts: dict[str, int]

    def rows_in(self, c: int) -> dict[str, np.ndarray]:
        return take_spec(self.spec, np.flatnonzero(self.chunk == c))


class _Builder:
    """Collects scenario groups: rows with times relative to the group start."""

    def __init__(self, pop: Population, rng: np.random.Generator):
        self.pop, self.rng = pop, rng
        self.used: set[int] = set()
        self.groups: list[tuple[str, dict[str, np.ndarray]]] = []

    def account(self, pool: np.ndarray, accept=None) -> int | None:
        for _ in range(200):
            a = int(pool[self.rng.integers(0, len(pool))])
            if a not in self.used and (accept is None or accept(a)):
                self.used.add(a)
                return a
        return None

    def shop(self, city: int) -> int:
        return int(pick_in_city(self.rng, self.pop.shop_offsets, self.pop.shop_members, np.array([city]))[0])

    def atm(self, city: int) -> int:
        return int(pick_in_city(self.rng, self.pop.atm_offsets, self.pop.atm_members, np.array([city]))[0])

    def add(self, scenario: str, rows: list[dict]) -> int:
        spec = empty_spec(len(rows))
        for i, row in enumerate(rows):
            for k, v in row.items():
                spec[k][i] = v
        spec["scenario"][:] = [scenario if r.get("role", LABELLED) == LABELLED else "" for r in rows]
        spec["role"][:] = [r.get("role", LABELLED) for r in rows]
        self.groups.append((scenario, spec))
        return int((spec["role"] == LABELLED).sum())

    def at_merchant(self, m: int) -> dict:
        return {"merch": m, "lat": self.pop.merchant_lat[m], "lon": self.pop.merchant_lon[m], "cur": CITY_CURRENCY[self.pop.merchant_city[m]]}


def _velocity_burst(b: _Builder) -> int:
    a = b.account(b.pop.active_idx)
    if a is None:
        return 0
    rng, pop = b.rng, b.pop
    k = int(rng.integers(8, 16))
    rel = np.sort(rng.integers(0, 600, k))
    rows = []
    for t in rel:
        row = {"secs": t, "acct": a, "channel": CARD_NOT_PRESENT, "amount_base": pop.typical_amount[a] * rng.lognormal(0, 0.4), **b.at_merchant(b.shop(pop.home_city[a]))}
        if rng.random() < 0.5:
            row |= {"dlat": pop.home_lat[a], "dlon": pop.home_lon[a]}
        if rng.random() < 0.5:
            row["flags"] = ["NEW_DEVICE"]
        rows.append(row)
    return b.add("velocity_burst", rows)


def _amount_spike(b: _Builder) -> int:
    a = b.account(b.pop.active_idx)
    if a is None:
        return 0
    rng, pop = b.rng, b.pop
    channel = int(rng.choice([CARD_PRESENT, CARD_NOT_PRESENT, TRANSFER]))
    row = {"secs": 0, "acct": a, "channel": channel, "amount_base": pop.typical_amount[a] * rng.uniform(15, 40)}
    if channel == TRANSFER:
        row |= {"cp": int(rng.choice(pop.cp_normal_idx)), "cur": CITY_CURRENCY[pop.home_city[a]], "lat": pop.home_lat[a], "lon": pop.home_lon[a]}
    else:
        row |= b.at_merchant(b.shop(pop.home_city[a]))
    return b.add("amount_spike", [row])


def _impossible_travel(b: _Builder) -> int:
    pop, rng = b.pop, b.rng
    a = b.account(pop.active_idx)
    if a is None:
        return 0
    home = pop.home_city[a]
    far = int(rng.choice(np.flatnonzero(CITY_DISTANCE_KM[home] > FAR_KM)))
    gap = int(rng.integers(20 * 60, 85 * 60))
    first = {"secs": 0, "acct": a, "channel": CARD_PRESENT, "amount_base": pop.typical_amount[a] * rng.lognormal(0, 0.5), "role": LEG, **b.at_merchant(b.shop(home))}
    channel = int(rng.choice([CARD_PRESENT, ATM]))
    m = b.shop(far) if channel == CARD_PRESENT else b.atm(far)
    second = {"secs": gap, "acct": a, "channel": channel, "amount_base": pop.typical_amount[a] * rng.uniform(1, 4), **b.at_merchant(m)}
    return b.add("impossible_travel", [first, second])


def _watchlisted_counterparty(b: _Builder) -> int:
    pop, rng = b.pop, b.rng
    a = b.account(pop.active_idx)
    if a is None:
        return 0
    row = {"secs": 0, "acct": a, "channel": TRANSFER, "cp": int(rng.choice(pop.watch_cp_idx)), "amount_base": pop.typical_amount[a] * rng.uniform(1, 6), "cur": CITY_CURRENCY[pop.home_city[a]]}
    if rng.random() < 0.5:
        row |= {"lat": pop.home_lat[a], "lon": pop.home_lon[a]}
    return b.add("watchlisted_counterparty", [row])


def _structuring(b: _Builder) -> int:
    pop, rng = b.pop, b.rng
    a = b.account(pop.active_idx)
    if a is None:
        return 0
    k = int(rng.integers(3, 7))
    rel = np.sort(rng.integers(0, 4 * 3600, k))
    cps = pop.cp_normal_idx[rng.integers(0, len(pop.cp_normal_idx), k)]
    amounts = np.floor(rng.uniform(0.901, 0.995, k) * REPORTING_THRESHOLD * 100) / 100
    rows = [{"secs": t, "acct": a, "channel": TRANSFER, "cp": int(c), "amount_base": x, "cur": EUR} for t, c, x in zip(rel, cps, amounts)]
    return b.add("structuring", rows)


def _dormant_reactivation(b: _Builder) -> int:
    pop, rng = b.pop, b.rng
    if len(pop.dormant_idx) == 0:
        return 0
    a = b.account(pop.dormant_idx)
    if a is None:
        return 0
    k = int(rng.integers(1, 4))
    rows = []
    for t in np.sort(rng.integers(0, 2 * 3600, k)):
        channel = int(rng.choice([TRANSFER, ATM, CARD_PRESENT]))
        row = {"secs": t, "acct": a, "channel": channel, "amount_base": pop.typical_amount[a] * rng.uniform(8, 25)}
        if channel == TRANSFER:
            row |= {"cp": int(rng.choice(pop.cp_normal_idx)), "cur": CITY_CURRENCY[pop.home_city[a]]}
        else:
            row |= b.at_merchant(b.atm(pop.home_city[a]) if channel == ATM else b.shop(pop.home_city[a]))
        rows.append(row)
    return b.add("dormant_reactivation", rows)


def _compromised_merchant(b: _Builder, target: int) -> int:
    """One merchant per day: card-not-present purchases from many accounts living near it, shipped far away."""
    pop, rng = b.pop, b.rng
    shops = pop.shop_members[np.isin(pop.merchant_mcc[pop.shop_members], ONLINE_MCCS)]
    m = int(rng.choice(shops if len(shops) else pop.shop_members))
    mcity = pop.merchant_city[m]
    near = CITY_DISTANCE_KM[:, mcity] <= NEARBY_KM
    done = 0
    for _ in range(target):
        a = b.account(pop.active_idx, accept=lambda x: bool(near[pop.home_city[x]]))
        if a is None:
            a = b.account(pop.active_idx)
        if a is None:
            break
        home = pop.home_city[a]
        dest = int(rng.choice(np.flatnonzero(CITY_DISTANCE_KM[home] > 1500)))
        row = {
            "secs": 0, "acct": a, "channel": CARD_NOT_PRESENT, "amount_base": pop.typical_amount[a] * rng.uniform(3, 8),
            "dlat": round(CITY_LAT[dest] + rng.normal(0, 0.03), 5), "dlon": round(CITY_LON[dest] + rng.normal(0, 0.03), 5),
            **b.at_merchant(m),
        }
        done += b.add("compromised_merchant", [row])
    return done


_GROUP_MAKERS = {
    "velocity_burst": _velocity_burst,
    "amount_spike": _amount_spike,
    "impossible_travel": _impossible_travel,
    "watchlisted_counterparty": _watchlisted_counterparty,
    "structuring": _structuring,
    "dormant_reactivation": _dormant_reactivation,
}


def scenario_targets(total: int) -> dict[str, int]:
    """Labelled transactions wanted per scenario (at least one each when any are wanted)."""
    if total <= 0:
        return {s: 0 for s in SCENARIO_WEIGHTS}
    return {s: max(1, int(round(w * total))) for s, w in SCENARIO_WEIGHTS.items()}


def plan_scenarios(
    pop: Population, rng: np.random.Generator, total: int, capacity: np.ndarray, windows: np.ndarray
) -> ScenarioPlan:
    """Make scenario groups for `total` labelled transactions and place each group in one chunk
    (chosen in proportion to the chunk's free capacity) at a time inside the chunk's window."""
    b = _Builder(pop, rng)
    for scenario, target in scenario_targets(total).items():
        if scenario == "compromised_merchant":
            _compromised_merchant(b, target)
            continue
        made, attempts = 0, 0
        while made < target and attempts < 10 * target + 10:
            made += _GROUP_MAKERS[scenario](b)
            attempts += 1

    capacity = capacity.astype(float).copy()
    specs, chunks = [], []
    counts = {s: 0 for s in SCENARIO_WEIGHTS}
    for g in rng.permutation(len(b.groups)):
        scenario, spec = b.groups[g]
        size = len(spec["secs"])
        ok = np.where(capacity >= size, capacity, 0.0)
        if ok.sum() <= 0:
            continue
        c = int(rng.choice(len(capacity), p=ok / ok.sum()))
        capacity[c] -= size
        w0, w1 = windows[c], windows[c + 1]
        span = int(spec["secs"].max())
        start = rng.uniform(w0, max(w0, w1 - span - 1))
        spec["secs"] = np.clip(np.floor(start + spec["secs"]).astype(np.int64), int(np.floor(w0)), max(int(np.floor(w0)), int(np.ceil(w1)) - 1))
        spec["secs"] = np.minimum(spec["secs"], 86_399)
        specs.append(spec)
        chunks.append(np.full(size, c))
        counts[scenario] += int((spec["role"] == LABELLED).sum())
    spec = concat_specs(specs)
    return ScenarioPlan(spec=spec, chunk=np.concatenate(chunks) if chunks else np.zeros(0, dtype=int), counts=counts)


def chunk_day_rows(
    pop: Population, rng: np.random.Generator, n_normal: int, q0: float, q1: float, scenario_rows: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The chunk's transactions of the day itself (normal + scenario) in event-time order."""
    secs = np.minimum(np.floor(diurnal_seconds(rng.uniform(q0, q1, n_normal))).astype(np.int64), 86_399)
    spec = concat_specs([normal_spec(pop, rng, secs), scenario_rows])
    # ties at the same second: normal rows first (random order), scenario rows in group order
    n_s = len(scenario_rows["secs"])
    tie = np.concatenate([rng.random(n_normal), 1.0 + np.arange(n_s)])
    order = np.lexsort((tie, spec["secs"]))
    return take_spec(spec, order)


def late_rows(pop: Population, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Normal transactions of 1-3 days before the delivery day (arriving late)."""
    secs = np.minimum(np.floor(diurnal_seconds(rng.random(n))).astype(np.int64), 86_399)
    return normal_spec(pop, rng, secs, day_off=-rng.integers(1, 4, n))


def transaction_ids(day: dt.date, start: int, n: int, late: bool = False) -> np.ndarray:
    prefix = f"TX{day:%Y%m%d}{'L' if late else ''}"
    width = 9 if late else 10
    return np.array([f"{prefix}{i:0{width}d}" for i in range(start, start + n)], dtype=object)

