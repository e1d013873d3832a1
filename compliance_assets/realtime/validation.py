"""Contract validation and reference checks of one event, in pure Python: the real-time execution of
transforms/validation.py (`validate_payloads`) and pipeline.check_batch's rules (transforms/quality.py).

The rules come from the same places (contracts.rules for the contract, the payload and pipeline Rule
objects for the rest) and are compiled once per contract into small checks, so one event costs
microseconds. What the Spark path decides through its engines is mirrored here, as the parity tests
(tests/realtime/test_validation.py) prove against it:
- the payload is read the way `from_json` reads it (the first JSON value; the last of two equal keys);
  a contract field holding a repeated key or an unpaired surrogate (`"\\ud800"`) spoils the whole object
  for Spark, hence MALFORMED_JSON; content after the value or a repeated key is named by
  json_payload's strict reading, consulted (as Spark does) only where a cheap look cannot clear the payload;
- every number keeps its JSON text, from which its VARIANT type follows (BIGINT, DECIMAL(p,s) with
  trailing zeros stripped, or DOUBLE for an exponent or beyond 38 digits) and its text as Spark's
  `to_json` writes it (`multipleOf` is decided on that text, 1e309 is "Infinity");
- patterns are Java regexes matched with find(): run with `re.search` after `java_regex` gives `.` and
  `$` their Java meaning (line terminators);
- a date-time is Spark's string-to-timestamp cast, converted to naive UTC (the session time zone);
- Jackson's limits: a number of more than 1000 digits, or values nested more than 1000 deep, are malformed.
Known differences: a timestamp whose UTC value falls outside years 1-9999 (0000-01-01T00:00:00Z) is valid
for Spark but not representable in Python, and is refused here as INVALID_FORMAT; a payload nested some
950-1000 levels deep meets Python's recursion limit (here, or in the batch path's strict reading) before
Jackson's, so the two paths may disagree on it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from pyspark.sql import types as T

from contracts import json_types, load_contract
from contracts.rules import Rule, contract_rules
from contracts.spark import spark_type
from compliance_assets.transforms import json_payload
from compliance_assets.transforms.quality import FUTURE_EVENT, MISSING_LOCATION, NO_FX_RATE, TOO_LATE, UNKNOWN_ACCOUNT, UNKNOWN_MERCHANT
from compliance_assets.transforms.validation import _DATE, _RFC3339, DUPLICATE_KEY, INVALID_UTF8, MALFORMED_JSON, NOT_AN_OBJECT, decimal_places

_LINE_TERMINATORS = "\n\r\u0085\u2028\u2029"  # Java's, for `.` and `$` (UNIX_LINES off)
_JAVA_DOT = f"[^{_LINE_TERMINATORS}]"
_JAVA_END = rf"(?=(?:\r\n|[{_LINE_TERMINATORS}])?\Z)"
_JSON_SPACE = " \t\r\n"
_LONG = 1 << 63
_INF = float("inf")
_POWERS_OF_TEN = [Decimal(10) ** n for n in range(40)]
_MAX_DECIMAL_DIGITS = 38  # the VARIANT decimal's precision and scale limit
_MAX_NUMBER_LENGTH = 1000  # Jackson's default StreamReadConstraints: a longer number is malformed JSON
_LOCATED_CHANNELS = ("CARD_PRESENT", "ATM")  # quality.flagging_rule_exprs


def java_regex(pattern: str) -> re.Pattern:
    """A Java regex (Spark's rlike, matched with find()) as a Python pattern for `re.search`: outside
    character classes `.` excludes Java's line terminators and `$` also matches before a final one;
    ASCII classes (Java's \\d is [0-9]). Enough for the contracts' patterns (contracts/id_patterns.py's subset)."""
    out, in_class = [], False
    for token in re.findall(r"\\.|.", pattern, re.DOTALL):
        if in_class:
            in_class = token != "]"
        elif token == "[":
            in_class = True
        elif token == ".":
            token = _JAVA_DOT
        elif token == "$":
            token = _JAVA_END
        out.append(token)
    return re.compile("".join(out), re.ASCII)


class _Number(str):
    """A JSON number, kept as written (its VARIANT type and Spark's text of it depend on the writing)."""


class _Repeated(dict):
    """A JSON object in which a key appeared more than once (the last value kept, as from_json does)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _Repeated(obj)


def _number(text: str) -> _Number:
    """A number's text; ValueError beyond Jackson's number length (1000 digits, a leading "0." left out unless
    an exponent follows, as measured against Spark)."""
    if len(text) > _MAX_NUMBER_LENGTH:
        digits = sum(c.isdigit() for c in text) - (text.lstrip("-").startswith("0.") and "e" not in text.lower())
        if digits > _MAX_NUMBER_LENGTH:
            raise ValueError("number too long")
    return _Number(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_READER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_number, parse_int=_number, parse_constant=_constant)
# a text no longer than Jackson's number limit holds no number beyond it: its numbers need no length check
_SHORT_READER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_Number, parse_int=_Number, parse_constant=_constant)


def _first_value(text: str) -> tuple[Any, int]:
    """The first JSON value of `text` and where it ends, as Spark's parsers read it; ValueError if malformed."""
    try:
        reader = _SHORT_READER if len(text) <= _MAX_NUMBER_LENGTH else _READER
        return reader.raw_decode(text, len(text) - len(text.lstrip(_JSON_SPACE)))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _clean_text(s: str) -> bool:
    """Whether a string can be written as UTF-8 (an unpaired surrogate cannot)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(value: Any) -> bool:
    """Whether Spark builds a VARIANT of a value: no repeated key, no unpaired surrogate anywhere in it
    (iterative: a value may nest as deep as the reader allows)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is str:
            if not _clean_text(v):
                return False
        elif type(v) is list:
            stack.extend(v)
        elif type(v) is _Repeated:
            return False
        elif type(v) is dict:
            stack.extend(v)
            stack.extend(v.values())
    return True


def _flat_object(text: str) -> bool:
    """validation._single_flat_object: `{...}` with no other brace anywhere, so nothing can follow it."""
    trimmed = text.strip(_JSON_SPACE)
    return text.count("{") == 1 and text.count("}") == 1 and trimmed.startswith("{") and trimmed.endswith("}")


# ---- a JSON value's VARIANT type and Spark's text of it ------------------------------------------------


def _number_type(text: str) -> str:
    """schema_of_variant of a JSON number: BIGINT, DECIMAL(p,s) (trailing zeros stripped) or DOUBLE."""
    if "e" in text or "E" in text:
        return "DOUBLE"
    whole, _, fraction = text.lstrip("-").partition(".")
    if not fraction and (len(whole) < 19 or -_LONG <= int(text) < _LONG):
        return "BIGINT"
    if len((whole + fraction).lstrip("0")) > _MAX_DECIMAL_DIGITS or len(fraction) > _MAX_DECIMAL_DIGITS:
        return "DOUBLE"
    scale = len(fraction.rstrip("0"))
    return f"DECIMAL({max(len(whole.lstrip('0')) + scale, 1)},{scale})"


_PLAIN_DECIMAL_TYPES = {(p, s): f"DECIMAL({p},{s})" for p in range(1, 18) for s in range(1, 18)}


def _plain_number(raw: "_Number") -> tuple[str, str, float] | None:
    """(VARIANT type, to_json text, double) of a plainly written number (at most 18 characters, no exponent, no
    trailing zero after a point, not -0), as _variant_type and _decoded give them, without their general path;
    None for any other writing. `raw` is JSON's number grammar (the reader's scanner matched it)."""
    if len(raw) > 18 or "e" in raw or "E" in raw or raw == "-0":
        return None
    whole, _, fraction = raw.partition(".")
    if not fraction:  # fewer than 19 digits: a long
        return "BIGINT", str(raw), float(raw)
    if fraction[-1] == "0":
        return None
    # DECIMAL(p,s), no trailing zero to strip: to_json writes it as written
    return _PLAIN_DECIMAL_TYPES[max(len(whole.lstrip("-0")) + len(fraction), 1), len(fraction)], str(raw), float(raw)


def _variant_type(value: Any) -> str:
    """schema_of_variant of a decoded JSON value; an array's elements merged one level deep (what `items` and
    the type rule read: a nested array or object is never an allowed item)."""
    if type(value) is list:
        merged = "VOID"
        for item in value:
            merged = _merge(merged, "ARRAY" if type(item) is list else _variant_type(item))
        return f"ARRAY<{merged}>"
    if type(value) is str:
        return "STRING"
    if type(value) is _Number:
        return _number_type(value)
    if value is None:
        return "VOID"
    if value is True or value is False:
        return "BOOLEAN"
    return "OBJECT"


def _merge(a: str, b: str) -> str:
    """Spark's merge of two element types (enough for the `items` rule: equal, VOID, or numeric widening)."""
    if a == b or b == "VOID":
        return a
    if a == "VOID":
        return b
    numeric = ("BIGINT", "DECIMAL", "DOUBLE")
    if a.startswith(numeric) and b.startswith(numeric):
        return "DOUBLE" if "DOUBLE" in (a, b) else "DECIMAL"
    return "VARIANT"


def _number_text(raw: _Number, vtype: str) -> str:
    """to_json of a JSON number's VARIANT: the value as written without trailing zeros, or the double's digits."""
    if vtype == "DOUBLE":
        # Spark writes Java's Double.toString (1.0E-5 where Python writes 1e-05): other forms, the same digits
        # and decimals; beyond the double range, the JSON string "Infinity"
        value = float(raw)
        return repr(value) if value not in (_INF, -_INF) else '"Infinity"' if value > 0 else '"-Infinity"'
    if vtype == "BIGINT" or raw[-1] != "0":
        return "0" if raw == "-0" else str(raw)
    stripped = Decimal(raw).normalize()
    return "0" if not stripped else f"{stripped:f}"


def _decoded(raw: Any, vtype: str) -> tuple[str | None, float | None]:
    """with_parsed_fields' `value` and `as_double` of a JSON value: a string's characters, a number's or
    boolean's JSON text (to_json); a number's value as a double (beyond the double range: infinite)."""
    if vtype == "STRING":
        return raw, None
    if type(raw) is _Number:
        text = _number_text(raw, vtype)
        return text, float(raw) if vtype == "DOUBLE" else float(text)
    if raw is True or raw is False:
        return ("true" if raw else "false"), None
    return None, None


# ---- Spark's casts of the contract types --------------------------------------------------------------

# what Spark's cast accepts of what the format rule's pattern lets through (it trims a final \r or \n, not \u2028)
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|([+-])(\d{2}):(\d{2}))(?:\r\n|\r|\n)?\Z", re.ASCII)
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:\r\n|\r|\n)?\Z", re.ASCII)


def spark_timestamp(text: str) -> dt.datetime | None:
    """Spark's cast of an RFC 3339 string to timestamp (session time zone UTC), as naive UTC; None where
    Spark gives null (a bad date or time, a 't' or 'z', an offset beyond ±18:00) or Python cannot hold it."""
    if len(text) == 20 and text[10] == "T" and text[19] == "Z" and text.isascii():  # the common case, quickly
        try:
            return dt.datetime.fromisoformat(text[:19])
        except ValueError:
            pass
    m = _TIMESTAMP.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, sign, oh, om = m.groups()
    try:
        local = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "0")[:6].ljust(6, "0")))
        if sign is None:
            return local
        if int(om) > 59 or int(oh) * 60 + int(om) > 18 * 60:
            return None
        offset = dt.timedelta(hours=int(oh), minutes=int(om))
        return local - offset if sign == "+" else local + offset
    except (ValueError, OverflowError):
        return None


def spark_date(text: str) -> dt.date | None:
    """Spark's cast of a 'YYYY-MM-DD' string to date (None where it gives null or Python cannot hold it)."""
    m = _DAY.match(text)
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    except ValueError:
        return None


def _to_decimal(text: str, precision: int, scale: int, quantum: Decimal | None = None) -> Decimal | None:
    """try_cast(text AS decimal(p,s)): HALF_UP to the scale, null beyond the precision (`quantum`: 10**-scale, if at hand)."""
    try:
        d = Decimal(text).quantize(quantum or Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return None
    return d if d.is_finite() and d.copy_abs() < _POWERS_OF_TEN[precision - scale] else None


def _to_long(text: str) -> int | None:
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return int(d) if d.is_finite() and d == int(d) and -_LONG <= int(d) < _LONG else None


def _converter(target: T.DataType) -> Callable[[Any, str, str | None, float | None], Any]:
    """How with_parsed_fields decodes a well-typed value (raw, VARIANT type, text, double) into its contract
    type: Spark's cast of its text (None where the cast gives null)."""
    if isinstance(target, T.StringType):
        return lambda raw, vtype, text, number: text
    if isinstance(target, T.TimestampType):
        return lambda raw, vtype, text, number: spark_timestamp(text) if vtype == "STRING" else None
    if isinstance(target, T.DateType):
        return lambda raw, vtype, text, number: spark_date(text) if vtype == "STRING" else None
    if isinstance(target, T.DoubleType):
        return lambda raw, vtype, text, number: number
    if isinstance(target, T.DecimalType):
        precision, scale = target.precision, target.scale
        quantum = Decimal(1).scaleb(-scale)
        return lambda raw, vtype, text, number: _to_decimal(text, precision, scale, quantum) if type(raw) is _Number else None
    if isinstance(target, (T.LongType, T.IntegerType)):
        return lambda raw, vtype, text, number: _to_long(text) if type(raw) is _Number else None
    if isinstance(target, T.BooleanType):
        return lambda raw, vtype, text, number: raw if vtype == "BOOLEAN" else None
    if isinstance(target, T.ArrayType):
        item = _converter(target.elementType)

        def items(raw: list, vtype: str, text: str | None, number: float | None) -> list:
            return [None if v is None else item(v, vt, *_decoded(v, vt)) for v, vt in ((v, _variant_type(v)) for v in raw)]

        return items
    raise ValueError(f"Unsupported contract type {target.simpleString()}")


# ---- the contract's checks, compiled once ---------------------------------------------------------------


_TYPE_OK = {
    "string": lambda v: v == "STRING",
    "boolean": lambda v: v == "BOOLEAN",
    "integer": lambda v: v == "BIGINT" or (v.startswith("DECIMAL") and v.endswith(",0)")),
    "number": lambda v: v in ("BIGINT", "DOUBLE") or v.startswith("DECIMAL"),
    "array": lambda v: v.startswith("ARRAY"),
    "object": lambda v: v == "OBJECT",
}


def _type_check(types: list[str]) -> Callable[[str], bool]:
    """validation._type_ok on a VARIANT type string, for a property's JSON types."""
    oks = [_TYPE_OK[t] for t in types]
    return oks[0] if len(oks) == 1 else lambda v: any(ok(v) for ok in oks)


_FRACTION = re.compile(r"\.([0-9]+)")
_EXPONENT = re.compile(r"[eE]([-+]?[0-9]+)$")


def _constraint(rule: Rule, prop: dict[str, Any]) -> Callable[[str, str | None, float | None, Any], bool]:
    """validation._constraint_fails as a check of (VARIANT type, text, number, typed value): true where the rule fails."""
    kw, val = rule.keyword, rule.value
    if kw in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return {
            "minimum": lambda v, t, n, x: n is None or n < val, "exclusiveMinimum": lambda v, t, n, x: n is None or n <= val,
            "maximum": lambda v, t, n, x: n is None or n > val, "exclusiveMaximum": lambda v, t, n, x: n is None or n >= val,
        }[kw]
    if kw == "enum":
        allowed = frozenset(val)
        if json_types(prop)[0] == ["integer"]:
            return lambda v, t, n, x: x not in allowed
        return lambda v, t, n, x: t not in allowed
    if kw == "pattern":
        search = java_regex(val).search
        return lambda v, t, n, x: t is None or search(t) is None
    if kw == "minLength":
        return lambda v, t, n, x: t is None or len(t) < val
    if kw == "maxLength":
        return lambda v, t, n, x: t is None or len(t) > val
    if kw == "format":
        if val in ("date-time", "date"):
            search = java_regex(_RFC3339 if val == "date-time" else _DATE).search
            return lambda v, t, n, x: t is None or search(t) is None or x is None
        return lambda v, t, n, x: False
    if kw == "multipleOf":
        # an integer, or a decimal of at most k decimals, passes on its type; else the text's decimals count
        k = decimal_places(val)
        few_decimals = tuple(f",{scale})" for scale in range(k + 1))

        def too_precise(v: str, t: str | None, n: float | None, x: Any) -> bool:
            if v == "BIGINT" or (v.startswith("DECIMAL") and v.endswith(few_decimals)):
                return False
            if t is None:
                return True
            fraction = _FRACTION.search(t)
            exponent = _EXPONENT.search(t)
            return len(fraction.group(1).rstrip("0") if fraction else "") - (int(exponent.group(1)) if exponent else 0) > k

        return too_precise
    if kw == "items":
        item = {"string": "STRING", "number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}.get(json_types(val)[0][0], "STRING")
        allowed_types = (f"ARRAY<{item}>", "ARRAY<VOID>")
        return lambda v, t, n, x: v not in allowed_types
    raise ValueError(f"Unsupported keyword {kw}")


_ABSENT = object()


class _Unbuildable(Exception):
    """A contract field's value Spark cannot build a VARIANT of: from_json then reads no object at all."""


@dataclass(frozen=True)
class _Field:
    """One property compiled: its full check, and what `_fields_check` needs for the common forms of its value."""

    name: str
    check: Callable[[dict, list[str]], Any]
    type_ok: Callable[[str], bool]
    convert: Callable[[Any, str, str | None, float | None], Any]
    as_text: bool
    constraints: tuple[Callable[[str, str | None, float | None, Any], bool], ...]
    absent_ok: bool  # absent or null: no reason code
    null_ok: bool


def _field_check(name: str, prop: dict[str, Any], rules: list[Rule], required: bool) -> _Field:
    """One property's rules (contract_rule_flags) as a check of a JSON object: it appends the reason codes of
    the rules it fails, in rule order, and returns the typed value (None unless present, well-typed, passing)."""
    types, nullable = json_types(prop)
    type_ok = _type_check(types)
    target = spark_type(prop)
    convert, as_text = _converter(target), isinstance(target, T.StringType)
    missing = next((r.reason_code for r in rules if r.keyword == "required"), None)
    wrong_type = next(r.reason_code for r in rules if r.keyword == "type")
    null_refused = not nullable and not required  # an optional field's null is a value of the wrong type
    constraints = [(r.reason_code, _constraint(r, prop)) for r in rules if r.keyword not in ("required", "type")]

    def check(obj: dict, codes: list[str]) -> Any:
        raw = obj.get(name, _ABSENT)
        if raw is _ABSENT or raw is None:
            if missing is not None:
                codes.append(missing)
            elif raw is None and null_refused:
                codes.append(wrong_type)
            return None
        kind = type(raw)
        if kind is str:
            if not raw.isascii() and not _clean_text(raw):
                raise _Unbuildable
            vtype, text, number = "STRING", raw, None
        elif kind is _Number and (plain := _plain_number(raw)) is not None:
            vtype, text, number = plain
        elif kind is list and not raw:
            vtype, text, number = "ARRAY<VOID>", None, None  # _variant_type([]), _decoded of it
        else:
            if not _clean(raw):
                raise _Unbuildable
            vtype = _variant_type(raw)
            text, number = _decoded(raw, vtype)
        if not type_ok(vtype):
            codes.append(wrong_type)
            return None
        typed = text if as_text else convert(raw, vtype, text, number)
        passed = True
        for code, fails in constraints:
            if fails(vtype, text, number, typed):
                codes.append(code)
                passed = False
        return typed if passed else None

    absent_ok = missing is None
    return _Field(name, check, type_ok, convert, as_text, tuple(fails for _, fails in constraints), absent_ok, absent_ok and not null_refused)


_SEEN_LIMIT = 4096  # the passing values remembered per property (account, merchant and country codes, locations recur)


def _fields_check(fields: tuple[_Field, ...]) -> Callable[[dict, list[str]], dict[str, Any]]:
    """Every property's check of a JSON object at once: {name: check(obj, codes)} in contract order. Generated once
    per contract as one function, so a value in a common form (absent or null where that is allowed, an ASCII
    string, a plainly written number, an empty array) costs its conversion and its rules' own checks only: the
    same `_constraint` checks and converters, called with what `check` would derive (an ASCII string's or a
    number's typed value is a function of its text: a passing one is remembered). Anything else, and any value
    failing a rule, goes to the property's `check`, which appends the reason codes."""
    env: dict[str, Any] = {"ABSENT": _ABSENT, "MISS": object(), "Number": _Number, "plain_number": _plain_number}
    lines = ["def fields_check(obj, codes):", "    get = obj.get"]
    for i, f in enumerate(fields):
        env[f"name{i}"], env[f"check{i}"], env[f"type_ok{i}"], env[f"convert{i}"] = f.name, f.check, f.type_ok, f.convert
        for j, fails in enumerate(f.constraints):
            env[f"fails{i}_{j}"] = fails

        def passing(vtype: str, text: str, number: str, typed: str) -> str:
            fails = " or ".join(f"fails{i}_{j}({vtype}, {text}, {number}, {typed})" for j in range(len(f.constraints)))
            return f"not ({fails})" if fails else "True"

        lines.append(f"    x = get(name{i}, ABSENT)")
        branch = "if"
        if f.type_ok("STRING"):  # an ASCII string: clean, of VARIANT type STRING, its own text; its value remembered
            env[f"seen{i}"] = {}
            typed = "x" if f.as_text else f'convert{i}(x, "STRING", x, None)'
            lines += [f"    {branch} type(x) is str and x.isascii():", f"        v{i} = seen{i}.get(x, MISS)", f"        if v{i} is MISS:",
                      f"            typed = {typed}", f'            if {passing(chr(34) + "STRING" + chr(34), "x", "None", "typed")}:',
                      f"                v{i} = typed", f"                if len(seen{i}) >= {_SEEN_LIMIT}:", f"                    seen{i}.clear()",
                      f"                seen{i}[x] = typed", "            else:", f"                v{i} = check{i}(obj, codes)"]
            branch = "elif"
        if f.type_ok("BIGINT") or f.type_ok("DECIMAL(2,1)"):  # a plainly written number (_plain_number); remembered
            env[f"seen_number{i}"] = {}
            typed = "text" if f.as_text else f"convert{i}(x, vtype, text, number)"
            lines += [f"    {branch} type(x) is Number:", f"        v{i} = seen_number{i}.get(x, MISS)", f"        if v{i} is MISS:",
                      "            plain = plain_number(x)", f"            if plain is not None and type_ok{i}(plain[0]):",
                      "                vtype, text, number = plain", f"                typed = {typed}",
                      f"                if {passing('vtype', 'text', 'number', 'typed')}:", f"                    v{i} = typed",
                      f"                    if len(seen_number{i}) >= {_SEEN_LIMIT}:", f"                        seen_number{i}.clear()",
                      f"                    seen_number{i}[x] = typed", "                else:", f"                    v{i} = check{i}(obj, codes)",
                      "            else:", f"                v{i} = check{i}(obj, codes)"]
            branch = "elif"
        if f.type_ok("ARRAY<VOID>"):  # [] (_variant_type, _decoded of it)
            typed = "None" if f.as_text else f'convert{i}(x, "ARRAY<VOID>", None, None)'
            lines += [f"    {branch} type(x) is list and not x:", f"        typed = {typed}",
                      f'        v{i} = typed if {passing(chr(34) + "ARRAY<VOID>" + chr(34), "None", "None", "typed")} else check{i}(obj, codes)']
            branch = "elif"
        if f.null_ok:
            lines += [f"    {branch} x is None:", f"        v{i} = None"]
            branch = "elif"
        if f.absent_ok:
            lines += [f"    {branch} x is ABSENT:", f"        v{i} = None"]
            branch = "elif"
        lines += ["    else:" if branch == "elif" else "    if True:", f"        v{i} = check{i}(obj, codes)"]
    lines.append("    return {" + ", ".join(f"name{i}: v{i}" for i in range(len(fields))) + "}")
    env["__source__"] = source = "\n".join(lines)
    exec(source, env)  # noqa: S102 - our own source, from the contract's compiled checks
    return env["fields_check"]


@dataclass(frozen=True)
class ContractChecks:
    """A contract's compiled checks: one per property, in contract order (the order of its rules), and all of them
    as one function (`_fields_check`)."""

    fields: tuple[str, ...]
    checks: tuple[Callable[[dict, list[str]], Any], ...]
    check_all: Callable[[dict, list[str]], dict[str, Any]]


@lru_cache(maxsize=None)
def compiled(contract_name: str) -> ContractChecks:
    """The checks of a contract, compiled once per process (per load_contract)."""
    contract = load_contract(contract_name)
    by_field: dict[str, list[Rule]] = {}
    for rule in contract_rules(contract):
        by_field.setdefault(rule.field, []).append(rule)
    required = set(contract.get("required", []))
    props = contract["properties"]
    fields = tuple(_field_check(f, p, by_field.get(f, []), f in required) for f, p in props.items())
    return ContractChecks(tuple(props), tuple(f.check for f in fields), _fields_check(fields))


def validate_payload(payload: str | None, invalid_bytes: bool = False, contract_name: str = "transactions") -> tuple[dict[str, Any], list[str]]:
    """The contract step of one payload (validation.validate_payloads): every property's typed value (None
    unless present, well-typed and passing its rules) and the reason codes of the failed rules, in rule order."""
    contract = compiled(contract_name)
    head = [INVALID_UTF8.reason_code] if invalid_bytes else []
    text = payload[1:] if payload is not None and payload.startswith(json_payload.BOM) else payload
    try:
        value, _ = _first_value(text) if text is not None else (None, 0)
    except ValueError:
        text = None
    if text is None:
        return dict.fromkeys(contract.fields), [*head, MALFORMED_JSON.reason_code]
    if not isinstance(value, dict):  # parse_json refuses a value holding a repeated key or an unpaired surrogate
        return dict.fromkeys(contract.fields), [*head, (NOT_AN_OBJECT if _clean(value) else MALFORMED_JSON).reason_code]
    # what the cheap look cannot clear goes to the strict reading, which names the problem
    problem = (DUPLICATE_KEY.reason_code if type(value) is _Repeated else None) if _flat_object(text) else json_payload.payload_problem(text)
    codes = [*head, problem] if problem is not None else head
    try:
        values = contract.check_all(value, codes)
    except _Unbuildable:
        return dict.fromkeys(contract.fields), [*head, MALFORMED_JSON.reason_code]
    return values, codes


# ---- the reference and timeliness rules of check_batch ---------------------------------------------------


@dataclass
class CheckedRecord:
    """One event after every rule of check_batch: its typed contract values, the reference lookups, its
    reason codes (empty when valid: contract codes, then rejecting codes) and warnings (valid records only)."""

    values: dict[str, Any]
    event_date: dt.date | None
    fx_rate_to_base: float | None
    fx_rate_date: dt.date | None
    reason_codes: list[str]
    dq_warnings: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return bool(self.reason_codes)


def check_record(
    payload: str | None,
    delivery_date: dt.date,
    lateness_days: int,
    account_known: Callable[[str], bool],
    fx_rate: Callable[[str, dt.date], tuple[float, dt.date] | None],
    merchant_known: Callable[[str], bool],
    invalid_bytes: bool = False,
) -> CheckedRecord:
    """pipeline.check_batch for one event delivered on `delivery_date`: the contract, then the rejecting rules
    (quality.rejecting_rule_exprs, only where the contract passed) and the flagging rules (valid records)."""
    values, contract_codes = validate_payload(payload, invalid_bytes)
    event_time, currency = values["event_time"], values["currency"]
    event_date = event_time.date() if event_time is not None else None
    rate = fx_rate(currency, event_date) if currency is not None and event_date is not None else None
    rejecting = []
    if not contract_codes:
        if not account_known(values["account_id"]):
            rejecting.append(UNKNOWN_ACCOUNT.reason_code)
        if rate is None:
            rejecting.append(NO_FX_RATE.reason_code)
        if event_date is not None and event_date > delivery_date:
            rejecting.append(FUTURE_EVENT.reason_code)
        if event_date is not None and event_date < delivery_date - dt.timedelta(days=lateness_days):
            rejecting.append(TOO_LATE.reason_code)
    reasons = contract_codes + rejecting
    warnings = []
    if not reasons:
        if values["channel"] in _LOCATED_CHANNELS and (values["latitude"] is None or values["longitude"] is None):
            warnings.append(MISSING_LOCATION.reason_code)
        if values["merchant_id"] is not None and not merchant_known(values["merchant_id"]):
            warnings.append(UNKNOWN_MERCHANT.reason_code)
    fx_rate_to_base, fx_rate_date = rate if rate is not None else (None, None)
    return CheckedRecord(values, event_date, fx_rate_to_base, fx_rate_date, reasons, warnings)
