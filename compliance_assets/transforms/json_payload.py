"""The strict reading of one JSON payload: what a lenient JSON parser lets through and we must not.

Spark's JSON parsers (from_json, parse_json) stop after the first value, so `{...}\r{...}` or
`{...} junk` parse as the first object and the rest vanishes; from_json keeps the last of two equal
keys. This module is the one definition of the stricter rules (a payload is exactly one JSON value
with unique keys, a leading byte-order mark is not content); the Spark validation sends it only the
payloads it cannot clear cheaply, and the real-time path can call it directly.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

BOM = "\ufeff"
TRAILING_CONTENT = "TRAILING_CONTENT"
DUPLICATE_KEY = "DUPLICATE_KEY"
MALFORMED_JSON = "MALFORMED_JSON"


class PayloadProblem(ValueError):
    """A payload that is not exactly one well-formed JSON value with unique keys; `reason_code` says why."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise PayloadProblem(DUPLICATE_KEY, f"key {repeated!r} appears more than once")
    return obj


def _no_constants(name: str) -> Any:
    raise PayloadProblem(MALFORMED_JSON, f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=Decimal, parse_constant=_no_constants)
_WHITESPACE = " \t\r\n"


def strict_loads(text: str) -> Any:
    """The one JSON value of `text` (numbers with a fraction as Decimal, exactly as written); raises
    PayloadProblem for malformed JSON, content after the value or a repeated key. A leading BOM is skipped."""
    text = text.removeprefix(BOM)
    try:
        value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip(_WHITESPACE)))
    except PayloadProblem:
        raise
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PayloadProblem(MALFORMED_JSON, type(exc).__name__) from None
    if text[end:].strip(_WHITESPACE):
        raise PayloadProblem(TRAILING_CONTENT, f"{len(text) - end} characters after the JSON value")
    return value


def payload_problem(text: str | None) -> str | None:
    """The reason code of a payload that `strict_loads` refuses, else None."""
    if text is None:
        return None
    try:
        strict_loads(text)
    except PayloadProblem as problem:
        return problem.reason_code
    return None
