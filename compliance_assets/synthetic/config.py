"""Configuration of the synthetic data generator and the seeding scheme that makes it deterministic.

Every random draw comes from a generator seeded by (seed, day ordinal, stream id[, chunk]), so a day
can be regenerated on its own and byte-identically; entity populations use day ordinal 0.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np

# Defects that change a stream line in place (exactly one per defective line).
INLINE_DEFECTS = ("malformed_json", "missing_required", "wrong_type", "negative_amount", "absurd_amount", "unknown_currency")
# Defects that add a line to the stream (a copy or a record from an earlier day).
EXTRA_LINE_DEFECTS = ("duplicate", "late_arrival")
DEFECT_KINDS = (*INLINE_DEFECTS, *EXTRA_LINE_DEFECTS, "missing_from_stream")

# Labelled scenarios and their share of the day's scenario transactions.
SCENARIO_WEIGHTS = {
    "velocity_burst": 0.20,
    "amount_spike": 0.18,
    "impossible_travel": 0.14,
    "watchlisted_counterparty": 0.10,
    "structuring": 0.12,
    "compromised_merchant": 0.16,
    "dormant_reactivation": 0.10,
}
SCENARIOS = tuple(SCENARIO_WEIGHTS)

# Random stream ids: one independent generator per (day, purpose).
STREAM_POPULATION = 1
STREAM_FX = 2
STREAM_PLAN = 3
STREAM_SCENARIOS = 4
STREAM_CHUNK = 5
STREAM_DEFECTS = 6
STREAM_OUTCOMES = 7


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Defect rates are fractions of the day's stream lines (exact counts)."""

    seed: int = 42
    events_per_day: int = 20_000
    n_accounts: int | None = None
    n_merchants: int | None = None
    anomaly_rate: float = 0.01
    malformed_json: float = 0.002
    missing_required: float = 0.002
    wrong_type: float = 0.002
    negative_amount: float = 0.001
    absurd_amount: float = 0.001
    unknown_currency: float = 0.001
    duplicate: float = 0.003
    late_arrival: float = 0.005
    missing_from_stream: float = 0.001
    rows_per_file: int = 250_000
    outcome_sample_rate: float = 0.02
    amount_shift: float = 1.0  # multiplies every amount of the day's own transactions: a population shift (drift tests)

    def __post_init__(self) -> None:
        if self.events_per_day < 1:
            raise ValueError("events_per_day must be at least 1")
        if self.rows_per_file < 1:
            raise ValueError("rows_per_file must be at least 1")
        if self.amount_shift <= 0:
            raise ValueError("amount_shift must be positive")
        for f in fields(self):
            if f.name in DEFECT_KINDS or f.name in ("anomaly_rate", "outcome_sample_rate"):
                value = getattr(self, f.name)
                if not 0 <= value <= 1:
                    raise ValueError(f"{f.name} must be a fraction in [0, 1], got {value}")
        lines = sum(self.defect_count(k) for k in (*INLINE_DEFECTS, *EXTRA_LINE_DEFECTS))
        if lines > self.events_per_day:
            raise ValueError("defect rates add up to more lines than events_per_day")

    @property
    def accounts(self) -> int:
        return self.n_accounts if self.n_accounts is not None else max(500, self.events_per_day // 10)

    @property
    def merchants(self) -> int:
        return self.n_merchants if self.n_merchants is not None else max(100, self.events_per_day // 200)

    def defect_count(self, kind: str) -> int:
        """Exact number of lines (or missing transactions) of a defect kind per day."""
        return int(round(getattr(self, kind) * self.events_per_day))


def rng_for(config: SynthConfig, day: dt.date | None, stream: int, *extra: int) -> np.random.Generator:
    """An independent generator for one (day, purpose[, chunk]); day None = the day-free population."""
    ordinal = 0 if day is None else day.toordinal()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, ordinal, stream, *extra])))
