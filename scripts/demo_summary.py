"""Print what the demo produced: Delta tables and row counts, DLQ reasons, reconciliation, snapshots, asset-check results."""

import os
import sys
from collections import Counter

from dagster import DagsterInstance
from deltalake import DeltaTable

TABLES = [
    "kyc_profiles", "account_limits", "watchlists", "fx_rates", "merchant_profiles",
    "transactions_bronze", "transactions_silver", "transactions_dlq", "dq_results",
    "transaction_outcomes", "ml_features_training", "risk_scores_gold", "anomaly_alerts", "reconciliation_breaks",
]
RUNS = 8  # ingest, training, promotion, scoring, reconciliation and snapshots, monitoring, decisions, serving


def serving(lake: str, day: str) -> None:
    """What compliance users get for `day`: decisions and precision, the BI database, the dashboard page."""
    import sqlite3

    decisions = DeltaTable(f"{lake}/tables/alert_dispositions").to_pandas()
    print(f"Investigators' decisions: {len(decisions)} recorded (" + ", ".join(f"{d} {n}" for d, n in decisions["decision"].value_counts().items()) + ")")
    precision = DeltaTable(f"{lake}/tables/alert_precision").to_pandas()
    rows = precision[(precision["event_date"].astype(str) == day) & (precision["window"] == "day") & (precision["dimension"] == "scenario")]
    print(f"Alert precision {day}: " + ", ".join(f"{r.value} {r.confirmed}/{r.confirmed + r.dismissed} of {r.alerts}" for r in rows.itertuples()))
    db = f"{lake}/serving/compliance.db"
    with sqlite3.connect(db) as conn:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE partition_day = ?", (day,)).fetchone()[0] for t in ("risk_scores_gold", "anomaly_alerts", "dq_results")}
        views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]
    print(f"BI serving database {db}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()) + f"; views {', '.join(views)}")
    print(f"Compliance dashboard: {os.environ.get('FILE_DROPS_ROOT') or lake + '/drops'}/dashboards/{day}.html  (open it in a browser)")


def main(first: str, last: str, planted: dict[str, str] | None = None) -> None:
    lake = os.environ["LAKE_ROOT"]
    print(f"\nDelta tables under {lake}/tables (rows for {first}..{last}):")
    for table in TABLES:
        path = f"{lake}/tables/{table}"
        df = DeltaTable(path).to_pandas(columns=["event_date"] if table != "transactions_dlq" else ["event_date", "reason_codes"])
        days = df["event_date"].astype(str)
        in_range = df[(days >= first) & (days <= last)]
        print(f"  {table:<22} {len(in_range):>9,} rows   version {DeltaTable(path).version()}")
        if table == "transactions_dlq":
            reasons = Counter(code for codes in in_range["reason_codes"] for code in codes)
            print("    DLQ reasons: " + ", ".join(f"{code} {n}" for code, n in reasons.most_common()))

    gold = DeltaTable(f"{lake}/tables/risk_scores_gold").to_pandas(columns=["ingest_date", "risk_band", "model_name", "model_version"])
    gold = gold[(gold["ingest_date"].astype(str) >= first) & (gold["ingest_date"].astype(str) <= last)]
    print("\nRisk bands: " + ", ".join(f"{b} {n:,}" for b, n in gold["risk_band"].value_counts().items()))
    print("Scored by: " + ", ".join(f"{m} v{v} ({n:,} rows)" for (m, v), n in gold.groupby(["model_name", "model_version"]).size().items()))
    alerts = DeltaTable(f"{lake}/tables/anomaly_alerts").to_pandas(columns=["ingest_date", "reasons"])
    alerts = alerts[(alerts["ingest_date"].astype(str) >= first) & (alerts["ingest_date"].astype(str) <= last)]
    reasons = Counter(code.split(":")[0] for codes in alerts["reasons"] for code in codes)
    print("Alert reasons: " + ", ".join(f"{code} {n}" for code, n in reasons.most_common()))
    audit = DeltaTable(f"{lake}/tables/model_audit").to_pandas().sort_values("decided_at")
    print("Model decisions (model_audit): " + "; ".join(f"{r.action} v{r.to_version} by {r.approver}" for r in audit.itertuples()))
    breaks = DeltaTable(f"{lake}/tables/reconciliation_breaks").to_pandas(columns=["event_date", "category", "explained"])
    breaks = breaks[(breaks["event_date"].astype(str) >= first) & (breaks["event_date"].astype(str) <= last)]
    print("Reconciliation with the ledger: " + ", ".join(f"{c} {n}{'' if e else ' (unexplained)'}" for (c, e), n in breaks.groupby(["category", "explained"]).size().items()))
    print("    (MISSING = booked in the ledger but never delivered: the generator plants these, so reconciliation_differences_explained fails as it")
    print("    should; reconciliation_before_deadline fails too when past days are reconciled after their T+1 06:00 UTC deadline, as here)")
    manifest = DeltaTable(f"{lake}/tables/regulatory_snapshot_manifest").to_pandas()
    manifest = manifest[(manifest["snapshot_table"] == "regulatory_snapshots") & (manifest["period"] >= first) & (manifest["period"] <= last)]
    latest = manifest.sort_values("snapshot_version").groupby("period").tail(1)
    print(f"Regulatory snapshots: {len(latest)} days, versions {sorted(set(latest['snapshot_version']))}, e.g. {last}: "
          + ", ".join(f"{r.row_count:,} rows, sha256 {r.sha256[:16]}…" for r in latest[latest["period"] == last].itertuples()))
    drift = DeltaTable(f"{lake}/tables/model_drift").to_pandas()
    drift = drift[drift["event_date"].astype(str) == last]
    psi = drift[drift["metric"] == "FEATURE_PSI"].sort_values("value", ascending=False)
    print(f"Model drift {last}: features by status " + ", ".join(f"{s} {n}" for s, n in psi["status"].value_counts().items())
          + "; highest PSI " + ", ".join(f"{r.name} {r.value:.3f}" for r in psi.head(4).itertuples())
          + "; " + ", ".join(f"{r.metric} {r.value:.4f} {r.status}" for r in drift[drift["metric"] != "FEATURE_PSI"].itertuples()))
    print("    (the synthetic lake starts on the first demo day, so the 7- and 30-day window features - account counts and")
    print("    sums, merchant fraud counts - ramp up over the training window and the last day sits above it: expect PSI")
    print("    failures on those, not on amounts; is_weekend is EXEMPT: a day is all weekend or all weekday)")
    slo = DeltaTable(f"{lake}/tables/slo_status").to_pandas()
    print(f"SLOs {last}: " + ", ".join(f"{r.slo} {r.status}" for r in slo[slo["event_date"].astype(str) == last].itertuples())
          + "  (NO_DATA latency: the demo scores in batch; reconciliation is BREACHED when the demo runs after 06:00 UTC)")
    serving(lake, last)
    print(f"MLflow: {os.environ['MLFLOW_TRACKING_URI']}  (UI: .venv/bin/mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']})")

    instance = DagsterInstance.get()
    print(f"\nAsset checks of the demo's runs (Dagster instance at {os.environ['DAGSTER_HOME']}):")
    runs = list(reversed(instance.get_runs(limit=RUNS)))
    for run in runs:
        for event in instance.all_logs(run.run_id):
            data = event.dagster_event.event_specific_data if event.dagster_event else None
            if event.dagster_event and event.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION":
                state = "passed" if data.passed else f"FAILED ({data.severity.value})" + (f"  {planted[data.check_name]}" if data.check_name in (planted or {}) else "")
                print(f"  {data.asset_key.to_user_string():<22} {data.check_name:<36} {data.partition or '':<10} {state}")
    for run in runs:
        print(f"Run {run.run_id} ({run.job_name}): {run.status.value}")
    print("\nOpen the Dagster UI:  bash scripts/ui.sh   (then http://127.0.0.1:3000)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
