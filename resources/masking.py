"""PII masking: the salt of the pseudonymous tokens that replace names and free text in silver, the
masked excerpt that error messages show of input they could not parse, and the masking of an error
message before it leaves the platform (a webhook)."""

from __future__ import annotations

import os
import re

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

LOCAL_DEV_SALT = "local-development-salt"


class PiiMaskingResource(ConfigurableResource):
    """Holds the masking salt; in production it is injected from Key Vault as PII_HASH_SALT."""

    salt: str = Field(description="Secret salt for PII tokens (PII_HASH_SALT).")

    def salt_value(self) -> str:
        """The salt outside a Dagster run too (inside one, `salt` is already resolved from its variable)."""
        return self.salt.get_value() if isinstance(self.salt, EnvVar) else self.salt


def masking_from_env() -> PiiMaskingResource:
    """PII_HASH_SALT through dg.EnvVar (the stored run configuration names the variable, never the salt); the
    development salt when it is unset (the local profile only: the Azure profile requires it)."""
    return PiiMaskingResource(salt=EnvVar("PII_HASH_SALT") if os.getenv("PII_HASH_SALT") else LOCAL_DEV_SALT)


EXCERPT_CHARS = 40


def masked_excerpt(text: str | bytes | None, limit: int = EXCERPT_CHARS) -> str:
    """A short, masked excerpt of input that could not be parsed, for error messages and check metadata.

    Letters become x / X and digits 9, punctuation and spacing stay: the shape of a broken record is
    visible (where the quote or separator went wrong) while a name, account or secret in it is not.
    """
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    head = text[:limit]
    masked = "".join("9" if c.isdigit() else ("X" if c.isupper() else "x") if c.isalpha() else c if c.isprintable() else "?" for c in head)
    return masked + ("…" if len(text) > limit else "")


# What of an error may leave the platform (the alerting sensor's webhook). A run's error can quote its input: a parser's snippet of the line it
# choked on (YAML, CSV, JSON), a record, a secret from a configuration file. The webhook (and the
# alert_notifications table) get the exception class and the message with secrets redacted and record-like or
# quoted content replaced by a short masked excerpt (masked_excerpt: letters x/X, digits 9).
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|client[_-]?secret|token|access[_-]?token|api[_-]?key|access[_-]?key|account[_-]?key|"
    r"sas|sig|signature|credentials?|authorization)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*:[^/\s@]*@")
_URL_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]+")
_LONG_TOKEN = re.compile(r"(?<![\w./-])[A-Za-z0-9+_=-]{40,}(?![\w./-])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_QUOTED = re.compile(r"'([^'\n]{24,})'|\"([^\"\n]{24,})\"")
_CARET_LINE = re.compile(r"^\s*\^+\s*$")
_RECORD_SEPARATORS = (("[;|\t]", 2), (",", 4), (":", 4))  # separators directly followed by a value, and how many make a record


def _record_like(line: str) -> bool:
    return any(len(re.findall(f"{sep}(?=\\S)", line)) >= n for sep, n in _RECORD_SEPARATORS) or bool(re.search(r"\{\s*\"[^\"]+\"\s*:", line))


def mask_error(message: str) -> str:
    """An error message fit for a chat channel: credentials, tokens, e-mail addresses, IBANs and card numbers
    redacted; a parser's snippet line (the one above a `^` marker), record-like lines (values joined by `;`, `|`,
    tabs, or many `,` / `:`, JSON objects) and long quoted values replaced by masked excerpts."""
    lines = message.splitlines()
    out = []
    for i, line in enumerate(lines):
        if _CARET_LINE.match(line):
            continue  # the marker under a snippet: it only points into the (masked) line above
        if i + 1 < len(lines) and _CARET_LINE.match(lines[i + 1]):
            if line.strip():
                out.append(f"[masked: {masked_excerpt(line.strip())}]")
            continue
        if _record_like(line):
            # mask the record-like parts of `prefix: record`, else the whole line
            parts = line.split(": ")
            masked = [f"[masked: {masked_excerpt(part.strip())}]" if _record_like(part) else part for part in parts]
            line = ": ".join(masked) if any(_record_like(part) for part in parts) else f"[masked: {masked_excerpt(line.strip())}]"
        line = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", line)
        line = _AUTH_HEADER.sub(lambda m: f"{m.group(1)} <redacted>", line)
        line = _URL_USERINFO.sub(lambda m: f"{m.group(1)}<redacted>@", line)
        line = _URL_QUERY.sub(lambda m: f"{m.group(1)}?<redacted>", line)
        line = _QUOTED.sub(lambda m: repr(masked_excerpt(m.group(1) or m.group(2))), line)
        for pattern in (_EMAIL, _IBAN, _CARD):
            line = pattern.sub(lambda m: masked_excerpt(m.group(0)), line)
        line = _LONG_TOKEN.sub("<redacted>", line)
        out.append(line)
    return "\n".join(out)
