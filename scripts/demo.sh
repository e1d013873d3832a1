#!/usr/bin/env bash
# Command 1 of the README: install everything, generate two days of synthetic deliveries
# (the day before yesterday and yesterday, UTC) and materialise the daily ingest for both
# (reference data -> bronze -> silver / DLQ / dq_results, with all asset checks) into a local
# Dagster instance, then print where the results are and how to open the UI.
#   EVENTS=50000 (events per day), DAY=YYYY-MM-DD (last day), SEED=42, LAKE_ROOT, DAGSTER_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

source scripts/env.sh
DAY="${DAY:-$(.venv/bin/python -c 'from partitions import yesterday_utc; print(yesterday_utc())')}"
START="$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$DAY') - d.timedelta(days=1))")"

echo "==> generating synthetic deliveries for $START and $DAY (${EVENTS:-50000} events/day) under $LAKE_ROOT/landing"
.venv/bin/compliance-synth --landing-root "$LAKE_ROOT/landing" --start "$START" --days 2 \
  --events-per-day "${EVENTS:-50000}" --seed "${SEED:-42}"

echo "==> materialising the daily ingest for $START...$DAY (one run, one Spark session)"
.venv/bin/dagster asset materialize -m compliance_assets.definitions \
  --select 'group:reference_data,group:ingest' --partition-range "$START...$DAY"

.venv/bin/python scripts/demo_summary.py "$START" "$DAY"
