#!/usr/bin/env bash
# Command 2 of the README: install everything, then run the test suite (real Spark + Delta).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
bash scripts/chromium.sh
export SPARK_MASTER="${SPARK_MASTER:-local[2]}"
# two workers (pytest-xdist), a test file per worker at a time: the suite waits on brokers, subprocesses and
# Dagster daemons much of the time, and the session lakes are built once behind a file lock (tests/conftest.py)
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
