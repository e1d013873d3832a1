"""A lake's content fingerprint, for proving that a refactor changes no table.

For every Delta table under <lake>/tables: per Delta partition, the row count and a SHA-256 of the rows
(sorted, as canonical JSON), leaving out the columns that differ between two runs of the same code on
the same input (run ids, wall-clock timestamps, MLflow run ids); plus the regulatory snapshots'
SHA-256s from the manifest and the registered models' holdout average precision from MLflow.

    .venv/bin/python scripts/lake_fingerprint.py --lake /tmp/fp/lake --mlflow-uri sqlite:////tmp/fp/mlruns/mlflow.db > a.json
    .venv/bin/python scripts/lake_fingerprint.py --compare a.json b.json   # lists every difference; exit 1 if any

Build the lake with a fixed day, e.g.
    DAY=2026-04-06 DAYS=6 EVENTS=4000 SEED=42 LAKE_ROOT=/tmp/fp/lake DAGSTER_HOME=/tmp/fp/dh MLFLOW_HOME=/tmp/fp/mlruns bash scripts/demo.sh
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

# run-dependent values: ids of the Dagster and MLflow runs, and wall-clock times of processing
VOLATILE = re.compile(r"(^|_)run_id$|^(ingested|processed|rejected|scored|raised|reconciled|first_reconciled|decided|created|published"
                      r"|recorded|delivered|notified|computed|evaluated|measured|generated|approved|promoted|observed|written)_at$"
                      r"|^(audit_id|evidence|superseded_at|snapshot_created_at)$")


def _canonical(table: pa.Table) -> list[str]:
    rows = table.to_pylist()
    return sorted(json.dumps(r, sort_keys=True, default=str, separators=(",", ":")) for r in rows)


def table_fingerprint(path: Path) -> dict:
    dt = DeltaTable(str(path))
    data = dt.to_pyarrow_table()
    kept = [c for c in data.column_names if not VOLATILE.search(c)]
    parts = dt.metadata().partition_columns
    out: dict = {"columns_left_out": sorted(set(data.column_names) - set(kept)), "partitions": {}}
    data = data.select(kept)
    keys = [tuple(str(v) for v in row.values()) for row in data.select(parts).to_pylist()] if parts else [()] * data.num_rows
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    for k in sorted(groups):
        rows = _canonical(data.take(pa.array(groups[k])))
        digest = hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()
        out["partitions"]["/".join(f"{c}={v}" for c, v in zip(parts, k)) or "-"] = {"rows": len(rows), "sha256": digest}
    return out


def fingerprint(lake: Path, mlflow_uri: str | None) -> dict:
    tables = {}
    for path in sorted((lake / "tables").iterdir()):
        if (path / "_delta_log").is_dir():
            tables[path.name] = table_fingerprint(path)
    result: dict = {"tables": tables}
    manifest = lake / "tables" / "regulatory_snapshot_manifest"
    if (manifest / "_delta_log").is_dir():
        m = DeltaTable(str(manifest)).to_pyarrow_table()
        m = m.sort_by([("snapshot_table", "ascending"), ("period", "ascending"), ("snapshot_version", "ascending")])
        result["snapshot_sha256"] = {f"{r['snapshot_table']}/{r['period']}/v{r['snapshot_version']}": r["sha256"] for r in m.to_pylist()}
    if mlflow_uri:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_uri)
        aps = {}
        for model in client.search_registered_models():
            for v in client.search_model_versions(f"name='{model.name}'"):
                run = client.get_run(v.run_id)
                aps[f"{model.name}/v{v.version}"] = run.data.metrics.get("average_precision")
        result["model_average_precision"] = aps
    return result


def compare(a: dict, b: dict) -> list[str]:
    diffs = []
    for name in sorted(set(a["tables"]) | set(b["tables"])):
        ta, tb = a["tables"].get(name), b["tables"].get(name)
        if ta is None or tb is None:
            diffs.append(f"{name}: only in {'second' if ta is None else 'first'}")
            continue
        if ta["columns_left_out"] != tb["columns_left_out"]:
            diffs.append(f"{name}: columns left out differ {ta['columns_left_out']} vs {tb['columns_left_out']}")
        for part in sorted(set(ta["partitions"]) | set(tb["partitions"])):
            pa_, pb_ = ta["partitions"].get(part), tb["partitions"].get(part)
            if pa_ != pb_:
                diffs.append(f"{name} {part}: {pa_} vs {pb_}")
    for key in ("snapshot_sha256", "model_average_precision"):
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {a.get(key)} vs {b.get(key)}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", type=Path)
    p.add_argument("--mlflow-uri")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("FIRST", "SECOND"))
    args = p.parse_args(argv)
    if args.compare:
        diffs = compare(*(json.loads(f.read_text()) for f in args.compare))
        print("\n".join(diffs) if diffs else "identical: every table partition, snapshot hash and model AP")
        return 1 if diffs else 0
    if not args.lake:
        p.error("--lake or --compare")
    json.dump(fingerprint(args.lake, args.mlflow_uri), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
