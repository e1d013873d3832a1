"""Generates one day and writes it to the landing area: reference snapshots, the transaction stream
(JSON-lines parts, manifest, then the _SUCCESS marker), the system of record, confirmed outcomes and
the ground truth, one chunk at a time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

import numpy as np
import pandas as pd

from compliance_assets.synthetic.config import (
    DEFECT_KINDS,
    EXTRA_LINE_DEFECTS,
    INLINE_DEFECTS,
    SCENARIOS,
    STREAM_CHUNK,
    STREAM_DEFECTS,
    STREAM_OUTCOMES,
    STREAM_PLAN,
    STREAM_SCENARIOS,
    SynthConfig,
    rng_for,
)
from compliance_assets.synthetic.defects import allocate, inject
from compliance_assets.synthetic.entities import build_population, fx_frame, fx_rates, kyc_frame, limits_frame, merchants_frame
from compliance_assets.synthetic.transactions import (
    LABELLED,
    NORMAL,
    OUTPUT_COLUMNS,
    assemble,
    chunk_day_rows,
    diurnal_seconds,
    late_rows,
    plan_scenarios,
    transaction_ids,
)
from contracts import load_contract

TRUTH_COLUMNS = ["file", "line", "transaction_id", "event_date", "scenario", "defect"]
SOR_COLUMNS = list(load_contract("system_of_record")["properties"])
OUTCOME_COLUMNS = list(load_contract("transaction_outcomes")["properties"])
OUTCOME_POSITIVE_RATE = 0.95


@dataclass
class DaySummary:
    """What one generated day holds (JSON-serialisable with dataclasses.asdict)."""

    day: str
    lines: int
    transactions: int
    scenarios: dict[str, int] = field(default_factory=dict)
    defects: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def one_line(self) -> str:
        scen = sum(self.scenarios.values())
        bad = sum(self.defects.values())
        return f"{self.day}: {self.lines} lines in {sum(f.endswith('.jsonl') for f in self.files)} files, {self.transactions} transactions, {scen} scenario txns, {bad} defects, {self.seconds:.1f}s"


def write_csv(df: pd.DataFrame, path: Path | IO[str], header: bool = True) -> None:
    """CSV as consumers expect: empty field for null, true/false booleans, '\\n' line ends."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == bool:
            df[col] = np.where(df[col], "true", "false")
    df.to_csv(path, index=False, header=header, lineterminator="\n")


def write_reference(landing_root: Path, table: str, day: dt.date, df: pd.DataFrame) -> Path:
    """reference/<table>/<day>.csv with the contract's column order."""
    path = landing_root / "reference" / table / f"{day.isoformat()}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(df[list(load_contract(table)["properties"])], path)
    return path


def _chunk_lines(n: int, rows_per_file: int) -> np.ndarray:
    k = max(1, -(-n // rows_per_file))
    return np.array([min(rows_per_file, n - i * rows_per_file) for i in range(k)])


def _format_decisions(day: dt.date, day_off: np.ndarray, secs: np.ndarray, delay: np.ndarray) -> np.ndarray:
    base = pd.Timestamp(day) + pd.to_timedelta(day_off, unit="D") + pd.to_timedelta(secs + delay, unit="s")
    return pd.DatetimeIndex(base).strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)


def _clear_delivery(folder: Path) -> None:
    """Remove an earlier delivery of the day (marker first, so a sensor never sees a half folder)."""
    (folder / "_SUCCESS").unlink(missing_ok=True)
    for old in [*folder.glob("part-*.jsonl"), folder / "_manifest.json"]:
        old.unlink(missing_ok=True)


def generate_day(config: SynthConfig, landing_root: Path, day: dt.date) -> DaySummary:
    """Generate and write one day of landing data; see the package docstring for the layout."""
    started = time.perf_counter()
    root = Path(landing_root)
    pop = build_population(config)
    written: list[Path] = []

    # reference snapshots of the day
    written += [
        write_reference(root, "kyc_profiles", day, kyc_frame(pop, day)),
        write_reference(root, "account_limits", day, limits_frame(pop)),
        write_reference(root, "watchlists", day, pop.watchlist),
        write_reference(root, "fx_rates", day, fx_frame(config, day)),
        write_reference(root, "merchant_profiles", day, merchants_frame(pop)),
    ]
    rates = {off: fx_rates(config, day + dt.timedelta(days=off)) for off in (0, -1, -2, -3)}

    # plan: lines per file, defects per file, scenario groups per file
    n_lines = config.events_per_day
    lines = _chunk_lines(n_lines, config.rows_per_file)
    bounds = np.concatenate([[0], np.cumsum(lines)])
    quantiles = bounds / n_lines
    windows = diurnal_seconds(quantiles)
    alloc, missing = allocate(config, rng_for(config, day, STREAM_PLAN), lines)
    n_day_txns = n_lines - sum(a["duplicate"] + a["late_arrival"] for a in alloc) + int(missing.sum())
    capacity = np.array([max(0, n - 2 * a["duplicate"] - a["late_arrival"] - sum(a[k] for k in INLINE_DEFECTS)) for n, a in zip(lines, alloc)])
    scen = plan_scenarios(pop, rng_for(config, day, STREAM_SCENARIOS), int(round(config.anomaly_rate * n_day_txns)), capacity, windows)

    tx_dir = root / "transactions" / f"event_date={day.isoformat()}"
    tx_dir.mkdir(parents=True, exist_ok=True)
    _clear_delivery(tx_dir)
    side = {name: root / name / f"{day.isoformat()}.csv" for name in ("system_of_record", "outcomes", "truth")}
    for p in side.values():
        p.parent.mkdir(parents=True, exist_ok=True)

    defect_counts = {k: 0 for k in DEFECT_KINDS}
    files: list[dict] = []
    seq = late_seq = 0
    total_txns = 0
    with open(side["system_of_record"], "w", newline="") as sor, open(side["outcomes"], "w", newline="") as outcomes, open(side["truth"], "w", newline="") as truth:
        sor.write(",".join(SOR_COLUMNS) + "\n")
        outcomes.write(",".join(OUTCOME_COLUMNS) + "\n")
        truth.write(",".join(TRUTH_COLUMNS) + "\n")
        for c, n_c in enumerate(lines):
            a = alloc[c]
            rng = rng_for(config, day, STREAM_CHUNK, c)
            scen_rows = scen.rows_in(c)
            n_normal = int(n_c - a["duplicate"] - a["late_arrival"] - len(scen_rows["secs"]) + missing[c])
            rows = chunk_day_rows(pop, rng, n_normal, quantiles[c], quantiles[c + 1], scen_rows)
            rows["amount_base"] = rows["amount_base"] * config.amount_shift
            day_df = assemble(pop, rows, day, rates)
            day_df["transaction_id"] = transaction_ids(day, seq, len(day_df))
            seq += len(day_df)
            late_df = assemble(pop, late_rows(pop, rng, a["late_arrival"]), day, rates)
            late_df["transaction_id"] = transaction_ids(day, late_seq, len(late_df), late=True)
            late_seq += len(late_df)

            # missing from the stream: normal transactions only in the system of record
            in_stream = np.ones(len(day_df), dtype=bool)
            in_stream[rng.choice(np.flatnonzero(day_df["_role"].to_numpy() == NORMAL), int(missing[c]), replace=False)] = False
            stream_df = day_df[in_stream]
            base_n = len(stream_df) + len(late_df)
            is_late = np.zeros(base_n, dtype=bool)
            is_late[rng.choice(base_n, len(late_df), replace=False)] = True
            src = np.empty(base_n, dtype=np.int64)
            src[~is_late] = np.arange(len(stream_df))
            src[is_late] = len(stream_df) + np.arange(len(late_df))
            base = pd.concat([stream_df, late_df], ignore_index=True).iloc[src].reset_index(drop=True)

            # six decimals: amounts (two) and coordinates (five) as generated; pandas' default of ten writes a rounded
            # amount such as 883695.93 as 883695.9300000001, which the contract rejects as AMOUNT_TOO_PRECISE
            clean = base[OUTPUT_COLUMNS].to_json(orient="records", lines=True, double_precision=6).rstrip("\n").split("\n") if base_n else []
            eligible = (base["_role"].to_numpy() == NORMAL) & (base["_day_off"].to_numpy() == 0)
            final, base_index, defect = inject(clean, eligible, a, rng_for(config, day, STREAM_DEFECTS, c))
            defect = np.where((defect == "") & is_late[base_index], "late_arrival", defect)

            name = f"part-{c:05d}.jsonl"
            with open(tx_dir / name, "w", newline="") as f:
                f.write("".join(line + "\n" for line in final))
            files.append({"file": name, "lines": len(final)})
            written.append(tx_dir / name)

            b = base.iloc[base_index]
            event_date = np.array([(day + dt.timedelta(days=int(o))).isoformat() for o in (0, -1, -2, -3)], dtype=object)[-b["_day_off"].to_numpy()]
            write_csv(
                pd.DataFrame(
                    {
                        "file": f"event_date={day.isoformat()}/{name}",  # as bronze source_file
                        "line": np.arange(1, len(final) + 1),
                        "transaction_id": b["transaction_id"].to_numpy(),
                        "event_date": event_date,
                        "scenario": b["_scenario"].to_numpy(),
                        "defect": defect,
                    }
                ),
                truth,
                header=False,
            )
            for d in defect[defect != ""]:
                defect_counts[d.split(":")[0]] += 1
            defect_counts["missing_from_stream"] += int((~in_stream).sum())

            # every generated transaction once, with its true values
            booked = pd.concat([day_df, late_df], ignore_index=True)
            booked[SOR_COLUMNS].to_csv(sor, index=False, header=False, lineterminator="\n", float_format="%.2f")
            total_txns += len(booked)
            missing_truth = day_df[~in_stream]
            if len(missing_truth):
                write_csv(
                    pd.DataFrame({"file": "", "line": "", "transaction_id": missing_truth["transaction_id"].to_numpy(), "event_date": day.isoformat(), "scenario": "", "defect": "missing_from_stream"}),
                    truth,
                    header=False,
                )

            # confirmed outcomes: most scenario transactions, a sample of normal ones
            orng = rng_for(config, day, STREAM_OUTCOMES, c)
            role = day_df["_role"].to_numpy()
            r = orng.random(len(day_df))
            pos = (role == LABELLED) & (r < OUTCOME_POSITIVE_RATE)
            neg = (role == NORMAL) & (r < config.outcome_sample_rate)
            chosen = day_df[pos | neg]
            delay = orng.integers(86_400, 10 * 86_400 + 1, len(chosen))
            write_csv(
                pd.DataFrame(
                    {
                        "transaction_id": chosen["transaction_id"].to_numpy(),
                        "label": (chosen["_role"].to_numpy() == LABELLED).astype(int),
                        "decision_time": _format_decisions(day, chosen["_day_off"].to_numpy(), chosen["_secs"].to_numpy(), delay),
                    }
                ),
                outcomes,
                header=False,
            )
    written += list(side.values())

    manifest = {
        "day": day.isoformat(),
        "seed": config.seed,
        "events_per_day": config.events_per_day,
        "rows_per_file": config.rows_per_file,
        "accounts": int(pop.n_accounts),
        "merchants": int(len(pop.merchant_id)),
        "files": files,
        "total_lines": int(sum(f["lines"] for f in files)),
        "transactions": total_txns,
        "defects": defect_counts,
        "scenarios": {s: scen.counts[s] for s in SCENARIOS},
    }
    (tx_dir / "_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (tx_dir / "_SUCCESS").write_text("")
    written += [tx_dir / "_manifest.json", tx_dir / "_SUCCESS"]

    return DaySummary(
        day=day.isoformat(),
        lines=manifest["total_lines"],
        transactions=total_txns,
        scenarios=manifest["scenarios"],
        defects=defect_counts,
        files=[p.relative_to(root).as_posix() for p in written],
        seconds=round(time.perf_counter() - started, 3),
    )


def generate_days(config: SynthConfig, landing_root: Path, days: Iterable[dt.date]) -> list[DaySummary]:
    """Generate several days (each independent of the others)."""
    return [generate_day(config, landing_root, d) for d in days]
