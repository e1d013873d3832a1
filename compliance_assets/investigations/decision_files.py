"""Investigators' decision files: read a dropped CSV or JSON file and check each decision against its contract
(contracts/alert_dispositions.schema.json), before anything touches the lake.

Pure Python (the files are small: a team's decisions of a day), so the drop-folder asset and the CLI share it.
Every record ends as exactly one `Decision` or one `Rejected` with reason codes: nothing is dropped.
"""

import csv
import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any, Optional

from jsonschema import Draft202012Validator, FormatChecker

from contracts import load_contract

CONTRACT = "alert_dispositions"
DECISIONS = ("CONFIRM", "DISMISS", "ESCALATE")
CONFIRM, DISMISS, ESCALATE = DECISIONS
SUPPORTED_SUFFIXES = (".csv", ".json")
RAW_CHARS = 4000

# file-level reasons (one DLQ row for the whole file) and record-level contract reasons
UNREADABLE_FILE, UNSUPPORTED_FILE_TYPE = "UNREADABLE_FILE", "UNSUPPORTED_FILE_TYPE"
MISSING_FIELD, UNEXPECTED_FIELD, INVALID_TYPE = "MISSING_FIELD", "UNEXPECTED_FIELD", "INVALID_TYPE"
INVALID_ALERT_ID, INVALID_DECISION, INVALID_TIMESTAMP, INVALID_FIELD = "INVALID_ALERT_ID", "INVALID_DECISION", "INVALID_TIMESTAMP", "INVALID_FIELD"
# reasons found against the lake (the alert and its transaction) and the clock
UNKNOWN_ALERT, DECIDED_BEFORE_TRANSACTION, DECIDED_IN_FUTURE = "UNKNOWN_ALERT", "DECIDED_BEFORE_TRANSACTION", "DECIDED_IN_FUTURE"


@dataclass(frozen=True)
class Decision:
    """A decision that satisfies the contract (normalised: decision upper-case, decided_at in UTC)."""

    alert_id: str
    decision: str
    investigator: str
    decided_at: dt.datetime
    note: Optional[str]
    source_file: str
    source_row: int

    @property
    def disposition_id(self) -> str:
        """Content hash: the same decision submitted twice is one history row, a different one is a new row."""
        key = "|".join([self.alert_id, self.decision, self.investigator, self.decided_at.isoformat(), self.note or ""])
        return "DSP-" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Rejected:
    """A record (or a whole file, source_row None) that is not a valid decision, with why."""

    source_file: str
    source_row: Optional[int]
    raw: str
    reason_codes: tuple[str, ...]
    detail: str
    alert_id: Optional[str] = None


def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_contract(CONTRACT), format_checker=FormatChecker())


def _reason(error) -> str:
    field = error.path[0] if error.path else None
    if error.validator == "required":
        return MISSING_FIELD
    if error.validator == "additionalProperties":
        return UNEXPECTED_FIELD
    if error.validator == "type":
        return INVALID_TYPE
    if field == "alert_id":
        return INVALID_ALERT_ID
    if field == "decision":
        return INVALID_DECISION
    if field == "decided_at":
        return INVALID_TIMESTAMP
    return INVALID_FIELD


def _normalise(record: dict[str, Any]) -> dict[str, Any]:
    """Trim text, upper-case the decision, treat empty CSV cells as absent (so a missing value fails `required`)."""
    out = {}
    for key, value in record.items():
        key = key.strip() if isinstance(key, str) else key
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                continue
        out[key] = value
    if isinstance(out.get("decision"), str):
        out["decision"] = out["decision"].upper()
    return out


def _raw(record: Any) -> str:
    return json.dumps(record, default=str, sort_keys=True)[:RAW_CHARS]


def check_record(record: Any, source_file: str, source_row: int) -> Decision | Rejected:
    """One submitted record against the contract."""
    if not isinstance(record, dict):
        return Rejected(source_file, source_row, _raw(record), (INVALID_TYPE,), "a decision must be an object with alert_id, decision, investigator, decided_at")
    rec = _normalise(record)
    alert_id = rec.get("alert_id") if isinstance(rec.get("alert_id"), str) else None
    errors = sorted(_validator().iter_errors(rec), key=lambda e: (list(e.path), e.validator))
    if errors:
        codes = tuple(dict.fromkeys(_reason(e) for e in errors))
        detail = "; ".join(f"{'/'.join(map(str, e.path)) or 'record'}: {e.message}" for e in errors)[:RAW_CHARS]
        return Rejected(source_file, source_row, _raw(record), codes, detail, alert_id)
    decided_at = dt.datetime.fromisoformat(rec["decided_at"].replace("Z", "+00:00").replace("z", "+00:00")).astimezone(dt.timezone.utc)
    return Decision(rec["alert_id"], rec["decision"], rec["investigator"], decided_at, rec.get("note"), source_file, source_row)


def read_records(name: str, data: bytes) -> list[Any] | Rejected:
    """The records of a dropped file: a CSV with a header row, or JSON (one object, a list, or
    {"dispositions": [...]}). A file that cannot be read at all is one Rejected."""
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    if suffix not in SUPPORTED_SUFFIXES:
        return Rejected(name, None, data[:RAW_CHARS].decode("utf-8", "replace"), (UNSUPPORTED_FILE_TYPE,), f"only {', '.join(SUPPORTED_SUFFIXES)} files are read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return Rejected(name, None, data[:RAW_CHARS].decode("utf-8", "replace"), (UNREADABLE_FILE,), f"not UTF-8 text (byte {err.start})")
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        for row in reader:
            extra = row.pop(None, None)  # cells beyond the header
            if extra:
                row["_extra_cells"] = extra
            rows.append(row)
        return rows
    try:
        doc = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as err:
        return Rejected(name, None, text[:RAW_CHARS], (UNREADABLE_FILE,), f"invalid JSON: {err}")
    if isinstance(doc, dict) and isinstance(doc.get("dispositions"), list):
        return doc["dispositions"]
    return doc if isinstance(doc, list) else [doc]


def check_file(name: str, data: bytes) -> tuple[list[Decision], list[Rejected], int]:
    """(valid decisions, rejected records, records read) of one file; a file-level rejection counts as one record."""
    records = read_records(name, data)
    if isinstance(records, Rejected):
        return [], [records], 1
    decisions, rejected = [], []
    for i, record in enumerate(records, start=1):
        out = check_record(record, name, i)
        (decisions if isinstance(out, Decision) else rejected).append(out)
    return decisions, rejected, len(records)


def decision_file(records: list[dict[str, Any]]) -> bytes:
    """The JSON drop file for `records` (what the CLI writes)."""
    return (json.dumps({"dispositions": records}, indent=2, default=str) + "\n").encode()
