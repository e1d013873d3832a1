"""The simulated world: cities, currencies and FX, accounts (KYC + limits), merchants, counterparties,
watchlists. Populations depend only on the seed and the config (never on the day), so every day's
reference snapshot and transactions refer to the same entities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from compliance_assets.synthetic.config import STREAM_FX, STREAM_POPULATION, SynthConfig, rng_for
from contracts import load_contract

BASE_CURRENCY = "EUR"
REPORTING_THRESHOLD = 10_000.0
EARTH_RADIUS_KM = 6371.0088
CURRENCIES: tuple[str, ...] = tuple(load_contract("transactions")["properties"]["currency"]["enum"])

# EUR per one unit of currency, around which the daily rates drift.
BASE_RATES = {
    "EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05, "JPY": 0.0062, "SEK": 0.088, "NOK": 0.086,
    "DKK": 0.134, "PLN": 0.232, "CZK": 0.0405, "CAD": 0.68, "AUD": 0.61, "SGD": 0.69, "HKD": 0.118,
    "AED": 0.25, "CNY": 0.127, "INR": 0.011, "BRL": 0.17, "MXN": 0.05, "ZAR": 0.05, "TRY": 0.027,
}

# name, country, currency, latitude, longitude, share of accounts/merchants
CITIES = (
    ("Berlin", "DE", "EUR", 52.5200, 13.4050, 8), ("Munich", "DE", "EUR", 48.1351, 11.5820, 5),
    ("Hamburg", "DE", "EUR", 53.5511, 9.9937, 4), ("Frankfurt", "DE", "EUR", 50.1109, 8.6821, 4),
    ("Paris", "FR", "EUR", 48.8566, 2.3522, 8), ("Lyon", "FR", "EUR", 45.7640, 4.8357, 3),
    ("Marseille", "FR", "EUR", 43.2965, 5.3698, 3), ("Amsterdam", "NL", "EUR", 52.3676, 4.9041, 5),
    ("Rotterdam", "NL", "EUR", 51.9244, 4.4777, 2), ("Madrid", "ES", "EUR", 40.4168, -3.7038, 5),
    ("Barcelona", "ES", "EUR", 41.3874, 2.1686, 4), ("Rome", "IT", "EUR", 41.9028, 12.4964, 4),
    ("Milan", "IT", "EUR", 45.4642, 9.1900, 4), ("Brussels", "BE", "EUR", 50.8503, 4.3517, 3),
    ("Vienna", "AT", "EUR", 48.2082, 16.3738, 3), ("Dublin", "IE", "EUR", 53.3498, -6.2603, 2),
    ("Lisbon", "PT", "EUR", 38.7223, -9.1393, 2), ("London", "GB", "GBP", 51.5074, -0.1278, 6),
    ("Manchester", "GB", "GBP", 53.4808, -2.2426, 2), ("Zurich", "CH", "CHF", 47.3769, 8.5417, 2),
    ("Geneva", "CH", "CHF", 46.2044, 6.1432, 1), ("Stockholm", "SE", "SEK", 59.3293, 18.0686, 2),
    ("Copenhagen", "DK", "DKK", 55.6761, 12.5683, 2), ("Oslo", "NO", "NOK", 59.9139, 10.7522, 1),
    ("Warsaw", "PL", "PLN", 52.2297, 21.0122, 3), ("Prague", "CZ", "CZK", 50.0755, 14.4378, 2),
    ("New York", "US", "USD", 40.7128, -74.0060, 2), ("San Francisco", "US", "USD", 37.7749, -122.4194, 1),
    ("Tokyo", "JP", "JPY", 35.6762, 139.6503, 1), ("Singapore", "SG", "SGD", 1.3521, 103.8198, 1),
    ("Dubai", "AE", "AED", 25.2048, 55.2708, 1), ("Sydney", "AU", "AUD", -33.8688, 151.2093, 0.5),
    ("Sao Paulo", "BR", "BRL", -23.5505, -46.6333, 0.5),
)
NEARBY_KM = 800.0  # normal trips stay within this distance of home
FAR_KM = 3300.0  # impossible-travel destinations are at least this far from home (centroids)

ATM_MCC = "6011"
# mcc, share among non-ATM merchants, name stems
MCCS = (
    ("5411", 0.30, ("FreshMart", "City Grocer", "Bio Markt", "Corner Foods")),
    ("5812", 0.22, ("Trattoria Sole", "Bistro Central", "Noodle Bar", "Cafe Lumen")),
    ("5999", 0.12, ("Gift Corner", "Home Goods", "Online Bazaar", "Daily Deals")),
    ("4111", 0.10, ("Metro Transit", "City Rail", "Tram Pass")),
    ("5541", 0.08, ("Fuel Stop", "Petrol Express")),
    ("5912", 0.07, ("Apotheke Plus", "Health Pharmacy")),
    ("5732", 0.06, ("Tech Store", "Gadget World", "E-Lectro")),
    ("7011", 0.05, ("Grand Hotel", "City Inn", "Harbour Suites")),
)
ONLINE_MCCS = ("5999", "5732")  # where card-not-present fraud buys goods to resell

SEGMENTS = ("RETAIL", "SME", "CORPORATE")
SEGMENT_SHARE = (0.85, 0.12, 0.03)
SEGMENT_TYPICAL_MEDIAN = (60.0, 400.0, 2500.0)
SEGMENT_SINGLE_LIMIT = (5_000.0, 25_000.0, 250_000.0)
RISK_RATINGS = ("LOW", "MEDIUM", "HIGH")
LIST_NAMES = ("SANCTIONS_EU", "SANCTIONS_UN", "OFAC_SDN", "INTERNAL_BLOCKLIST")

FIRST_NAMES = (
    "Jane", "John", "Anna", "Lukas", "Marie", "Paul", "Sofia", "Luca", "Emma", "Noah", "Mia", "Leon",
    "Chloe", "Hugo", "Elena", "Mateo", "Olivia", "Jakub", "Freya", "Liam", "Ines", "Tomas", "Sara", "Oskar",
    "Julia", "David", "Clara", "Pierre", "Giulia", "Max", "Nora", "Ahmed", "Yuki", "Priya", "Carlos", "Eva",
)
LAST_NAMES = (
    "Smith", "Muller", "Schmidt", "Martin", "Bernard", "Rossi", "Garcia", "Fernandez", "Jansen", "de Vries",
    "Novak", "Kowalski", "Nielsen", "Johansson", "Murphy", "Silva", "Costa", "Weber", "Fischer", "Dubois",
    "Moreau", "Bianchi", "Romano", "Lopez", "Peeters", "Huber", "Brown", "Wilson", "Tanaka", "Khan",
)
COMPANY_STEMS = (
    "Stadtwerke", "Energia", "Telecom", "Insurance", "Property Management", "Leasing", "Water Utility",
    "Broadband", "Gym Club", "Streaming", "Logistics", "Consulting", "Trading", "Holdings", "Import Export",
)
COMPANY_SUFFIXES = ("GmbH", "SA", "BV", "Ltd", "SRL", "AG", "SAS", "Oy")

CITY_COUNTRY = np.array([c[1] for c in CITIES], dtype=object)
CITY_CURRENCY = np.array([CURRENCIES.index(c[2]) for c in CITIES])
CITY_LAT = np.array([c[3] for c in CITIES])
CITY_LON = np.array([c[4] for c in CITIES])
CITY_WEIGHT = np.array([c[5] for c in CITIES], dtype=float) / sum(c[5] for c in CITIES)


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (numpy, broadcasting); the same formula as the Spark features."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))


CITY_DISTANCE_KM = haversine_km(CITY_LAT[:, None], CITY_LON[:, None], CITY_LAT[None, :], CITY_LON[None, :])


def _nearest_city() -> np.ndarray:
    d = CITY_DISTANCE_KM + np.diag(np.full(len(CITIES), np.inf))
    nearest = d.argmin(axis=1)
    return np.where(d[np.arange(len(CITIES)), nearest] <= NEARBY_KM, nearest, np.arange(len(CITIES)))


NEARBY_CITY = _nearest_city()


def fx_rates(config: SynthConfig, day: dt.date) -> np.ndarray:
    """EUR per unit of each contract currency on `day`: a smooth, slow, deterministic drift around
    BASE_RATES that depends only on the seed and the day (no need for the previous day)."""
    rng = rng_for(config, None, STREAM_FX)
    n = len(CURRENCIES)
    phase1, phase2 = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    period1, period2 = rng.uniform(200, 500, n), rng.uniform(25, 60, n)
    amp1, amp2 = rng.uniform(0.01, 0.05, n), rng.uniform(0.002, 0.01, n)
    t = day.toordinal()
    drift = amp1 * np.sin(2 * np.pi * t / period1 + phase1) + amp2 * np.sin(2 * np.pi * t / period2 + phase2)
    base = np.array([BASE_RATES[c] for c in CURRENCIES])
    rates = np.round(base * np.exp(drift), 8)
    rates[CURRENCIES.index(BASE_CURRENCY)] = 1.0
    return rates


@dataclass
class Population:
    """All entities as column arrays (index = entity number)."""

    # accounts
    account_id: np.ndarray
    customer_name: np.ndarray
    home_city: np.ndarray
    home_lat: np.ndarray
    home_lon: np.ndarray
    risk_rating: np.ndarray
    pep_flag: np.ndarray
    segment: np.ndarray  # index into SEGMENTS
    typical_amount: np.ndarray  # EUR
    opened: np.ndarray  # day ordinals
    dormant_days: np.ndarray  # 0 = active, else days since last activity
    single_limit: np.ndarray
    daily_limit: np.ndarray
    active_cdf: np.ndarray  # cumulative activity weights over `active_idx`
    active_idx: np.ndarray  # accounts that make normal transactions
    dormant_idx: np.ndarray
    # merchants
    merchant_id: np.ndarray
    merchant_name: np.ndarray
    merchant_city: np.ndarray
    merchant_mcc: np.ndarray
    merchant_lat: np.ndarray
    merchant_lon: np.ndarray
    shop_offsets: np.ndarray  # CSR over cities: non-ATM, not watchlisted merchants
    shop_members: np.ndarray
    atm_offsets: np.ndarray
    atm_members: np.ndarray
    # counterparties
    cp_id: np.ndarray
    cp_name: np.ndarray
    cp_normal_idx: np.ndarray  # not on a watchlist
    cp_company_idx: np.ndarray  # companies not on a watchlist (direct debits)
    # watchlists
    watchlist: pd.DataFrame
    watch_cp_idx: np.ndarray
    watch_cp_name: np.ndarray
    watch_merchants: frozenset[int]

    @property
    def n_accounts(self) -> int:
        return len(self.account_id)


def _csr(groups: np.ndarray, members: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(groups[members], kind="stable")
    members = members[order]
    counts = np.bincount(groups[members], minlength=n_groups)
    return np.concatenate([[0], np.cumsum(counts)]), members


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), n)]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), n)]
    return first + " " + last


@lru_cache(maxsize=4)
def build_population(config: SynthConfig) -> Population:
    """Accounts, merchants, counterparties and watchlists for a config (cached per config)."""
    rng = rng_for(config, None, STREAM_POPULATION)
    n_cities = len(CITIES)

    # accounts
    n = config.accounts
    home_city = rng.choice(n_cities, n, p=CITY_WEIGHT)
    segment = rng.choice(len(SEGMENTS), n, p=SEGMENT_SHARE)
    typical = np.round(np.array(SEGMENT_TYPICAL_MEDIAN)[segment] * rng.lognormal(0.0, 0.6, n), 2)
    typical = np.maximum(typical, 5.0)
    risk = np.array(RISK_RATINGS, dtype=object)[rng.choice(3, n, p=(0.7, 0.24, 0.06))]
    pep = rng.random(n) < 0.01
    opened = dt.date(2008, 1, 1).toordinal() + rng.integers(0, 16 * 365, n)
    dormant = rng.random(n) < 0.02
    dormant_days = np.where(dormant, rng.integers(200, 901, n), 0)
    limit_scale = rng.choice([0.5, 1.0, 1.0, 2.0], n)
    single = np.array(SEGMENT_SINGLE_LIMIT)[segment] * limit_scale
    daily = single * rng.choice([2.0, 2.5, 4.0], n)
    activity = rng.lognormal(0.0, 0.8, n)

    # watchlisted accounts: a few, active ones that stop transacting normally
    n_watch_acc = max(3, min(10, n // 500))
    watch_acc = rng.choice(np.flatnonzero(~dormant), n_watch_acc, replace=False)
    active = ~dormant
    active[watch_acc] = False
    active_idx = np.flatnonzero(active)
    cdf = np.cumsum(activity[active_idx])
    cdf /= cdf[-1]

    # merchants: one ATM and one shop guaranteed per city, the rest drawn
    m = max(config.merchants, 2 * n_cities)
    m_city = np.concatenate([np.arange(n_cities), np.arange(n_cities), rng.choice(n_cities, m - 2 * n_cities, p=CITY_WEIGHT)])
    shop_p = np.array([s for _, s, _ in MCCS])
    mcc_idx = rng.choice(len(MCCS), m, p=shop_p / shop_p.sum())
    is_atm = rng.random(m) < 0.08
    is_atm[:n_cities], is_atm[n_cities : 2 * n_cities] = True, False
    mcc = np.where(is_atm, ATM_MCC, np.array([c for c, _, _ in MCCS], dtype=object)[mcc_idx]).astype(object)
    stems = [MCCS[i][2][rng.integers(0, len(MCCS[i][2]))] for i in mcc_idx]
    atm_banks = ("Euro Bank", "Cash Point", "Sparkasse", "Global Cash")
    m_names = np.array(
        [
            (f"{atm_banks[j % len(atm_banks)]} ATM {CITIES[c][0]} {j:04d}" if atm else f"{stem} {CITIES[c][0]} {j:04d}")
            for j, (c, atm, stem) in enumerate(zip(m_city, is_atm, stems))
        ],
        dtype=object,
    )
    m_lat = np.round(CITY_LAT[m_city] + rng.normal(0, 0.03, m), 5)
    m_lon = np.round(CITY_LON[m_city] + rng.normal(0, 0.045, m), 5)

    # counterparties: companies first, then people
    n_cp = max(300, n // 4)
    n_comp = n_cp // 8
    comp_names = np.array(
        [f"{COMPANY_STEMS[i % len(COMPANY_STEMS)]} {CITIES[c][0]} {COMPANY_SUFFIXES[k]}"
         for i, c, k in zip(rng.integers(0, 10**6, n_comp), rng.choice(n_cities, n_comp, p=CITY_WEIGHT), rng.integers(0, len(COMPANY_SUFFIXES), n_comp))],
        dtype=object,
    )
    cp_name = np.concatenate([comp_names, _names(rng, n_cp - n_comp)])
    cp_id = np.array([f"CP{i:07d}" for i in range(1, n_cp + 1)], dtype=object)

    # watchlists
    n_watch_cp = 40
    watch_cp = np.sort(rng.choice(n_cp, n_watch_cp, replace=False))
    watch_m = np.sort(rng.choice(np.flatnonzero(~is_atm[2 * n_cities :]) + 2 * n_cities, 5, replace=False)) if m > 2 * n_cities + 5 else np.array([], dtype=int)
    rows = []

    def listed_since() -> str:
        return (dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 13 * 365)))).isoformat()

    account_id = np.array([f"ACC{i:08d}" for i in range(1, n + 1)], dtype=object)
    customer_name = _names(rng, n)
    merchant_id = np.array([f"MER{i:06d}" for i in range(1, m + 1)], dtype=object)
    for k, i in enumerate(watch_cp):
        lists = [LIST_NAMES[k % 3]] + ([LIST_NAMES[3]] if k % 5 == 0 else [])
        rows += [(cp_id[i], "COUNTERPARTY", ln, cp_name[i], listed_since()) for ln in lists]
    for i in watch_m:
        rows.append((merchant_id[i], "MERCHANT", LIST_NAMES[3], m_names[i], listed_since()))
    for k, i in enumerate(watch_acc):
        rows.append((account_id[i], "ACCOUNT", LIST_NAMES[k % 4], customer_name[i], listed_since()))
    watchlist = pd.DataFrame(rows, columns=["entity_id", "entity_type", "list_name", "entity_name", "listed_since"])

    watch_m_set = frozenset(int(i) for i in watch_m)
    shop_mask = ~is_atm
    shop_mask[list(watch_m_set)] = False
    shop_offsets, shop_members = _csr(m_city, np.flatnonzero(shop_mask), n_cities)
    atm_offsets, atm_members = _csr(m_city, np.flatnonzero(is_atm), n_cities)
    cp_normal = np.setdiff1d(np.arange(n_cp), watch_cp)

    return Population(
        account_id=account_id,
        customer_name=customer_name,
        home_city=home_city,
        home_lat=np.round(CITY_LAT[home_city] + rng.normal(0, 0.04, n), 5),
        home_lon=np.round(CITY_LON[home_city] + rng.normal(0, 0.06, n), 5),
        risk_rating=risk,
        pep_flag=pep,
        segment=segment,
        typical_amount=typical,
        opened=opened,
        dormant_days=dormant_days,
        single_limit=single,
        daily_limit=daily,
        active_cdf=cdf,
        active_idx=active_idx,
        dormant_idx=np.flatnonzero(dormant),
        merchant_id=merchant_id,
        merchant_name=m_names,
        merchant_city=m_city,
        merchant_mcc=mcc,
        merchant_lat=m_lat,
        merchant_lon=m_lon,
        shop_offsets=shop_offsets,
        shop_members=shop_members,
        atm_offsets=atm_offsets,
        atm_members=atm_members,
        cp_id=cp_id,
        cp_name=cp_name,
        cp_normal_idx=cp_normal,
        cp_company_idx=cp_normal[cp_normal < n_comp],
        watchlist=watchlist,
        watch_cp_idx=watch_cp,
        watch_cp_name=cp_name[watch_cp],
        watch_merchants=watch_m_set,
    )


def pick_in_city(rng: np.random.Generator, offsets: np.ndarray, members: np.ndarray, city: np.ndarray) -> np.ndarray:
    """One member per row, uniformly among the members of that row's city (every city has one)."""
    start, count = offsets[city], offsets[city + 1] - offsets[city]
    return members[start + (rng.random(len(city)) * count).astype(np.int64)]


# ---- reference snapshots (one per day) -------------------------------------------------------

def kyc_frame(pop: Population, day: dt.date) -> pd.DataFrame:
    d = day.toordinal()
    last = np.where(pop.dormant_days > 0, d - pop.dormant_days, d - 1)
    opened = np.minimum(pop.opened, last - 30)
    return pd.DataFrame(
        {
            "account_id": pop.account_id,
            "customer_name": pop.customer_name,
            "home_country": CITY_COUNTRY[pop.home_city],
            "home_latitude": pop.home_lat,
            "home_longitude": pop.home_lon,
            "risk_rating": pop.risk_rating,
            "pep_flag": pop.pep_flag,
            "segment": np.array(SEGMENTS, dtype=object)[pop.segment],
            "typical_amount": pop.typical_amount,
            "account_opened_date": _iso_dates(opened),
            "last_activity_date": _iso_dates(last),
        }
    )


def limits_frame(pop: Population) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pop.account_id,
            "single_transaction_limit": np.round(pop.single_limit, 2),
            "daily_limit": np.round(pop.daily_limit, 2),
            "reporting_threshold": np.full(pop.n_accounts, REPORTING_THRESHOLD),
        }
    )


def merchants_frame(pop: Population) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "merchant_id": pop.merchant_id,
            "merchant_name": pop.merchant_name,
            "mcc_code": pop.merchant_mcc,
            "country": CITY_COUNTRY[pop.merchant_city],
            "latitude": pop.merchant_lat,
            "longitude": pop.merchant_lon,
        }
    )


def fx_frame(config: SynthConfig, day: dt.date) -> pd.DataFrame:
    return pd.DataFrame({"rate_date": day.isoformat(), "currency": list(CURRENCIES), "rate_to_base": fx_rates(config, day)})


def _iso_dates(ordinals: np.ndarray) -> np.ndarray:
    base = np.datetime64("0001-01-01")
    return (base + (ordinals - 1).astype("timedelta64[D]")).astype(str).astype(object)
