"""What each serving table holds for a delivery day, read from its Delta source with delta-rs in Arrow record
batches (never the whole day at once: a day of gold is millions of rows), and the totals the asset check
compares: row count and the sums of each source's amount-like columns.

Partition columns: gold and alerts are keyed by ingest_date (the delivery day), dq_results and the
reconciliation report by event_date (= the delivery day there), the snapshot manifest by period.
"""

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from sqlalchemy import Table

from compliance_assets.transforms.alert_rules import DETAIL_SEPARATOR
from compliance_assets.serving import bi_tables
from compliance_assets.serving.arrow_json import json_lists
from resources.lake import LakeResource
from catalog import ALERTS, DQ_RESULTS, GOLD, RECONCILIATION_REPORT, SILVER, SNAPSHOTS, SNAPSHOT_MANIFEST

BATCH_ROWS = 100_000
JSON_COLUMNS = ("top_features", "reasons")
RENAMED = {"dagster_run_id": "source_run_id"}  # the source's run; dagster_run_id is the publishing run


class DeltaReader:
    """Delta tables of the lake, opened with delta-rs."""

    def __init__(self, lake: LakeResource):
        self.lake = lake

    def dataset(self, table: str) -> ds.Dataset | None:
        """The table's current snapshot as a pyarrow dataset, or None when the table does not exist yet."""
        opened = self.lake.delta_table(table)
        return None if opened is None else opened.to_pyarrow_dataset()

    def batches(self, table: str, where: ds.Expression, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The rows matching `where`, `columns` only, in record batches of at most BATCH_ROWS."""
        dataset = self.dataset(table)
        if dataset is None:
            return iter(())
        return (b for b in stream_batches(dataset, where, columns or dataset.schema.names) if b.num_rows)


def stream_batches(dataset: ds.Dataset, where: ds.Expression, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Stream the matching rows file by file and row group by row group (pruned by partition values and
    statistics). Each file is read with a buffered stream, so memory holds a batch or so, not a decoded row
    group: a Spark-written gold file has row groups of ~300 MB decoded, and the dataset scanner decodes whole
    row groups with read-ahead (gigabytes for a day of 5M rows)."""
    schema = dataset.schema
    referenced = _referenced(where)
    for fragment in dataset.get_fragments(filter=where):
        partition = ds.get_partition_keys(fragment.partition_expression)
        row_groups = [rg.id for piece in fragment.split_by_row_group(filter=where) for rg in piece.row_groups]
        if not row_groups:
            continue
        parquet = pq.ParquetFile(fragment.path, filesystem=fragment.filesystem, pre_buffer=False, buffer_size=1 << 20, coerce_int96_timestamp_unit="us")
        in_file = set(parquet.schema_arrow.names)
        wanted = [c for c in schema.names if c in columns or c in referenced]
        needed = [c for c in wanted if c in in_file and c not in partition]
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=row_groups, columns=needed, use_threads=False):
            arrays = {}
            for name in wanted:
                t = schema.field(name).type
                if name in partition:
                    arrays[name] = pa.repeat(pa.scalar(partition[name], t), batch.num_rows)
                elif name in in_file:
                    arrays[name] = batch.column(name).cast(t)
                else:  # a column added after this file was written
                    arrays[name] = pa.nulls(batch.num_rows, t)
            rows = pa.table(arrays).filter(where).select(columns)
            yield from rows.to_batches()


_FIELD = re.compile(r"\b([A-Za-z_]\w*) (?:==|!=|<=|>=|<|>) |is_in\(([A-Za-z_]\w*),")


def _referenced(where: ds.Expression) -> set[str]:
    """Column names a filter refers to, from its text (`(ingest_date == 2026-04-02)`, `is_in(event_date, ...)`);
    one it missed makes the filter fail with Arrow's "No match for FieldRef", never a silent drop."""
    return {a or b for a, b in _FIELD.findall(str(where))}


def day_is(column: str, day: str) -> ds.Expression:
    return ds.field(column) == pa.scalar(dt.date.fromisoformat(day), pa.date32())


def with_json(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Array columns as JSON text; the source's run id renamed."""
    arrays = [json_lists(batch.column(i)) if f.name in JSON_COLUMNS else batch.column(i) for i, f in enumerate(batch.schema)]
    names = [RENAMED.get(f.name, f.name) for f in batch.schema]
    return pa.RecordBatch.from_arrays(arrays, names=names)


@dataclass(frozen=True)
class ServingSource:
    """One serving table: its Delta source, the day's filter, the columns summed by the check, the rows."""

    table: Table
    delta_table: str
    where: Callable[[str], ds.Expression]
    sums: tuple[str, ...]  # same name in the Delta source and the serving table
    rows: Callable[[DeltaReader, str, dict], Iterator[pa.RecordBatch]]  # (reader, day, notes) -> serving rows
    required: bool = False  # a missing Delta table fails the publish (else: no rows, and a note)

    @property
    def name(self) -> str:
        return self.table.name

    def source_totals(self, reader: DeltaReader, day: str) -> dict | None:
        """Row count and sums of the day's Delta rows (None when the table does not exist)."""
        if reader.dataset(self.delta_table) is None:
            return None
        totals = {"rows": 0, **{c: 0 for c in self.sums}}
        for batch in reader.batches(self.delta_table, self.where(day), list(self.sums) or None):
            totals["rows"] += batch.num_rows
            for c in self.sums:
                totals[c] += pc.sum(batch.column(c)).as_py() or 0
        return totals


def _plain(reader: DeltaReader, source_table: str, where: ds.Expression, columns: list[str]) -> Iterator[pa.RecordBatch]:
    return (with_json(b) for b in reader.batches(source_table, where, columns))


def _source_columns(table: Table, extra: tuple[str, ...] = ()) -> list[str]:
    inverse = {v: k for k, v in RENAMED.items()}
    return [inverse.get(c.name, c.name) for c in table.columns if c.name not in bi_tables.AUDIT_COLUMNS and c.name not in extra]


def gold_rows(reader: DeltaReader, day: str, notes: dict) -> Iterator[pa.RecordBatch]:
    return _plain(reader, GOLD, day_is("ingest_date", day), _source_columns(bi_tables.risk_scores))


ALERT_EXTRA = ("scenario", "channel", "country")


def alert_rows(reader: DeltaReader, day: str, notes: dict) -> Iterator[pa.RecordBatch]:
    """The day's alerts (a small share of the day, read at once) with their scenario and, from
    transactions_silver (same transaction_id and event_time, same delivery), channel and country."""
    columns = _source_columns(bi_tables.alerts, ALERT_EXTRA)
    batches = list(reader.batches(ALERTS, day_is("ingest_date", day), columns))
    if not batches:
        return iter(())
    day_alerts = pa.Table.from_batches([with_json(b) for b in batches])  # Arrow joins carry no list columns
    ids = pc.unique(day_alerts.column("transaction_id"))
    dates = pc.unique(day_alerts.column("event_date"))
    silver_where = day_is("ingest_date", day) & ds.field("event_date").isin(dates) & ds.field("transaction_id").isin(ids)
    lookup = list(reader.batches(SILVER, silver_where, ["transaction_id", "event_time", "channel", "country"]))
    if lookup:
        silver_table = pa.Table.from_batches(lookup)
    else:
        key_types = {c: day_alerts.schema.field(c).type for c in ("transaction_id", "event_time")}
        silver_table = pa.table({**{c: pa.array([], t) for c, t in key_types.items()}, "channel": pa.array([], pa.string()), "country": pa.array([], pa.string())})
    joined = day_alerts.join(silver_table, keys=["transaction_id", "event_time"], join_type="left outer")
    if joined.num_rows != day_alerts.num_rows:
        raise ValueError(f"{SILVER} holds {joined.num_rows - day_alerts.num_rows} duplicate (transaction_id, event_time) rows for {day}'s alerts: not published")
    missing = joined.num_rows - pc.sum(pc.is_valid(joined.column("channel"))).as_py()
    notes["alerts_without_silver_row"] = missing
    scenario = pc.list_element(pc.split_pattern(joined.column("primary_reason"), DETAIL_SEPARATOR, max_splits=1), 0)
    joined = joined.append_column("scenario", scenario)
    return iter(joined.to_batches(max_chunksize=BATCH_ROWS))


def dq_rows(reader: DeltaReader, day: str, notes: dict) -> Iterator[pa.RecordBatch]:
    return _plain(reader, DQ_RESULTS, day_is("event_date", day), _source_columns(bi_tables.dq_results))


def report_rows(reader: DeltaReader, day: str, notes: dict) -> Iterator[pa.RecordBatch]:
    return _plain(reader, RECONCILIATION_REPORT, day_is("event_date", day), _source_columns(bi_tables.reconciliation))


def _manifest_where(day: str) -> ds.Expression:
    return (ds.field("snapshot_table") == SNAPSHOTS) & (ds.field("period") == day)


def snapshot_rows(reader: DeltaReader, day: str, notes: dict) -> Iterator[pa.RecordBatch]:
    """Every manifest entry (version) of the day's daily snapshot, the newest flagged is_current."""
    batches = list(reader.batches(SNAPSHOT_MANIFEST, _manifest_where(day), _source_columns(bi_tables.snapshot_summaries, ("is_current",))))
    if not batches:
        return iter(())
    entries = pa.Table.from_batches(batches)
    newest = pc.max(entries.column("snapshot_version"))
    entries = entries.append_column("is_current", pc.equal(entries.column("snapshot_version"), newest))
    return (with_json(b) for b in entries.to_batches())


SOURCES = (
    ServingSource(bi_tables.risk_scores, GOLD, lambda d: day_is(GOLD.day_column, d), ("risk_score",), gold_rows, required=True),
    ServingSource(bi_tables.alerts, ALERTS, lambda d: day_is(ALERTS.day_column, d), ("amount_base",), alert_rows, required=True),
    ServingSource(bi_tables.dq_results, DQ_RESULTS, lambda d: day_is(DQ_RESULTS.day_column, d), ("checked", "failed"), dq_rows),
    ServingSource(bi_tables.reconciliation, RECONCILIATION_REPORT, lambda d: day_is(RECONCILIATION_REPORT.day_column, d), ("transactions", "amount"), report_rows),
    ServingSource(bi_tables.snapshot_summaries, SNAPSHOT_MANIFEST, _manifest_where, ("row_count", "alerts"), snapshot_rows),
)
