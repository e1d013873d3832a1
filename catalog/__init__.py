"""The table catalog: every lake table's name, what its Dagster daily partition means, its Delta layout,
its contract, its compaction and whether BI reads it. Assets, checks, jobs, compaction, serving and the
stream read these entries; nobody spells a table name or a day predicate by hand.

A daily partition is a delivery day. For most tables that is the `event_date` column; the tables whose
rows are the day's delivery but carry each transaction's own event day (silver, gold, alerts, training
features, shadow scores) map it to `ingest_date`; investigators' decisions map it to `received_day`.
Adding a table is one entry here plus the module that writes it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Iterator

from contracts import REFERENCE_TABLES


@dataclass(frozen=True)
class Days:
    """A Dagster partition key or key range, parsed once into calendar days (UTC), first..last inclusive."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"a day range ends before it starts: {self.first}...{self.last}")

    @classmethod
    def of(cls, keys: str | Iterable[str]) -> "Days":
        """The days of one partition key or of a run's keys (a contiguous range, as Dagster hands them)."""
        days = sorted({dt.date.fromisoformat(k) for k in ([keys] if isinstance(keys, str) else keys)})
        if not days:
            raise ValueError("no partition keys")
        out = cls(days[0], days[-1])
        if len(days) != len(out):
            raise ValueError(f"partition keys are not one contiguous range: {[d.isoformat() for d in days]}")
        return out

    @classmethod
    def span(cls, first: str | dt.date, last: str | dt.date | None = None) -> "Days":
        """The days first..last (ISO keys or dates; `last` defaults to `first`)."""
        def day(d):
            return d if isinstance(d, dt.date) else dt.date.fromisoformat(d)

        return cls(day(first), day(last if last is not None else first))

    def __len__(self) -> int:
        return (self.last - self.first).days + 1

    def __iter__(self) -> Iterator[dt.date]:
        return (self.first + dt.timedelta(days=i) for i in range(len(self)))

    @property
    def keys(self) -> list[str]:
        return [d.isoformat() for d in self]

    def where(self, column: str) -> str:
        """A SQL predicate on a date column (Delta's replaceWhere, Spark filters)."""
        if self.first == self.last:
            return f"{column} = '{self.first}'"
        return f"{column} >= '{self.first}' AND {column} <= '{self.last}'"


class Table(str):
    """One lake table. It is its name (a `str`, so it goes wherever a table name goes) and carries its facts."""

    day_column: str | None  # the column a daily partition key selects; None: not day-partitioned
    partition_by: tuple[str, ...]  # its Delta partition columns
    contract: str | None  # its JSON contract in contracts/, when it has one
    zorder: tuple[str, ...] | None  # compact_lake: None = not compacted, () = bin-packing only
    bi_served: bool  # published to the BI serving database

    def __new__(cls, name: str, day_column: str | None = "event_date", partition_by: tuple[str, ...] = ("event_date",),
                contract: str | None = None, zorder: tuple[str, ...] | None = None, bi_served: bool = False) -> "Table":
        self = super().__new__(cls, name)
        self.day_column, self.partition_by, self.contract, self.zorder, self.bi_served = day_column, partition_by, contract, zorder, bi_served
        return self

    def __reduce__(self):
        return (Table, (str(self), self.day_column, self.partition_by, self.contract, self.zorder, self.bi_served))

    @property
    def name(self) -> str:
        return str(self)

    def where(self, days: Days) -> str:
        """The predicate selecting these days' rows."""
        if self.day_column is None:
            raise ValueError(f"{self} is not day-partitioned")
        return days.where(self.day_column)


# reference data (a snapshot per delivery day)
REFERENCE = {name: Table(name) for name in REFERENCE_TABLES}

# ingest
BRONZE = Table("transactions_bronze", zorder=())
SILVER = Table("transactions_silver", day_column="ingest_date", contract="transactions", zorder=("account_id", "merchant_id"))
DLQ = Table("transactions_dlq", zorder=("primary_reason",))
DQ_RESULTS = Table("dq_results", zorder=(), bi_served=True)

# model, scores and alerts
OUTCOMES = Table("transaction_outcomes", contract="transaction_outcomes")
TRAINING_FEATURES = Table("ml_features_training", day_column="ingest_date")
GOLD = Table("risk_scores_gold", day_column="ingest_date", contract="risk_scores", zorder=("account_id", "risk_band"), bi_served=True)
ALERTS = Table("anomaly_alerts", day_column="ingest_date", zorder=("account_id",), bi_served=True)
MODEL_AUDIT = Table("model_audit", day_column=None)

# reporting
RECONCILIATION_REPORT = Table("reconciliation_report", zorder=(), bi_served=True)
RECONCILIATION_BREAKS = Table("reconciliation_breaks", zorder=("category",))
SNAPSHOTS = Table("regulatory_snapshots", day_column="period", partition_by=("period",), zorder=())  # write-once: never Z-ordered
SNAPSHOTS_MONTHLY = Table("regulatory_snapshots_monthly", day_column=None, partition_by=("period",), zorder=())
SNAPSHOT_MANIFEST = Table("regulatory_snapshot_manifest", day_column=None, partition_by=(), bi_served=True)

# monitoring
CHALLENGER_SCORES = Table("challenger_scores", day_column="ingest_date")
CHALLENGER_COMPARISON = Table("challenger_comparison")
MODEL_DRIFT = Table("model_drift")
SLO_STATUS = Table("slo_status")

# investigations
DISPOSITIONS = Table("alert_dispositions", day_column="received_day", partition_by=("received_day",), contract="alert_dispositions")
DISPOSITIONS_DLQ = Table("alert_dispositions_dlq", day_column="received_day", partition_by=("received_day",))
ALERT_PRECISION = Table("alert_precision")

# deliveries to the outside world (written by sensors)
ALERT_NOTIFICATIONS = Table("alert_notifications")
CASE_HANDOFFS = Table("case_handoffs")

# operations
OPERATIONS_AUDIT = Table("operations_audit", day_column=None)
COMPACTION_LOG = Table("compaction_log", day_column=None)
STREAM_BATCHES = Table("stream_batches", zorder=())

CATALOG: dict[str, Table] = {
    t.name: t
    for t in (
        *REFERENCE.values(), BRONZE, SILVER, DLQ, DQ_RESULTS, OUTCOMES, TRAINING_FEATURES, GOLD, ALERTS, MODEL_AUDIT,
        RECONCILIATION_REPORT, RECONCILIATION_BREAKS, SNAPSHOTS, SNAPSHOTS_MONTHLY, SNAPSHOT_MANIFEST,
        CHALLENGER_SCORES, CHALLENGER_COMPARISON, MODEL_DRIFT, SLO_STATUS, DISPOSITIONS, DISPOSITIONS_DLQ, ALERT_PRECISION,
        ALERT_NOTIFICATIONS, CASE_HANDOFFS, OPERATIONS_AUDIT, COMPACTION_LOG, STREAM_BATCHES,
    )
}


def table(name: str) -> Table:
    """A table's catalog entry by name (a clear error for a name the catalog does not know)."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the table catalog (catalog/)") from None


def compacted() -> dict[str, tuple[str, ...]]:
    """{table: Z-order columns} of the tables compact_lake maintains, in catalog order."""
    return {t.name: t.zorder for t in CATALOG.values() if t.zorder is not None}
