"""Publishing a delivery day to the serving database, and comparing what was published with the Delta sources.

All serving tables of a day are replaced in ONE transaction (DELETE the day, insert the rows): BI readers see
the old day or the new one, never a mix, and a failure part-way leaves the previous rows. Re-publishing a
day gives the same rows (only published_at and dagster_run_id change).
"""

import datetime as dt
import math
import time
from dataclasses import dataclass, field

from dagster import Failure
from sqlalchemy import Engine

from compliance_assets.serving.bi_tables import ensure_schema
from compliance_assets.serving.loaders import replace_partition, serving_totals
from compliance_assets.serving.delta_sources import SOURCES, DeltaReader, ServingSource

AMOUNT_TOLERANCE = 0.005  # half a cent: SQLite keeps decimals as REAL, so its sums are floating point
RELATIVE_TOLERANCE = 1e-9


@dataclass
class DayPublished:
    day: str
    rows: dict[str, int] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


def publish_day(engine: Engine, reader: DeltaReader, day: str, run_id: str, published_at: dt.datetime, sources: tuple[ServingSource, ...] = SOURCES) -> DayPublished:
    """Replace `day` in every serving table of `sources`, in one transaction."""
    started = time.perf_counter()
    out = DayPublished(day)
    for source in sources:
        if reader.dataset(source.delta_table) is None:
            if source.required:
                raise Failure(f"{source.delta_table} does not exist at {reader.lake.table_path(source.delta_table)}: materialise it for {day} first")
            out.notes[source.name] = f"{source.delta_table} not created yet: no rows"
    audit = {"partition_day": dt.date.fromisoformat(day), "published_at": published_at, "dagster_run_id": run_id}
    with engine.begin() as conn:
        for source in sources:
            out.rows[source.name] = replace_partition(conn, source.table, audit["partition_day"], source.rows(reader, day, out.notes), audit)
    out.seconds = time.perf_counter() - started
    return out


def publish(engine: Engine, reader: DeltaReader, days: list[str], run_id: str, sources: tuple[ServingSource, ...] = SOURCES) -> list[DayPublished]:
    """Create missing tables and the views, then publish each day (one transaction per day)."""
    ensure_schema(engine)
    published_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    return [publish_day(engine, reader, day, run_id, published_at, sources) for day in days]


def _same(a, b) -> bool:
    return math.isclose(float(a), float(b), rel_tol=RELATIVE_TOLERANCE, abs_tol=AMOUNT_TOLERANCE)


def compare_day(engine: Engine, reader: DeltaReader, day: str, sources: tuple[ServingSource, ...] = SOURCES) -> list[dict]:
    """Per serving table: the Delta source's row count and sums for the day against the serving table's."""
    results = []
    with engine.connect() as conn:
        for source in sources:
            delta = source.source_totals(reader, day) or {"rows": 0, **{c: 0 for c in source.sums}}
            served = serving_totals(conn, source.table, dt.date.fromisoformat(day), source.sums)
            problems = [k for k in delta if not (delta[k] == served[k] if k == "rows" else _same(delta[k], served[k]))]
            results.append({
                "day": day, "table": source.name, "delta_rows": delta["rows"], "served_rows": served["rows"],
                "delta_totals": ", ".join(f"{c}={_fmt(delta[c])}" for c in source.sums),
                "served_totals": ", ".join(f"{c}={_fmt(served[c])}" for c in source.sums),
                "ok": not problems, "mismatch": ", ".join(problems) or "-",
            })
    return results


def _fmt(value) -> str:
    return f"{float(value):.6f}".rstrip("0").rstrip(".")
