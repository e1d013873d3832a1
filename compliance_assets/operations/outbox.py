"""The outbox: what the sensors that deliver to outside systems share (the operations webhook in
operations/notifications.py, case management in investigations/case_handoff.py). Each sensor supplies what to send
and how to post it; the outbox holds, once: the delivery statuses, the retry policy (exponential backoff,
a receiver's Retry-After, give-up), the per-tick budget, the cursor's JSON with its start-over rule, the
tick's outcome (delivery-log rows, log lines, counts by status). Each sensor appends its delivery log with
`LakeResource.append_rows` (delta-rs: a sensor must not start a JVM)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

DELIVERED, RETRY_SCHEDULED, GAVE_UP, REJECTED = "DELIVERED", "RETRY_SCHEDULED", "GAVE_UP", "REJECTED"
MAX_POSTS_PER_TICK = 50
POST_BUDGET_SECONDS = 30.0  # stop posting after this long in one tick (the sensor call times out at 60 s)
BOOTSTRAP_LOOKBACK_SECONDS = 24 * 3600  # a new (or cleared) cursor: what happened in the last 24 hours only


def retry_delay(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """Seconds to wait after failed attempt number `attempt`: base × 2^(attempt−1), capped at max."""
    if attempt <= 0:
        return 0.0
    return min(max_seconds, base_seconds * 2 ** min(attempt - 1, 60))


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 1800.0
    max_attempts: int = 12

    @classmethod
    def of(cls, resource) -> "RetryPolicy":
        """The policy a delivery resource is configured with (retry_base_seconds, retry_max_seconds, max_attempts)."""
        return cls(resource.retry_base_seconds, resource.retry_max_seconds, resource.max_attempts)

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """After failed attempt `attempt`: the backoff, or longer if the receiver asked so (within the cap)."""
        delay = retry_delay(attempt, self.base_seconds, self.max_seconds)
        return delay if retry_after is None else max(delay, min(retry_after, self.max_seconds))

    def after(self, attempt: int, delivered: bool, at: float, refused: bool = False, retry_after: Optional[float] = None) -> tuple[str, Optional[float]]:
        """The status of attempt number `attempt` and when to try again (None: never): DELIVERED; REJECTED (the
        receiver refused it: not retried); GAVE_UP at the last attempt; else RETRY_SCHEDULED after the delay."""
        if delivered:
            return DELIVERED, None
        if refused:
            return REJECTED, None
        if attempt >= self.max_attempts:
            return GAVE_UP, None
        return RETRY_SCHEDULED, at + self.delay(attempt, retry_after)


class TickBudget:
    """At most `max_posts` posts and `seconds` of posting in one sensor tick."""

    def __init__(self, max_posts: int = MAX_POSTS_PER_TICK, seconds: float = POST_BUDGET_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.max_posts, self.seconds, self.clock = max_posts, seconds, clock
        self.started, self.posts = clock(), 0

    def exhausted(self) -> bool:
        return self.posts >= self.max_posts or self.clock() - self.started > self.seconds

    def spend(self) -> None:
        self.posts += 1


@dataclass
class Outcome:
    """What one tick's deliveries produced: delivery-log rows, log lines (level, message) and counts by status."""

    rows: list[dict] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1

    def counted(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))


class JsonCursor:
    """A sensor cursor kept as JSON. Subclasses are dataclasses with a `since` field and define `from_dict` and
    `to_dict`; a missing or unreadable cursor starts over from `now − BOOTSTRAP_LOOKBACK_SECONDS`."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JsonCursor":
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def parse(cls, raw: Optional[str], now: float):
        try:
            data = json.loads(raw) if raw else None
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return cls.from_dict(data)
        except (ValueError, TypeError, KeyError):
            return cls(since=now - BOOTSTRAP_LOOKBACK_SECONDS)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def when(timestamp: float) -> str:
    """A unix time for log lines, in UTC."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
