"""Command line entry point `compliance-synth`: generate synthetic landing days."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from compliance_assets.synthetic.config import SynthConfig
from compliance_assets.synthetic.writer import generate_day


def default_landing_root() -> Path:
    """LANDING_ROOT, else $LAKE_ROOT/landing, else ./lake/landing."""
    if os.environ.get("LANDING_ROOT"):
        return Path(os.environ["LANDING_ROOT"])
    if os.environ.get("LAKE_ROOT"):
        return Path(os.environ["LAKE_ROOT"]) / "landing"
    return Path("lake") / "landing"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    p = argparse.ArgumentParser(prog="compliance-synth", description="Generate synthetic transactions, reference data and ground truth into the landing area.")
    p.add_argument("--landing-root", type=Path, default=None, help="Landing folder (default: $LANDING_ROOT, else $LAKE_ROOT/landing, else ./lake/landing).")
    p.add_argument("--start", type=dt.date.fromisoformat, default=yesterday, help="First day, YYYY-MM-DD (default: yesterday, UTC).")
    p.add_argument("--days", type=int, default=1, help="Number of consecutive days (default 1).")
    p.add_argument("--events-per-day", type=int, default=SynthConfig.events_per_day, help="Stream lines per day.")
    p.add_argument("--seed", type=int, default=SynthConfig.seed, help="Random seed.")
    p.add_argument("--rows-per-file", type=int, default=SynthConfig.rows_per_file, help="Lines per JSON-lines part file.")
    p.add_argument("--amount-shift", type=float, default=SynthConfig.amount_shift, help="Multiply the day's amounts by this (a drifted population; default 1).")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.landing_root or default_landing_root()
    config = SynthConfig(seed=args.seed, events_per_day=args.events_per_day, rows_per_file=args.rows_per_file, amount_shift=args.amount_shift)
    for i in range(args.days):
        summary = generate_day(config, root, args.start + dt.timedelta(days=i))
        print(summary.one_line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
