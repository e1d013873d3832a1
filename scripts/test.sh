#!/usr/bin/env bash
# Command 2 of the README: install everything, then run the test suite (real Spark + Delta).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
bash scripts/chromium.sh
export SPARK_MASTER="${SPARK_MASTER:-local[2]}"
exec .venv/bin/python -m pytest "$@"
