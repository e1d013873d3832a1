"""The partitions' first day is a deployment setting (PARTITIONS_START_DATE): checked, and read by the module."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from partitions import DEFAULT_PARTITIONS_START, PARTITIONS_START, build_partitions, daily_partitions, monthly_partitions, partitions_start

REPO = Path(__file__).resolve().parents[1]


def test_the_default_start_is_unchanged():
    assert PARTITIONS_START == DEFAULT_PARTITIONS_START == "2025-01-01"
    assert daily_partitions.get_first_partition_key() == "2025-01-01" and monthly_partitions.get_first_partition_key() == "2025-01-01"


def test_monthly_partitions_start_at_the_start_days_month():
    daily, monthly = build_partitions(partitions_start("2018-04-15"))
    assert daily.get_first_partition_key() == "2018-04-15" and daily.has_partition_key("2018-04-15") and not daily.has_partition_key("2018-04-14")
    assert monthly.get_first_partition_key() == "2018-04-01"


@pytest.mark.parametrize("value", ["2018-4-1", "20180401", "2018-02-30", "01.04.2018", "yesterday"])
def test_a_start_that_is_not_an_iso_date_is_refused_clearly(value):
    with pytest.raises(ValueError, match=f"PARTITIONS_START_DATE must be an ISO date YYYY-MM-DD .*not '{value}'"):
        partitions_start(value)


def test_the_setting_is_read_from_the_environment_at_import():
    code = "from partitions import daily_partitions as d, monthly_partitions as m; print(d.get_first_partition_key(), m.get_first_partition_key())"
    env = {**os.environ, "PARTITIONS_START_DATE": "2018-04-01"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2018-04-01", "2018-04-01"]
    bad = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "PARTITIONS_START_DATE": "2018/04/01"}, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "PARTITIONS_START_DATE must be an ISO date YYYY-MM-DD" in bad.stderr
