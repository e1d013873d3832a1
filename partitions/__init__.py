"""The partition definitions of every table, defined once.

Daily partitions are UTC calendar days (the `event_date` column of every Delta table); today's
partition exists so the streaming job can report into it. Monthly partitions serve monthly
regulatory snapshots.
"""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition

PARTITIONS_START = "2025-01-01"

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")


def partition_date(partition_key: str) -> dt.date:
    """The calendar day of a daily partition key ('YYYY-MM-DD')."""
    return dt.date.fromisoformat(partition_key)


def yesterday_utc() -> str:
    """The partition key of yesterday in UTC: what the daily schedule and the demo materialise."""
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def day_literals(partition_keys) -> list:
    """Spark date literals of daily partition keys, for `isin` filters on a date partition column."""
    from pyspark.sql import functions as F

    return [F.lit(k).cast("date") for k in partition_keys]
