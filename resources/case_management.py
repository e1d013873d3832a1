"""The case-management system: an HTTP endpoint that opens an investigation case for each HIGH alert
(sensors/case_handoff.py decides what to post and when to retry).

The endpoint URL (CASE_MANAGEMENT_URL) may carry a token in its path or query and the bearer token
(CASE_MANAGEMENT_TOKEN) is a secret: neither is ever logged, put in an error or a table; only the URL's scheme
and host are shown (`safe_target`, shared with the alert notifier). Every attempt carries the header
`Idempotency-Key: <alert_id>`, so the receiver can drop a repeat (e.g. a tick killed after posting, before its
record was written).
"""

import os
from dataclasses import dataclass
from typing import Optional

import requests
from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from resources.notifier import REDACTED, hide_in_http_logs, redact, safe_target, secret_parts

URL_ENV = "CASE_MANAGEMENT_URL"
TOKEN_ENV = "CASE_MANAGEMENT_TOKEN"
TIMEOUT_ENV = "CASE_MANAGEMENT_TIMEOUT_SECONDS"
MAX_ATTEMPTS_ENV = "CASE_MANAGEMENT_MAX_ATTEMPTS"
MAX_ERROR_CHARS = 300
USER_AGENT = "compliance-platform-case-handoff/1"

# how an attempt ended
DELIVERED, RETRYABLE, REJECTED = "DELIVERED", "RETRYABLE", "REJECTED"
RETRYABLE_4XX = (408, 429)  # request timeout, too many requests: the receiver asks to try again later
CASE_ID_KEYS = ("case_id", "caseId", "case_reference", "id")


@dataclass(frozen=True)
class PostResult:
    """One POST's outcome: DELIVERED (2xx), RETRYABLE (no answer, 5xx, 408, 429, 3xx) or REJECTED (another 4xx:
    the receiver refuses this case; sending it again would not help). `error` is redacted, `case_id` is the
    receiver's case reference when its answer names one, `retry_after` the seconds a 429/503 asked to wait."""

    outcome: str
    http_status: Optional[int] = None
    error: Optional[str] = None
    case_id: Optional[str] = None
    retry_after: Optional[float] = None


def classify(status: int) -> str:
    """What an HTTP status means for a case hand-off."""
    if 200 <= status < 300:
        return DELIVERED
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return REJECTED
    return RETRYABLE


def case_reference(response: requests.Response) -> Optional[str]:
    """The case id in a JSON answer (`case_id`, `caseId`, `case_reference` or `id`), else None."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        for key in CASE_ID_KEYS:
            if body.get(key) not in (None, ""):
                return str(body[key])[:200]
    return None


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """A Retry-After header given in seconds (the HTTP-date form is ignored: the backoff applies)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class CaseManagementResource(ConfigurableResource):
    """Posts one JSON case per HIGH alert to the case-management system's endpoint, with the retry policy the
    case hand-off sensor applies to undelivered cases."""

    url: str = Field(
        default="",
        repr=False,
        description=f"Case-management endpoint ({URL_ENV}). May hold a token: never logged, only its scheme and host. Empty: no hand-off.",
    )
    token: str = Field(default="", repr=False, description=f"Bearer token sent as `Authorization: Bearer …` ({TOKEN_ENV}); optional.")
    timeout_seconds: float = Field(default=10.0, description=f"Connect and read timeout of one POST ({TIMEOUT_ENV}).")
    retry_base_seconds: float = Field(default=30.0, description="Delay before the 2nd attempt; doubles after every failed attempt.")
    retry_max_seconds: float = Field(default=1800.0, description="Cap of the delay between attempts.")
    max_attempts: int = Field(default=12, description=f"Attempts before a case is given up (GAVE_UP) ({MAX_ATTEMPTS_ENV}).")

    @property
    def configured(self) -> bool:
        return bool(self.url.strip())

    @property
    def target(self) -> str:
        """Where cases go, safe to log."""
        return safe_target(self.url) if self.configured else "nowhere (no case-management endpoint configured)"

    def redact(self, text: str) -> str:
        """`text` without the endpoint's secret parts or the token."""
        text = redact(text, self.url.strip())
        token = self.token.strip()
        return text.replace(token, REDACTED) if token else text

    def post(self, case: dict, idempotency_key: str) -> PostResult:
        """POST `case` as JSON with `Idempotency-Key: <idempotency_key>`. Never raises: a refused connection, a
        timeout or a non-2xx answer is a RETRYABLE or REJECTED result with a redacted error."""
        url = self.url.strip()
        if not url:
            return PostResult(RETRYABLE, error="no case-management endpoint configured")
        hide_in_http_logs(*secret_parts(url))  # urllib3's DEBUG lines name the request path
        headers = {"Idempotency-Key": idempotency_key, "User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token.strip():
            hide_in_http_logs(self.token.strip())
            headers["Authorization"] = f"Bearer {self.token.strip()}"
        try:
            response = requests.post(url, json=case, headers=headers, timeout=self.timeout_seconds, allow_redirects=False)
        except Exception as exc:  # connection refused, DNS, timeout, TLS, invalid URL: all "try again later"
            return PostResult(RETRYABLE, error=_clip(f"{type(exc).__name__} posting to {self.target}: {self.redact(str(exc))}"))
        outcome = classify(response.status_code)
        if outcome == DELIVERED:
            return PostResult(DELIVERED, response.status_code, case_id=case_reference(response))
        body = self.redact(" ".join((response.text or "").split())[:120])
        return PostResult(
            outcome,
            response.status_code,
            _clip(f"HTTP {response.status_code} from {self.target}" + (f": {body}" if body else "")),
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def case_management_from_env() -> CaseManagementResource:
    """The endpoint and token from CASE_MANAGEMENT_URL / CASE_MANAGEMENT_TOKEN (through dg.EnvVar, so the UI and
    the definitions snapshot show the variables' names, not the secrets); timeout and attempts from
    CASE_MANAGEMENT_TIMEOUT_SECONDS / CASE_MANAGEMENT_MAX_ATTEMPTS. Unset URL: the hand-off sensor skips."""
    return CaseManagementResource(
        url=EnvVar(URL_ENV) if os.getenv(URL_ENV, "").strip() else "",
        token=EnvVar(TOKEN_ENV) if os.getenv(TOKEN_ENV, "").strip() else "",
        timeout_seconds=float(os.getenv(TIMEOUT_ENV) or 10.0),
        max_attempts=int(os.getenv(MAX_ATTEMPTS_ENV) or 12),
    )
