"""Replacing one day of a serving table inside the caller's transaction: DELETE the partition_day, then insert
the new rows from Arrow record batches with the dialect's fast path:
- PostgreSQL (psycopg2): COPY FROM STDIN in CSV, streamed batch by batch through the driver connection;
- SQLite: the driver's executemany over plain Python values, one batch at a time;
- anything else (SQL Server, Synapse, ...): SQLAlchemy insert() executemany (insertmanyvalues; pyodbc's
  fast_executemany on SQL Server, set by the resource).
Every batch is first cast to the serving table's Arrow types, so a value that does not fit fails the
transaction (the previous rows stay) instead of being changed silently.
"""

import datetime as dt
import io
import queue
import threading
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import BigInteger, Boolean, Connection, Date, DateTime, Double, Float, Integer, Numeric, String, Table, delete, insert


def arrow_type(column) -> pa.DataType:
    """The Arrow type a serving column's values are cast to before the insert."""
    t = column.type
    if isinstance(t, Boolean):
        return pa.bool_()
    if isinstance(t, BigInteger):
        return pa.int64()
    if isinstance(t, Integer):
        return pa.int32()
    if isinstance(t, (Double, Float)):
        return pa.float64()
    if isinstance(t, Numeric):
        return pa.decimal128(t.precision, t.scale)
    if isinstance(t, DateTime):
        return pa.timestamp("us")
    if isinstance(t, Date):
        return pa.date32()
    if isinstance(t, String):  # Text too
        return pa.string()
    raise TypeError(f"{column.table.name}.{column.name}: no Arrow type for {t!r}")


def _conform(array: pa.Array, target: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        array = array.cast(pa.timestamp(array.type.unit, tz="UTC")).cast(pa.timestamp(array.type.unit))  # naive, UTC wall time
    return array if array.type == target else array.cast(target)


def conform(batch: pa.RecordBatch, table: Table, audit: dict) -> pa.RecordBatch:
    """`batch` with exactly the table's columns, in order, cast to their Arrow types; the audit columns
    (partition_day, published_at, dagster_run_id) filled from `audit`."""
    arrays = []
    for column in table.columns:
        target = arrow_type(column)
        if column.name in audit:
            arrays.append(pa.array([audit[column.name]] * batch.num_rows, target))
        elif column.name in batch.schema.names:
            try:
                arrays.append(_conform(batch.column(column.name), target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"{table.name}.{column.name}: the source values do not fit {column.type}: {exc}") from exc
        else:
            raise ValueError(f"{table.name}: the source has no column {column.name!r}")
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in table.columns])


def replace_partition(conn: Connection, table: Table, day: dt.date, batches: Iterable[pa.RecordBatch], audit: dict) -> int:
    """DELETE the day's rows of `table`, insert `batches`; returns rows inserted. No commit: the caller's
    transaction covers every table of the day."""
    conn.execute(delete(table).where(table.c.partition_day == day))
    rows = (conform(b, table, audit) for b in batches)
    name = conn.dialect.name
    if name == "postgresql" and conn.dialect.driver == "psycopg2":
        return _copy_postgres(conn, table, prefetched(_csv_chunk(b) for b in rows))
    if name == "sqlite":
        return _executemany_sqlite(conn, table, prefetched(_sqlite_ready(b) for b in rows))
    return _insert_generic(conn, table, prefetched(rows))


_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """`items`, produced by a background thread up to `depth` ahead: reading Delta, building JSON, casting and
    CSV encoding are Arrow work that releases the GIL, so they overlap with the database's side of the insert.
    The producer's exception is re-raised here; stopping early (an insert failed) stops the producer."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            out.put(_Failed(exc))

    worker = threading.Thread(target=produce, name="bi-serving-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def _quoted(conn: Connection, table: Table) -> tuple[str, str]:
    q = conn.dialect.identifier_preparer
    return q.format_table(table), ", ".join(q.quote(c.name) for c in table.columns)


def _csv_chunk(batch: pa.RecordBatch) -> tuple[bytes, int]:
    """The batch as CSV for COPY (no header; unquoted empty = NULL, quoted "" = empty string)."""
    sink = io.BytesIO()
    pa_csv.write_csv(batch, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue(), batch.num_rows


class _CsvStream(io.RawIOBase):
    """A file-like object over CSV chunks, read by COPY as they come."""

    def __init__(self, chunks: Iterator[tuple[bytes, int]]):
        self.chunks, self.chunk, self.pos, self.rows = chunks, b"", 0, 0
        self.error: BaseException | None = None  # what failed while producing rows (psycopg2 only reports "read() failed")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (the rest of the current chunk at most; b"" at the end)."""
        while self.pos >= len(self.chunk):
            try:
                chunk = next(self.chunks, None)
            except BaseException as exc:
                self.error = exc
                raise
            if chunk is None:
                return b""
            self.chunk, self.pos = chunk[0], 0
            self.rows += chunk[1]
        end = len(self.chunk) if size is None or size < 0 else min(len(self.chunk), self.pos + size)
        out = self.chunk[self.pos:end]
        self.pos = end
        return out


def _copy_postgres(conn: Connection, table: Table, chunks: Iterator[tuple[bytes, int]]) -> int:
    """COPY ... FROM STDIN WITH (FORMAT csv) on the transaction's connection."""
    name, columns = _quoted(conn, table)
    stream = _CsvStream(chunks)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv)", stream, size=1 << 20)
    except Exception as exc:
        if stream.error is not None:  # the rows' own error (a value that does not fit, an unreadable source), not COPY's wrapper
            raise stream.error from exc
        raise
    finally:
        cursor.close()
    return stream.rows


def _sqlite_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch in SQLAlchemy's SQLite storage formats (text timestamps `YYYY-MM-DD HH:MM:SS.ffffff` and dates
    `YYYY-MM-DD`, decimals as REAL under NUMERIC affinity), so the sqlite3 driver binds plain values."""
    arrays = []
    for array in batch.columns:
        t = array.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            array = array.cast(pa.string())
        elif pa.types.is_decimal(t):
            array = array.cast(pa.float64())
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _python_columns(batch: pa.RecordBatch) -> list[list]:
    out = []
    for array in batch.columns:
        if (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)) and array.null_count == 0:
            out.append(array.to_numpy().tolist())  # much faster than to_pylist for numbers
        else:
            out.append(array.to_pylist())
    return out


def _executemany_sqlite(conn: Connection, table: Table, batches: Iterator[pa.RecordBatch]) -> int:
    name, columns = _quoted(conn, table)
    sql = f"INSERT INTO {name} ({columns}) VALUES ({', '.join('?' * len(table.columns))})"
    cursor = conn.connection.driver_connection.cursor()
    n = 0
    try:
        for batch in batches:
            cursor.executemany(sql, zip(*_python_columns(batch)))
            n += batch.num_rows
    finally:
        cursor.close()
    return n


def _insert_generic(conn: Connection, table: Table, batches: Iterator[pa.RecordBatch]) -> int:
    n = 0
    for batch in batches:
        conn.execute(insert(table), batch.to_pylist())
        n += batch.num_rows
    return n


def serving_totals(conn: Connection, table: Table, day: dt.date, sums: tuple[str, ...]) -> dict:
    """Row count and column sums of the day's rows in the serving table."""
    from sqlalchemy import func, select

    row = conn.execute(select(func.count(), *[func.sum(table.c[c]) for c in sums]).where(table.c.partition_day == day)).one()
    return {"rows": row[0], **{c: (row[i + 1] or 0) for i, c in enumerate(sums)}}


__all__ = ["arrow_type", "conform", "replace_partition", "serving_totals"]
