"""The partition definitions of every table, defined once.

Daily partitions are UTC calendar days (the `event_date` column of every Delta table); today's
partition exists so the streaming job can report into it. Monthly partitions serve monthly
regulatory snapshots. The first day is a deployment setting, PARTITIONS_START_DATE (an ISO date,
default 2025-01-01), read once when this module is imported: a history older than that can only be
onboarded after moving it earlier. The monthly partitions start at that day's month.
"""

from __future__ import annotations

import datetime as dt
import os
import re

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition

PARTITIONS_START_ENV = "PARTITIONS_START_DATE"
DEFAULT_PARTITIONS_START = "2025-01-01"


def partitions_start(setting: str | None = None) -> str:
    """The first daily partition key: the setting (default: PARTITIONS_START_DATE, else 2025-01-01), checked."""
    value = (os.environ.get(PARTITIONS_START_ENV, "") if setting is None else setting).strip() or DEFAULT_PARTITIONS_START
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{PARTITIONS_START_ENV} must be an ISO date YYYY-MM-DD (e.g. {DEFAULT_PARTITIONS_START}), not {value!r}") from None


def build_partitions(start: str) -> tuple[DailyPartitionsDefinition, MonthlyPartitionsDefinition]:
    """The daily partitions from `start` (UTC days, through today) and the monthly ones from its month."""
    month = dt.date.fromisoformat(start).replace(day=1).isoformat()
    return DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1), MonthlyPartitionsDefinition(start_date=month, timezone="UTC")


PARTITIONS_START = partitions_start()
daily_partitions, monthly_partitions = build_partitions(PARTITIONS_START)


def yesterday_utc() -> str:
    """The partition key of yesterday in UTC: what the daily schedule and the demo materialise."""
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
