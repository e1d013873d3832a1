"""Investigators' decision files: read a dropped CSV or JSON file and check each decision against its contract
(contracts/alert_dispositions.schema.json), before anything touches the lake.

Pure Python (the files are small: a team's decisions of a day), so the drop-folder asset and the CLI share it.
Every record ends as exactly one `Decision` or one `Rejected` with reason codes: nothing is dropped. Hostile or
broken input never raises: a record that cannot be checked is a rejected record, a file that cannot be parsed
(not UTF-8, broken or too deeply nested JSON, a CSV field over the csv module's limit) is one rejected
`UNREADABLE_FILE` record that shows only a short masked excerpt of the file.
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
from resources.masking import masked_excerpt

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
        """Content hash: the same decision submitted twice is one history row, a different one is a new row.
        SHA-256 of the canonical JSON of the fields (unambiguous: no separator a note or a name could contain)."""
        return "DSP-" + hashlib.sha256(canonical_json(self.key_fields()).encode("utf-8")).hexdigest()

    def key_fields(self) -> dict[str, Any]:
        """What identifies a decision: everything the investigator submitted."""
        return {
            "alert_id": self.alert_id, "decision": self.decision, "investigator": self.investigator,
            "decided_at": self.decided_at.isoformat(), "note": self.note,
        }


@dataclass(frozen=True)
class Rejected:
    """A record (or a whole file, source_row None) that is not a valid decision, with why."""

    source_file: str
    source_row: Optional[int]
    raw: str
    reason_codes: tuple[str, ...]
    detail: str
    alert_id: Optional[str] = None


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no whitespace, Unicode as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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


def _shallow_raw(record: Any) -> str:
    """The record with every value that is not plain text elided (for a record too deeply nested to show)."""
    if not isinstance(record, dict):
        return f"<{type(record).__name__}>"
    return json.dumps({str(k): v if isinstance(v, str) else f"<{type(v).__name__}>" for k, v in record.items()}, sort_keys=True)[:RAW_CHARS]


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _to_utc(value: str) -> dt.datetime:
    """An RFC 3339 timestamp (already format-checked) in UTC. Raises ValueError for a value Python's datetime
    does not take (e.g. a leap second) and OverflowError where UTC leaves years 1..9999 (0001-01-01T00:00:00+01:00)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00")).astimezone(dt.timezone.utc)


def check_record(record: Any, source_file: str, source_row: int) -> Decision | Rejected:
    """One submitted record against the contract (never raises: a record that cannot be checked is rejected)."""
    try:
        return _check_record(record, source_file, source_row)
    except RecursionError:
        return Rejected(
            source_file, source_row, _shallow_raw(record), (INVALID_TYPE,),
            "the record holds values nested too deeply to check; a decision's fields are text",
            record.get("alert_id") if isinstance(record, dict) and isinstance(record.get("alert_id"), str) else None,
        )


def _check_record(record: Any, source_file: str, source_row: int) -> Decision | Rejected:
    if not isinstance(record, dict):
        return Rejected(source_file, source_row, _raw(record), (INVALID_TYPE,), "a decision must be an object with alert_id, decision, investigator, decided_at")
    rec = _normalise(record)
    alert_id = rec.get("alert_id") if isinstance(rec.get("alert_id"), str) else None
    errors = sorted(_validator().iter_errors(rec), key=lambda e: (list(e.path), e.validator))
    if errors:
        codes = tuple(dict.fromkeys(_reason(e) for e in errors))
        detail = "; ".join(f"{'/'.join(map(str, e.path)) or 'record'}: {e.message}" for e in errors)[:RAW_CHARS]
        return Rejected(source_file, source_row, _raw(record), codes, detail, alert_id)
    not_text = [k for k, v in rec.items() if isinstance(v, str) and not _utf8(v)]
    if not_text:
        return Rejected(source_file, source_row, _raw(record), (INVALID_FIELD,), f"{', '.join(not_text)}: not valid Unicode text (an unpaired surrogate)", alert_id)
    try:
        decided_at = _to_utc(rec["decided_at"])
    except (OverflowError, ValueError) as err:
        why = "is out of range once converted to UTC" if isinstance(err, OverflowError) else "is not a valid date and time"
        return Rejected(source_file, source_row, _raw(record), (INVALID_TIMESTAMP,), f"decided_at: {rec['decided_at']!r} {why}", alert_id)
    return Decision(rec["alert_id"], rec["decision"], rec["investigator"], decided_at, rec.get("note"), source_file, source_row)


def unreadable_file(name: str, data: bytes | str, detail: str, code: str = UNREADABLE_FILE) -> Rejected:
    """The one rejected record of a file that cannot be read: its raw text is a short masked excerpt only."""
    return Rejected(name, None, masked_excerpt(data), (code,), detail)


def _csv_records(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            extra = row.pop(None, None)  # cells beyond the header
            if extra:
                row["_extra_cells"] = extra
            rows.append(row)
    except csv.Error as err:  # the csv module's messages name the problem, never the cell's content
        raise csv.Error(f"{err} (line {reader.line_num})") from err
    return rows


def _json_records(text: str) -> list[Any]:
    doc = json.loads(text) if text.strip() else []
    if isinstance(doc, dict) and isinstance(doc.get("dispositions"), list):
        return doc["dispositions"]
    return doc if isinstance(doc, list) else [doc]


def read_records(name: str, data: bytes) -> list[Any] | Rejected:
    """The records of a dropped file: a CSV with a header row, or JSON (one object, a list, or
    {"dispositions": [...]}). A file that cannot be read at all is one Rejected (never an exception), whose
    raw text and detail quote no more than a short masked excerpt of the file."""
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    if suffix not in SUPPORTED_SUFFIXES:
        return unreadable_file(name, data, f"only {', '.join(SUPPORTED_SUFFIXES)} files are read", UNSUPPORTED_FILE_TYPE)
    try:
        text = data.decode("utf-8-sig")
        return _csv_records(text) if suffix == ".csv" else _json_records(text)
    except UnicodeDecodeError as err:
        detail = f"not UTF-8 text ({err.reason} at byte {err.start})"
    except RecursionError:
        detail = "nested too deeply to read"
    except csv.Error as err:
        detail = f"not a readable CSV file: {str(err)[:200]}"
    except json.JSONDecodeError as err:
        detail = f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}, near {masked_excerpt(err.doc[max(0, err.pos - 20):])!r}"
    except ValueError:  # e.g. a number of more digits than Python converts (its message is safe, but keep to ours)
        detail = "invalid JSON: a value that cannot be read (e.g. an integer of more than 4300 digits)"
    return unreadable_file(name, data, detail)


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
