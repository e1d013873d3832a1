#!/usr/bin/env bash
# Command 1 of the README: install everything, generate DAYS days of synthetic deliveries ending
# yesterday (UTC), then run the platform end to end into a local Dagster instance, MLflow (SQLite)
# and Delta lake: the daily ingest (reference data -> bronze -> silver / DLQ / dq_results), the
# confirmed outcomes and training features, the risk model (trained, logged to MLflow, registered
# as challenger, promoted to champion by a named approver), then risk_scores_gold and
# anomaly_alerts for every day, reconciliation and snapshots, and monitoring (drift, challenger, SLOs)
# for the last day, with all asset checks. Prints what it produced.
#   EVENTS=20000 (events per day), DAYS=10, DAY=YYYY-MM-DD (last day), SEED=42, LAKE_ROOT, DAGSTER_HOME, MLFLOW_HOME.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

source scripts/env.sh
DAY="${DAY:-$(.venv/bin/python -c 'from partitions import yesterday_utc; print(yesterday_utc())')}"
DAYS="${DAYS:-10}"
START="$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$DAY') - d.timedelta(days=$DAYS - 1))")"
DAGSTER=(.venv/bin/dagster)

echo "==> generating synthetic deliveries for $START...$DAY (${EVENTS:-20000} events/day) under $LAKE_ROOT/landing"
.venv/bin/compliance-synth --landing-root "$LAKE_ROOT/landing" --start "$START" --days "$DAYS" \
  --events-per-day "${EVENTS:-20000}" --seed "${SEED:-42}"

echo "==> daily ingest, confirmed outcomes and training features for $START...$DAY (one run, one Spark session)"
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions \
  --select 'group:reference_data,group:ingest,transaction_outcomes,ml_features_training' --partition-range "$START...$DAY"

echo "==> training the risk model as of $DAY (outcomes decided by then), logged to MLflow at $MLFLOW_TRACKING_URI"
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions --select risk_model --partition "$DAY"

echo "==> promoting the challenger to champion (approver: demo) if it beats the current champion"
cat > "$DAGSTER_HOME/promote_demo.yaml" <<'YAML'
ops: {promote_challenger_op: {config: {approver: "demo (scripts/demo.sh)", reason: "demo run"}}}
YAML
if ! "${DAGSTER[@]}" job execute -m compliance_assets.definitions -j promote_challenger -c "$DAGSTER_HOME/promote_demo.yaml"; then
  # on a re-run the retrained model is no better than the champion, so it stays challenger
  .venv/bin/python -c 'import sys; from resources.mlflow import CHAMPION, registry_from_env; sys.exit(registry_from_env().version_by_alias(CHAMPION) is None)' \
    || { echo "error: promotion failed and there is no champion to score with" >&2; exit 1; }
  echo "    challenger not promoted: scoring with the current champion"
fi

echo "==> scoring every transaction of $START...$DAY with the champion and raising alerts"
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions \
  --select 'risk_scores_gold,anomaly_alerts' --partition-range "$START...$DAY"

echo "==> reconciling every day with the ledger (system-of-record files) and writing the daily regulatory snapshots"
# snapshots are write-once: a re-run of the demo supersedes the earlier versions, saying why (kept in the manifest)
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions \
  --select 'reconciliation_report,reconciliation_breaks,regulatory_snapshots' --partition-range "$START...$DAY" \
  --config-json '{"ops": {"regulatory_snapshots": {"config": {"supersede_reason": "demo re-run (scripts/demo.sh)"}}}}'
echo "==> monitoring $DAY: drift against the model's training data, the challenger's shadow scores and comparison, SLOs"
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions --select 'group:monitoring' --partition "$DAY"

echo "==> investigators' decisions on two of $DAY's alerts through the CLI (one dismissed then confirmed), recorded with alert precision"
read -r A1 A2 < <(.venv/bin/python -c "
from deltalake import DeltaTable
a = DeltaTable('$LAKE_ROOT/tables/anomaly_alerts').to_pandas(columns=['alert_id', 'ingest_date'])
print(*sorted(a.loc[a.ingest_date.astype(str) == '$DAY', 'alert_id'])[:2])")
DISPOSE=(.venv/bin/compliance-dispositions decide --day "$DAY" --investigator demo-analyst)
"${DISPOSE[@]}" "$A1" --decision dismiss --decided-at "$(date -u -d '-10 minutes' +%Y-%m-%dT%H:%M:%SZ)" --note "first look: regular payee"
"${DISPOSE[@]}" "$A1" --decision confirm --decided-at "$(date -u -d '-5 minutes' +%Y-%m-%dT%H:%M:%SZ)" --note "second review: mule pattern"
"${DISPOSE[@]}" "$A2" --decision escalate --note "needs a senior investigator"
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions --select 'alert_dispositions,alert_dispositions_dlq,alert_precision' --partition "$DAY"
.venv/bin/compliance-dispositions history "$A1"

echo "==> serving $DAY: BI tables in the embedded SQL database and the compliance dashboard"
"${DAGSTER[@]}" asset materialize -m compliance_assets.definitions --select 'bi_serving,compliance_dashboard' --partition "$DAY"
.venv/bin/python scripts/demo_summary.py "$START" "$DAY"
