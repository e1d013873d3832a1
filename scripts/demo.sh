#!/usr/bin/env bash
# Command 1 of the README: install everything, generate DAYS days of synthetic deliveries ending
# yesterday (UTC), then run the platform end to end into a local Dagster instance, MLflow (SQLite)
# and Delta lake: the daily ingest (reference data -> bronze -> silver / DLQ / dq_results), the
# confirmed outcomes and training features, the risk model (trained, logged to MLflow, registered
# as challenger, promoted to champion by a named approver), then risk_scores_gold and
# anomaly_alerts for every day, reconciliation and snapshots, and monitoring (drift, challenger, SLOs)
# for the last day, with all asset checks, then investigators' decisions and the serving layer (scripts/demo.py:
# one process, one line per step; the engines' logs go to $DAGSTER_HOME/demo.log). Prints what it produced.
#   EVENTS=20000 (events per day), DAYS=10, DAY=YYYY-MM-DD (last day), SEED=42, LAKE_ROOT, DAGSTER_HOME, MLFLOW_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

source scripts/env.sh
DAY="${DAY:-$(.venv/bin/python -c 'from partitions import yesterday_utc; print(yesterday_utc())')}"
DAYS="${DAYS:-10}"
START="$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$DAY') - d.timedelta(days=$DAYS - 1))")"

echo "==> generating synthetic deliveries for $START...$DAY (${EVENTS:-20000} events/day) under $LAKE_ROOT/landing"
.venv/bin/compliance-synth --landing-root "$LAKE_ROOT/landing" --start "$START" --days "$DAYS" \
  --events-per-day "${EVENTS:-20000}" --seed "${SEED:-42}"

echo "==> running the platform end to end in one process (one Spark session); each step is a run in the Dagster instance"
.venv/bin/python scripts/demo.py "$START" "$DAY" --log "$DAGSTER_HOME/demo.log"
