"""Identifier formats per deployment: the patterns of account_id and merchant_id.

The contracts pin `^ACC[0-9]{8}$` and `^MER[0-9]{6}$`. A deployment whose identifiers look otherwise sets
ACCOUNT_ID_PATTERN / MERCHANT_ID_PATTERN; `contracts.load_contract` and `contracts.json_validator` put
the pattern on every contract property of that name that declares one, so Spark validation (Java
regexes), the DQ rules, pandera and jsonschema (Python `re`) all check the same thing.

Both engines must read a pattern the same way, so a setting is held to a small subset, checked here:
ASCII; anchored (`^` first, `$` last, nowhere else, and no `|` outside a group: `^(A|B)$`); literals,
character classes `[...]` (no nested `[`, no `&&`), groups `(...)`, `(?:...)` and lookaheads `(?=...)`,
`(?!...)`; quantifiers `* + ? {n} {n,} {n,m}` (lazy `?` allowed, possessive `+` not); a backslash only
before punctuation (`\\-`, `\\.`). Not allowed: `.` (the engines differ on line breaks: write a class),
`\\d \\w \\s \\b` and other letter escapes (Python's match Unicode digits and letters, Java's ASCII only:
write `[0-9]`), lookbehind, named and atomic groups, inline flags.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping

ID_PATTERN_SETTINGS = {"account_id": "ACCOUNT_ID_PATTERN", "merchant_id": "MERCHANT_ID_PATTERN"}
MAX_PATTERN_LENGTH = 200
_QUANTIFIER = re.compile(r"\{[0-9]+(,[0-9]*)?\}")


def configured_id_patterns(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """{field: pattern} of the identifier settings that are set (environment by default), each checked."""
    env = os.environ if environ is None else environ
    return {field: check_id_pattern(name, env[name].strip()) for field, name in ID_PATTERN_SETTINGS.items() if env.get(name, "").strip()}


def check_id_pattern(setting: str, pattern: str) -> str:
    """The pattern if Python and Java read it the same way (the subset above); else ValueError saying why."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"{setting}={pattern!r} {why} (an identifier pattern is an anchored regular expression in the subset described in contracts/id_patterns.py)")

    if len(pattern) > MAX_PATTERN_LENGTH or not pattern.isascii():
        raise refuse(f"must be ASCII and at most {MAX_PATTERN_LENGTH} characters")
    if len(pattern) < 2 or not pattern.startswith("^") or not pattern.endswith("$") or pattern.endswith("\\$"):
        raise refuse("must be anchored: start with ^ and end with $")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "possible set intersection": ambiguous already to Python
            re.compile(pattern)
    except (re.error, Warning) as exc:
        raise refuse(f"does not compile cleanly as a Python regular expression ({exc})") from None
    body, i, depth, in_class = pattern[1:-1], 0, 0, False
    while i < len(body):
        c, ahead = body[i], body[i + 1 : i + 3]
        if c == "\\":
            if not ahead or ahead[0].isalnum():
                raise refuse(f"uses \\{ahead[:1]}: a backslash may only escape punctuation (write [0-9] for \\d)")
            i += 2
            continue
        if in_class:
            if c == "[" or body.startswith("&&", i):
                raise refuse("nests [ or && in a character class (Java reads them as set operations)")
            in_class = c != "]"
            i += 1
            continue
        quantified = False
        if c == "[":
            in_class = True
            i += 2 if ahead.startswith("^") else 1
            if body[i : i + 1] == "]":
                raise refuse("starts a character class with ]: escape it as \\]")
            continue
        if c in "^$":
            raise refuse("has ^ or $ inside: only the first ^ and the last $ anchor it")
        if c == ".":
            raise refuse("uses '.': Python and Java differ on which line breaks it matches; write a character class")
        if c == "|" and depth == 0:
            raise refuse("has | outside a group: write ^(A|B)$ so every alternative is anchored")
        if c == "(":
            depth += 1
            if ahead.startswith("?"):
                if ahead not in ("?:", "?=", "?!"):
                    raise refuse("uses a group kind other than (?:...), (?=...) and (?!...) (no lookbehind, named or atomic groups, inline flags)")
                i += 2
        elif c == ")":
            depth -= 1
        elif c == "{":
            match = _QUANTIFIER.match(body, i)
            if not match:
                raise refuse("has a { that is not a quantifier {n}, {n,} or {n,m}: escape it as \\{")
            i, quantified = match.end() - 1, True
        quantified = quantified or c in "*+?"
        if quantified and body[i + 1 : i + 2] == "+":
            raise refuse("uses a possessive quantifier (*+, ++, ?+, {n}+)")
        i += 1
    return pattern


def with_id_patterns(schema: dict, patterns: Mapping[str, str]) -> dict:
    """The schema with `patterns` on its properties of those names that declare a pattern (changed in place)."""
    for field, pattern in patterns.items():
        prop = schema.get("properties", {}).get(field)
        if isinstance(prop, dict) and "pattern" in prop:
            prop["pattern"] = pattern
    return schema
