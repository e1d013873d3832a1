"""Recompute regulatory snapshot hashes without Spark, from the Delta files, and compare them with the manifest.

An auditor's check of the platform's own verification: it reads the snapshot table and
regulatory_snapshot_manifest with delta-rs, rebuilds every row's line as docs/snapshot-hash.md
defines it (hash definition 2) in plain Python, and prints per version whether the recomputed SHA-256 and
row count equal what the manifest recorded. It imports nothing from the platform. Exit status 1 on any
mismatch or when a requested period has no snapshot.

    .venv/bin/python scripts/verify_snapshot.py --lake lake --period 2026-12-05
    .venv/bin/python scripts/verify_snapshot.py --lake lake --table regulatory_snapshots_monthly --period 2026-12-01 --version 1

Memory: 32 bytes per row of the version being checked (its row digests), plus one record batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import struct
import sys

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

# the content columns in line order (the platform's reporting/snapshots.CONTENT_COLUMNS, restated from the documentation)
COLUMNS = (
    "transaction_id", "event_time", "event_date", "ingest_date", "account_id", "amount", "currency", "amount_base",
    "risk_score", "risk_band", "model_name", "model_version", "alerted", "alert_id", "alert_reasons",
)
FIELD_SEP, ITEM_SEP, NULL = "\x1f", "\x1e", "\\N"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
CANONICAL_NAN = 0x7FF8000000000000


def _double_bits(x: float) -> str:
    """Java's Double.doubleToLongBits: the IEEE-754 bits as a signed 64-bit integer, every NaN as the canonical one."""
    if math.isnan(x):
        return str(CANONICAL_NAN)
    return str(struct.unpack("<q", struct.pack("<d", x))[0])


def _renderer(arrow_type: pa.DataType):
    """value -> text, for one column's Arrow type (as delta-rs reads it)."""
    if pa.types.is_timestamp(arrow_type):
        return lambda v: str(v)  # read as int64 microseconds (see rows())
    if pa.types.is_floating(arrow_type):
        return _double_bits
    if pa.types.is_boolean(arrow_type):
        return lambda v: "true" if v else "false"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return lambda v: ITEM_SEP.join(NULL if x is None else x for x in v)
    if pa.types.is_date(arrow_type):
        return lambda v: v.isoformat()
    return str  # strings; decimals as Python's Decimal prints them (plain, with the column's scale)


def row_digests(batch: pa.RecordBatch):
    """The SHA-256 digests (raw bytes) of a batch's rows."""
    columns = []
    for name in COLUMNS:
        col = batch.column(batch.schema.get_field_index(name))
        render = _renderer(col.type)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC")), pa.int64())
        columns.append([NULL if v is None else render(v) for v in col.to_pylist()])
    for values in zip(*columns):
        yield hashlib.sha256(FIELD_SEP.join(values).encode("utf-8")).digest()


def version_sha256(table: DeltaTable, period: str, version: int) -> tuple[str, int]:
    """(SHA-256, rows) of one stored snapshot version."""
    buckets: dict[int, list[bytes]] = {}
    n = 0
    dataset = table.to_pyarrow_dataset()
    selected = (pc.field("period") == period) & (pc.field("snapshot_version") == version)
    for batch in dataset.to_batches(columns=list(COLUMNS), filter=selected):
        for digest in row_digests(batch):
            buckets.setdefault(digest[0], []).append(digest)
            n += 1
    outer = hashlib.sha256()
    for b in sorted(buckets):
        inner = "\n".join(d.hex() for d in sorted(buckets[b]))
        outer.update(f"{b:02x}:{hashlib.sha256(inner.encode('ascii')).hexdigest()}\n".encode("ascii"))
    return outer.hexdigest(), n


def verify(lake: str, table: str, periods: list[str] | None, version: int | None) -> list[dict]:
    manifest = DeltaTable(f"{lake}/tables/regulatory_snapshot_manifest").to_pyarrow_table().to_pylist()
    entries = [e for e in manifest if e["snapshot_table"] == table and (not periods or e["period"] in periods) and (version is None or e["snapshot_version"] == version)]
    results = [{"period": p, "version": version, "ok": False, "problem": "no snapshot in the manifest"} for p in periods or [] if not any(e["period"] == p for e in entries)]
    snapshots = DeltaTable(f"{lake}/tables/{table}")
    for e in sorted(entries, key=lambda e: (e["period"], e["snapshot_version"])):
        sha, rows = version_sha256(snapshots, e["period"], e["snapshot_version"])
        problems = [k for k, ok in (("sha256", sha == e["sha256"]), ("row_count", rows == e["row_count"])) if not ok]
        results.append({"period": e["period"], "version": e["snapshot_version"], "ok": not problems, "problem": ", ".join(problems) or "-",
                        "rows": rows, "sha256": sha, "manifest_sha256": e["sha256"]})
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", required=True, help="The lake root (the folder holding tables/).")
    p.add_argument("--table", default="regulatory_snapshots", choices=("regulatory_snapshots", "regulatory_snapshots_monthly"))
    p.add_argument("--period", action="append", help="A period to check (repeatable; default: every period in the manifest).")
    p.add_argument("--version", type=int, help="Only this snapshot version.")
    args = p.parse_args(argv)
    results = verify(args.lake.rstrip("/"), args.table, args.period, args.version)
    for r in results:
        print(json.dumps(r))
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
