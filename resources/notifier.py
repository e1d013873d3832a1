"""Outgoing alerts: one incoming webhook (Slack or Microsoft Teams) that receives a message for every failed
asset check and every failed run (sensors/alerting.py decides what to send and when to retry).

The webhook URL (ALERT_WEBHOOK_URL) usually carries a secret token in its path, so it is never logged, never
put in a message, an error or a table: only its scheme and host are shown (`safe_target`). Without it the
alerting sensor logs alerts instead of posting them.
"""

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import requests
from dagster import ConfigurableResource, EnvVar
from pydantic import Field

WEBHOOK_ENV = "ALERT_WEBHOOK_URL"
BASE_URL_ENV = "DAGSTER_BASE_URL"
REDACTED = "<redacted>"
MAX_ERROR_CHARS = 300

CHECK_KIND, RUN_KIND = "asset_check", "run_failure"


@dataclass(frozen=True)
class Alert:
    """One failure to notify: a failed asset-check evaluation or a failed run."""

    notification_id: str
    kind: str  # CHECK_KIND or RUN_KIND
    run_id: str
    job: Optional[str]
    occurred_at: float  # unix seconds of the Dagster event
    asset: Optional[str] = None  # the checked asset; for a run failure, the assets the run selected
    partition: Optional[str] = None
    check: Optional[str] = None
    severity: Optional[str] = None  # WARN / ERROR (a run failure is ERROR)
    summary: Optional[str] = None  # the check's description and metadata, or the run's error


def safe_target(url: str) -> str:
    """scheme://host[:port] of a URL: what may be logged about the webhook."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return "<unparseable webhook URL>"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


MIN_SECRET_PIECE = 8  # a path segment or query value at least this long is a secret on its own


def secret_parts(url: str) -> list[str]:
    """The pieces of a webhook URL that must never appear anywhere: the URL itself, its path (where Slack and
    Teams put the token), query, fragment and credentials, the last path segment and the query values (the
    token on its own), each also percent-encoded (urllib.parse.quote / quote_plus, as a URL ends up inside
    another URL or a form body) and decoded. Longest first, so replacements do not overlap."""
    url = url.strip()
    if not url:
        return []
    parts = urlsplit(url)
    candidates = [url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path, parts.query, parts.fragment]
    if parts.username or parts.password:
        candidates.append(parts.netloc.rsplit("@", 1)[0])
    pieces = [parts.path.rstrip("/").rsplit("/", 1)[-1], *(value for _, value in parse_qsl(parts.query, keep_blank_values=True))]
    candidates += [p for p in pieces if len(p) >= MIN_SECRET_PIECE]
    forms = set()
    for c in candidates:
        forms.update((c, quote(c), quote(c, safe=""), quote_plus(c), unquote(c)))
    return sorted({c for c in forms if c and c != "/"}, key=len, reverse=True)


def redact(text: str, url: str) -> str:
    """`text` without any of the webhook's secret parts (percent-encodings matched in upper or lower case)."""
    for part in secret_parts(url):
        text = re.sub(re.escape(part), REDACTED, text, flags=re.IGNORECASE) if "%" in part else text.replace(part, REDACTED)
    return text


def redact_payload(value, url: str):
    """A JSON-shaped payload with every string redacted (`redact`)."""
    if isinstance(value, str):
        return redact(value, url)
    if isinstance(value, dict):
        return {k: redact_payload(v, url) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_payload(v, url) for v in value]
    return value


class _RedactWebhookSecrets(logging.Filter):
    """urllib3 logs request paths at DEBUG level (e.g. `"POST /hooks/<token> HTTP/1.1" 200`) and retry
    details with the URL: scrub the webhook's secret parts from those records before any handler sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in sorted(self.secrets, key=len, reverse=True):
                    message = message.replace(secret, REDACTED)
                record.msg, record.args = message, None
        return True


_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.response", "urllib3.util.retry")
_redaction = _RedactWebhookSecrets()
for _name in _URLLIB3_LOGGERS:
    logging.getLogger(_name).addFilter(_redaction)


def hide_in_http_logs(*secrets: str) -> None:
    """Scrub these secrets (a URL's secret parts, a token) from urllib3's log records from now on."""
    _redaction.secrets.update(s for s in secrets if s)


class NotifierResource(ConfigurableResource):
    """Posts alert payloads to one incoming webhook (Slack or Teams), with the retry policy the alerting sensor
    applies to undelivered alerts."""

    webhook_url: str = Field(
        default="",
        repr=False,
        description=(
            f"Incoming-webhook URL ({WEBHOOK_ENV}). Holds a secret token: never logged, only its scheme and host. "
            "Empty: alerts are logged only."
        ),
    )
    timeout_seconds: float = Field(default=5.0, description="Connect and read timeout of one POST.")
    retry_base_seconds: float = Field(default=30.0, description="Delay before the 2nd attempt; doubles after every failed attempt.")
    retry_max_seconds: float = Field(default=1800.0, description="Cap of the delay between attempts.")
    max_attempts: int = Field(default=12, description="Attempts before an alert is given up (GAVE_UP).")
    dagster_base_url: str = Field(default="", description=f"Dagster UI address ({BASE_URL_ENV}), for a link to the run in each message.")

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url.strip())

    @property
    def target(self) -> str:
        """Where alerts go, safe to log."""
        return safe_target(self.webhook_url) if self.configured else "nowhere (no webhook configured)"

    def post(self, payload: dict) -> tuple[bool, Optional[int], Optional[str]]:
        """POST `payload` as JSON. Returns (delivered, HTTP status, error); never raises: a refused connection,
        a timeout or a non-2xx answer is (False, status or None, a redacted description)."""
        url = self.webhook_url.strip()
        if not url:
            return False, None, "no webhook configured"
        hide_in_http_logs(*secret_parts(url))
        payload = redact_payload(payload, url)  # an error message may quote the URL (or its encoded token)
        try:
            response = requests.post(url, json=payload, timeout=self.timeout_seconds, allow_redirects=False)
        except Exception as exc:  # connection refused, DNS, timeout, TLS, invalid URL: all "not delivered"
            return False, None, _clip(f"{type(exc).__name__} posting to {self.target}: {redact(str(exc), url)}")
        if 200 <= response.status_code < 300:
            return True, response.status_code, None
        body = redact(" ".join((response.text or "").split())[:120], url)
        return False, response.status_code, _clip(f"HTTP {response.status_code} from {self.target}" + (f": {body}" if body else ""))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def notifier_from_env() -> NotifierResource:
    """The notifier of the local profile: the webhook from ALERT_WEBHOOK_URL (through dg.EnvVar, so the UI and
    the definitions snapshot show the variable's name, not the secret), the UI link from DAGSTER_BASE_URL."""
    return NotifierResource(
        webhook_url=EnvVar(WEBHOOK_ENV) if os.getenv(WEBHOOK_ENV, "").strip() else "",
        dagster_base_url=os.getenv(BASE_URL_ENV, ""),
    )


# The message.

def _escape(text: str) -> str:
    """Slack's three control characters (Teams renders the entities as the characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_url(dagster_base_url: str, run_id: str) -> Optional[str]:
    return f"{dagster_base_url.rstrip('/')}/runs/{run_id}" if dagster_base_url.strip() else None


def alert_text(alert: Alert, dagster_base_url: str = "") -> str:
    """One paragraph for a chat channel, e.g. ":rotating_light: Asset check FAILED (ERROR): `risk_scores_gold`
    partition `2026-04-03` check `scores_in_unit_interval` — run 1a2b…"."""
    link = run_url(dagster_base_url, alert.run_id)
    run = f"run {alert.run_id}" + (f" {link}" if link else "")
    partition = f" partition `{_escape(alert.partition)}`" if alert.partition else ""
    if alert.kind == CHECK_KIND:
        icon = ":warning:" if alert.severity == "WARN" else ":rotating_light:"
        asset, check = _escape(alert.asset or "?"), _escape(alert.check or "?")
        text = f"{icon} Asset check FAILED ({alert.severity}): `{asset}`{partition} check `{check}` — {run}"
    else:
        assets = f" assets `{_escape(alert.asset)}`" if alert.asset else ""
        text = f":rotating_light: Run FAILED: job `{_escape(alert.job or '?')}`{partition}{assets} — {run}"
    if alert.summary:
        text += f". {_escape(alert.summary)}"
    return text


def alert_payload(alert: Alert, dagster_base_url: str = "") -> dict:
    """The webhook body: `text` for Slack and Teams incoming webhooks (both ignore other keys) and the same
    facts as a structured object for any other receiver."""
    details = {
        "kind": alert.kind,
        "asset": alert.asset,
        "partition": alert.partition,
        "check": alert.check,
        "severity": alert.severity,
        "run_id": alert.run_id,
        "job": alert.job,
        ("description" if alert.kind == CHECK_KIND else "error"): alert.summary,
        "occurred_at": _iso(alert.occurred_at),
        "notification_id": alert.notification_id,
        "run_url": run_url(dagster_base_url, alert.run_id),
    }
    return {"text": alert_text(alert, dagster_base_url), "compliance_alert": details}
