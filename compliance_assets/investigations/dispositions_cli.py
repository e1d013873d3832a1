"""compliance-dispositions: record investigators' decisions from the command line.

    compliance-dispositions decide ALR-... --decision confirm --investigator alice [--note "..."] [--decided-at ISO]
    compliance-dispositions submit decisions.csv          # a CSV/JSON file from a case-management export
    compliance-dispositions history ALR-...                # every decision on an alert, oldest first (local lake)

`decide` and `submit` write into the file drop's dispositions/<day>/ folder (FILE_DROPS_ROOT or Azure Blob, as
the platform is configured); the daily alert_dispositions asset records them, so the CLI never writes the lake
itself. A decision that breaks the contract is refused here with the reason; `submit` reports bad rows (they
will go to the DLQ) and refuses the file with --strict. `--day` must be a partition the daily run reads: a
YYYY-MM-DD date from the first partition up to today (UTC); anything else is refused before anything is written.
"""

import argparse
import datetime as dt
import os
import re
import sys
import uuid
from pathlib import Path

from compliance_assets.investigations.decision_files import DECISIONS, Decision, check_file, check_record, decision_file
from compliance_assets.investigations.dispositions import day_folder
from partitions import PARTITIONS_START


def _today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def receipt_day(value: str) -> str:
    """--day: a YYYY-MM-DD date (exactly) between the first daily partition and today (UTC), so the decisions land
    in a folder the daily run of that partition reads."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in the form YYYY-MM-DD (e.g. 2026-12-04)")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a calendar date ({err})") from None
    if day.isoformat() > _today():
        raise argparse.ArgumentTypeError(f"{value} is in the future (today is {_today()} UTC): decisions are filed under the day they are received")
    if day.isoformat() < PARTITIONS_START:
        raise argparse.ArgumentTypeError(f"{value} is before the first partition ({PARTITIONS_START})")
    return day.isoformat()


def _drops():
    from resources.file_drops import file_drops_from_env

    return file_drops_from_env()


def _target(day: str, stem: str, suffix: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{day_folder(day)}{stamp}-{stem}-{uuid.uuid4().hex[:8]}{suffix}"


def decide(args, drops) -> int:
    record = {
        "alert_id": args.alert_id, "decision": args.decision, "investigator": args.investigator,
        "decided_at": args.decided_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "note": args.note,
    }
    checked = check_record(record, "<command line>", 1)
    if not isinstance(checked, Decision):
        print(f"refused ({', '.join(checked.reason_codes)}): {checked.detail}", file=sys.stderr)
        return 2
    name = _target(args.day, "cli", ".json")
    drops.write_bytes(name, decision_file([{**record, "decision": checked.decision, "decided_at": checked.decided_at.isoformat()}]))
    print(f"{checked.decision} on {checked.alert_id} by {checked.investigator} at {checked.decided_at.isoformat()} -> {drops.uri(name)}")
    return 0


def submit(args, drops) -> int:
    path = Path(args.file)
    data = path.read_bytes()
    decisions, rejected, read = check_file(path.name, data)
    for r in rejected:
        where = f"row {r.source_row}" if r.source_row else "file"
        print(f"{path.name} {where}: {', '.join(r.reason_codes)}: {r.detail}", file=sys.stderr)
    if rejected and args.strict:
        print(f"refused: {len(rejected)} of {read} records break the contract (--strict)", file=sys.stderr)
        return 2
    name = _target(args.day, path.stem, path.suffix.lower())
    drops.write_bytes(name, data)
    print(f"{read} records ({len(decisions)} valid, {len(rejected)} to the DLQ) -> {drops.uri(name)}")
    return 0


def history(args) -> int:
    from catalog import DISPOSITIONS
    from resources.lake import LakeResource, default_lake_root

    table = LakeResource(root=default_lake_root()).delta_table(DISPOSITIONS)
    if table is None:
        print(f"no recorded decision on {args.alert_id}")
        return 1
    rows = table.to_pyarrow_table(filters=[("alert_id", "=", args.alert_id)]).to_pylist()
    if not rows:
        print(f"no recorded decision on {args.alert_id}")
        return 1
    rows.sort(key=lambda r: (r["decided_at"], r["recorded_at"]))
    for i, r in enumerate(rows):
        state = "current" if i == len(rows) - 1 else "superseded"
        print(f"{r['decided_at']:%Y-%m-%d %H:%M:%S}  {r['decision']:<8}  {r['investigator']:<20}  {state:<10}  {r['note'] or ''}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compliance-dispositions", description="Record investigators' decisions on alerts (see README: Investigators' decisions).")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decide", help="record one decision")
    d.add_argument("alert_id")
    d.add_argument("--decision", required=True, type=str.upper, choices=DECISIONS)
    d.add_argument("--investigator", required=True)
    d.add_argument("--decided-at", help="RFC 3339 with offset (default: now, UTC)")
    d.add_argument("--note")
    d.add_argument("--day", type=receipt_day, default=_today(), help="the receipt day (partition) to file it under, YYYY-MM-DD, not in the future (default: today, UTC)")
    s = sub.add_parser("submit", help="drop a CSV/JSON file of decisions (alert_id, decision, investigator, decided_at, note)")
    s.add_argument("file")
    s.add_argument("--strict", action="store_true", help="refuse the whole file if any record breaks the contract")
    s.add_argument("--day", type=receipt_day, default=_today(), help="the receipt day (partition), YYYY-MM-DD, not in the future (default: today, UTC)")
    h = sub.add_parser("history", help="every decision on an alert, oldest first")
    h.add_argument("alert_id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "history":
        return history(args)
    drops = _drops()
    return decide(args, drops) if args.command == "decide" else submit(args, drops)


def console() -> None:
    """The `compliance-dispositions` command. After `history` the process ends without the interpreter's
    teardown: delta-rs's pyarrow scan can leave native I/O threads that abort a normal exit now and then
    ("terminate called without an active exception", delta-io/delta-rs#2184), after the output is printed."""
    code = main()
    if sys.argv[1:2] == ["history"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
