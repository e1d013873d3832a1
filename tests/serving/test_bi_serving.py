"""BI serving on a copy of the session's champion lake with two days scored, alerted, reconciled and snapshotted,
published to the embedded SQLite file and to a real PostgreSQL server (scripts/postgres.sh, TLS over TCP).

The serving rows are compared with the Delta rows read independently (delta-rs into pandas, channel and
country joined from silver with Spark), cell by cell on the tables' keys."""

import dataclasses
import datetime as dt
import decimal
import json
import math
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, Definitions, EnvVar, build_op_context, materialize
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from sqlalchemy import text

from compliance_assets.reporting.reconciliation import reconcile_with_ledger
from compliance_assets.reporting.snapshots import regulatory_snapshots
from compliance_assets.serving.bi_serving import bi_serving, bi_serving_matches_delta
from compliance_assets.serving.bi_tables import AUDIT_COLUMNS, VIEWS, alerts, risk_scores
from compliance_assets.serving.publish import publish_day
from compliance_assets.serving.delta_sources import SOURCES, DeltaReader
from resources.lake import LakeResource
from resources.serving import URL_ENV, ServingDatabaseResource, serving_from_env
from tests.conftest import make_resources
from tests.helpers import SCORED_DAYS, check_results, free_port, read_delta

REPO = Path(__file__).resolve().parents[2]
DAYS = SCORED_DAYS
DAY = DAYS[0]
ASSETS = [bi_serving, bi_serving_matches_delta]
CHECK = ("bi_serving", "bi_serving_matches_delta")


def run(lake, assets, partition_key=None, first=None, last=None, resources=None, **kwargs):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else {}
    return materialize(assets, partition_key=partition_key, resources={**make_resources(lake), **(resources or {})}, instance=DagsterInstance.ephemeral(), tags=tags, **kwargs)


@pytest.fixture(scope="module")
def lake(scored_lake, tmp_path_factory):
    root = shutil.copytree(scored_lake, tmp_path_factory.mktemp("serving") / "lake")  # gold and alerts of DAYS
    assert run(root, [reconcile_with_ledger, regulatory_snapshots], first=DAYS[0], last=DAYS[-1], raise_on_error=True).success
    return root


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL cluster from scripts/postgres.sh on a free port with its own role and database (data under
    /tmp: the server runs as the `postgres` OS user, which cannot enter pytest's root-only folders)."""
    home = Path(tempfile.mkdtemp(prefix="bi-pg-"))
    env = {**os.environ, "PG_HOME": str(home), "PG_PORT": str(free_port()), "PG_DB": "serving_test", "PG_USER": "serving_test", "PG_PASSWORD": secrets.token_urlsafe(12)}

    def script(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), command], env=env, capture_output=True, text=True, timeout=900)

    try:
        started = script("start")
        assert started.returncode == 0, f"scripts/postgres.sh start failed:\n{started.stderr}"
        yield f"postgresql+psycopg2://{env['PG_USER']}:{env['PG_PASSWORD']}@127.0.0.1:{env['PG_PORT']}/{env['PG_DB']}?sslmode=require"
    finally:
        stopped = script("stop")
        shutil.rmtree(home, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture(params=["sqlite", "postgres"])
def serving_db(request, tmp_path) -> ServingDatabaseResource:
    if request.param == "sqlite":
        return serving_from_env(str(tmp_path / "bi_lake"))  # the embedded default: <lake>/serving/compliance.db
    return ServingDatabaseResource(url=request.getfixturevalue("postgres_url"))


def read_sql(db: ServingDatabaseResource, sql: str, **params) -> pd.DataFrame:
    engine = db.create_engine()
    try:
        with engine.connect() as conn:
            return pd.read_sql(text(sql), conn, params=params)
    finally:
        engine.dispose()


def served(db: ServingDatabaseResource, table: str, day: str = DAY) -> pd.DataFrame:
    engine = db.create_engine()
    try:
        with engine.connect() as conn:
            day_value = dt.date.fromisoformat(day) if engine.dialect.name != "sqlite" else day
            return pd.read_sql(text(f"SELECT * FROM {table} WHERE partition_day = :d"), conn, params={"d": day_value})
    finally:
        engine.dispose()


# Canonical cell values, so a SQLite text timestamp, a PostgreSQL datetime and a delta-rs UTC timestamp compare equal.

def canon(value, kind: str):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if kind == "time":
        ts = pd.Timestamp(value)
        return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).isoformat()
    if kind == "date":
        return str(pd.Timestamp(value).date())
    if kind == "money":
        return f"{decimal.Decimal(str(value)):.2f}"
    if kind == "json":  # serving side: JSON text
        return canon_list(json.loads(value))
    if kind == "list":  # Delta side: a numpy array of values or dicts
        return canon_list(list(value))
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def canon_list(items) -> str:
    def cell(v):
        if isinstance(v, dict):
            return {k: cell(x) for k, x in v.items()}
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)  # JSON has one number type: 954 and 954.0 are the same value
        return v

    return json.dumps([cell(v) for v in items], sort_keys=True)


def frame(df: pd.DataFrame, kinds: dict[str, str], key: list[str]) -> list[tuple]:
    cols = list(kinds)
    rows = [tuple(canon(r[c], kinds[c]) for c in cols) for r in df[cols].to_dict("records")]
    idx = [cols.index(k) for k in key]
    return sorted(rows, key=lambda r: tuple(str(r[i]) for i in idx))


GOLD_KINDS = {
    "transaction_id": "str", "event_time": "time", "account_id": "str", "risk_score": "float", "risk_band": "str", "top_features": "json",
    "model_name": "str", "model_version": "str", "model_run_id": "str", "pipeline_run_id": "str", "dq_status": "str", "scored_at": "time",
    "latency_ms": "float", "event_date": "date", "ingest_date": "date",
}
ALERT_KINDS = {
    "alert_id": "str", "transaction_id": "str", "event_time": "time", "account_id": "str", "merchant_id": "str", "amount_base": "money",
    "primary_reason": "str", "reasons": "json", "risk_score": "float", "risk_band": "str", "top_features": "json", "model_name": "str",
    "model_version": "str", "dq_status": "str", "raised_at": "time", "pipeline_run_id": "str", "event_date": "date", "ingest_date": "date",
}
DQ_KINDS = {"event_date": "date", "rule_id": "str", "field": "str", "reason_code": "str", "severity": "str", "description": "str", "action": "str", "checked": "int", "failed": "int", "pass_rate": "float", "source_run_id": "str"}
REPORT_KINDS = {"event_date": "date", "currency": "str", "category": "str", "explained": "bool", "transactions": "int", "amount": "money", "first_reconciled_at": "time", "deadline": "time", "source_run_id": "str", "reconciled_at": "time"}
SNAPSHOT_KINDS = {"snapshot_table": "str", "period": "str", "snapshot_version": "int", "row_count": "int", "amount_totals": "str", "amount_base_total": "money", "alerts": "int", "sha256": "str", "delta_version": "int", "source_run_id": "str", "created_at": "time"}


def delta_side(df: pd.DataFrame) -> pd.DataFrame:
    """Delta rows with the source's run id named as in the serving tables."""
    return df.rename(columns={"dagster_run_id": "source_run_id"})


def as_delta(kinds: dict[str, str]) -> dict[str, str]:
    return {c: ("list" if k == "json" else k) for c, k in kinds.items()}


def assert_day_matches_delta(lake: Path, db: ServingDatabaseResource, spark, day: str = DAY) -> None:
    gold = read_delta(lake, "risk_scores_gold", ingest_date=day)
    assert len(gold) > 1000
    assert frame(served(db, "risk_scores_gold", day), GOLD_KINDS, ["transaction_id"]) == frame(gold, as_delta(GOLD_KINDS), ["transaction_id"])

    delta_alerts = read_delta(lake, "anomaly_alerts", ingest_date=day)
    serving_alerts = served(db, "anomaly_alerts", day)
    assert len(delta_alerts) > 0
    assert frame(serving_alerts, ALERT_KINDS, ["alert_id"]) == frame(delta_alerts, as_delta(ALERT_KINDS), ["alert_id"])
    # scenario, channel and country: from the primary reason and silver, computed here with Spark
    silver = spark.read.format("delta").load(str(lake / "tables" / "transactions_silver")).where(F.col("ingest_date") == day)
    expected = (
        spark.read.format("delta").load(str(lake / "tables" / "anomaly_alerts")).where(F.col("ingest_date") == day)
        .join(silver.select("transaction_id", "event_time", "channel", "country"), ["transaction_id", "event_time"], "left")
        .select("alert_id", F.split("primary_reason", ":")[0].alias("scenario"), "channel", "country").toPandas()
    )
    assert expected["channel"].notna().all()
    kinds = {"alert_id": "str", "scenario": "str", "channel": "str", "country": "str"}
    assert frame(serving_alerts, kinds, ["alert_id"]) == frame(expected, kinds, ["alert_id"])

    for table, kinds, key, filters in (
        ("dq_results", DQ_KINDS, ["rule_id"], {"event_date": day}),
        ("reconciliation_report", REPORT_KINDS, ["category", "currency"], {"event_date": day}),
    ):
        source = delta_side(read_delta(lake, table, **filters))
        assert len(source) > 0, table
        assert frame(served(db, table, day), kinds, key) == frame(source, kinds, key), table
    manifest = delta_side(read_delta(lake, "regulatory_snapshot_manifest", period=day, snapshot_table="regulatory_snapshots"))
    assert len(manifest) == 1
    assert frame(served(db, "regulatory_snapshot_summaries", day), SNAPSHOT_KINDS, ["snapshot_version"]) == frame(manifest, SNAPSHOT_KINDS, ["snapshot_version"])


def without_audit(df: pd.DataFrame) -> list[tuple]:
    rest = df.drop(columns=list(AUDIT_COLUMNS))
    return sorted(tuple(str(v) for v in r) for r in rest.itertuples(index=False))


def test_published_days_match_delta_row_by_row_and_republishing_changes_nothing(lake, serving_db, spark):
    first = run(lake, ASSETS, first=DAYS[0], last=DAYS[-1], resources={"serving_db": serving_db})
    assert first.success and check_results(first)[CHECK] is True
    for day in DAYS:
        assert_day_matches_delta(lake, serving_db, spark, day)
    before = {t.name: served(serving_db, t.name) for t in (risk_scores, alerts)}
    assert set(before["risk_scores_gold"]["dagster_run_id"]) == {first.run_id}

    again = run(lake, ASSETS, DAY, resources={"serving_db": serving_db})
    assert again.success and check_results(again)[CHECK] is True
    for name, rows in before.items():
        after = served(serving_db, name)
        assert without_audit(after) == without_audit(rows), name  # the same rows, none twice
        assert set(after["dagster_run_id"]) == {again.run_id}
    key = ["transaction_id", "event_time"]
    assert not served(serving_db, "risk_scores_gold").duplicated(key).any()
    # the other day was left alone
    other = served(serving_db, "risk_scores_gold", DAYS[1])
    assert len(other) > 0 and set(other["dagster_run_id"]) == {first.run_id}


def test_views_answer_from_planted_channel_and_country(lake, serving_db, spark, tmp_path):
    planted = tmp_path / "lake"
    shutil.copytree(lake, planted, ignore=shutil.ignore_patterns("serving"))
    alert_rows = read_delta(planted, "anomaly_alerts", ingest_date=DAY).sort_values("alert_id").head(3)
    ids = list(alert_rows["transaction_id"])
    DeltaTable.forPath(spark, str(planted / "tables" / "transactions_silver")).update(
        F.col("transaction_id").isin(ids), {"channel": F.lit("PLANTED_CHANNEL"), "country": F.lit("ZZ")}
    )
    assert run(planted, ASSETS, first=DAYS[0], last=DAYS[-1], resources={"serving_db": serving_db}).success

    view = read_sql(serving_db, "SELECT * FROM bi_alerts_daily WHERE channel = 'PLANTED_CHANNEL'")
    expected = alert_rows.assign(scenario=alert_rows["primary_reason"].str.split(":").str[0]).groupby(["risk_band", "scenario"]).size().to_dict()
    assert {(r.risk_band, r.scenario): r.alerts for r in view.itertuples()} == expected
    assert set(view["country"]) == {"ZZ"} and {canon(d, "date") for d in view["partition_day"]} == {DAY}
    assert float(view["amount_base"].astype(float).sum()) == pytest.approx(float(sum(alert_rows["amount_base"])))
    everything = read_sql(serving_db, "SELECT SUM(alerts) AS n FROM bi_alerts_daily")
    assert int(everything["n"][0]) == sum(len(read_delta(planted, "anomaly_alerts", ingest_date=d)) for d in DAYS)

    dq = pd.concat([read_delta(planted, "dq_results", event_date=d) for d in DAYS])
    rates = read_sql(serving_db, "SELECT * FROM bi_dq_pass_rate").set_index("rule_id")
    assert set(rates.index) == set(dq["rule_id"])
    for rule, rows in dq.groupby("rule_id"):
        checked, failed = int(rows["checked"].sum()), int(rows["failed"].sum())
        assert int(rates.loc[rule, "days"]) == len(DAYS)
        assert (int(rates.loc[rule, "checked"]), int(rates.loc[rule, "failed"])) == (checked, failed)
        assert float(rates.loc[rule, "pass_rate"]) == pytest.approx(1 - failed / checked if checked else 1.0)
    assert dq["failed"].sum() > 0  # the generator's defects: some rule has failures

    gold = pd.concat([read_delta(planted, "risk_scores_gold", ingest_date=d) for d in DAYS])
    models = read_sql(serving_db, "SELECT * FROM bi_model_versions")
    assert [(r.model_version, int(r.transactions_scored), int(r.days)) for r in models.itertuples()] == [(gold["model_version"].iloc[0], len(gold), 2)]

    status = read_sql(serving_db, "SELECT * FROM bi_reconciliation_status").assign(day=lambda f: f["partition_day"].map(lambda d: canon(d, "date"))).set_index("day")
    for d in DAYS:
        report = read_delta(planted, "reconciliation_report", event_date=d)
        unexplained = int(report.loc[report["explained"] == False, "transactions"].sum())  # noqa: E712 (explained is null for totals)
        assert int(status.loc[d, "unexplained_differences"]) == unexplained
        assert int(status.loc[d, "ledger_transactions"]) == int(report.loc[report["category"] == "LEDGER", "transactions"].sum())
        assert status.loc[d, "status"] == ("UNEXPLAINED_DIFFERENCES" if unexplained else "RECONCILED")
        assert status.loc[d, "timeliness"] == "LATE"  # reconciled today, long after that April day's deadline
    snapshots = read_sql(serving_db, "SELECT * FROM bi_snapshot_status")
    assert sorted(snapshots["period"]) == DAYS


def test_check_fails_when_a_serving_row_is_deleted_behind_its_back(lake, serving_db):
    assert run(lake, ASSETS, DAY, resources={"serving_db": serving_db}).success
    engine = serving_db.create_engine()
    try:
        with engine.begin() as conn:
            victim = conn.execute(text("SELECT transaction_id FROM anomaly_alerts ORDER BY transaction_id")).first()[0]
            conn.execute(text("DELETE FROM anomaly_alerts WHERE transaction_id = :t"), {"t": victim})
    finally:
        engine.dispose()
    # the check alone (Dagster runs a partitioned check only together with its asset): invoked directly
    context = build_op_context(partition_key=DAY, resources={"lake": LakeResource(root=str(lake)), "serving_db": serving_db})
    evaluation = bi_serving_matches_delta(context)
    assert evaluation.passed is False
    assert evaluation.metadata["mismatches"].value == 1
    assert "anomaly_alerts | " in evaluation.metadata["tables"].value and "rows, amount_base" in evaluation.metadata["tables"].value


def test_a_failure_part_way_leaves_the_previous_rows(lake, serving_db):
    assert run(lake, ASSETS, DAY, resources={"serving_db": serving_db}).success
    before = served(serving_db, "risk_scores_gold")

    def broken_alerts(reader, day, notes):
        yield from SOURCES[1].rows(reader, day, notes)
        raise RuntimeError("planted failure after the alerts were inserted")

    sources = (SOURCES[0], dataclasses.replace(SOURCES[1], rows=broken_alerts), *SOURCES[2:])
    engine = serving_db.create_engine()
    try:
        with pytest.raises(RuntimeError, match="planted failure"):
            publish_day(engine, DeltaReader(LakeResource(root=str(lake))), DAY, "run-that-fails", dt.datetime(2030, 1, 1), sources)
    finally:
        engine.dispose()
    after = served(serving_db, "risk_scores_gold")
    assert len(after) == len(before) and set(after["dagster_run_id"]) == set(before["dagster_run_id"]) != {"run-that-fails"}
    assert len(served(serving_db, "anomaly_alerts")) == len(read_delta(lake, "anomaly_alerts", ingest_date=DAY))


def test_serving_url_is_a_secret_env_var_and_the_default_is_a_file_under_the_lake(lake, tmp_path, monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    default = serving_from_env(str(tmp_path / "somelake"))
    assert default.url == f"sqlite:///{tmp_path / 'somelake' / 'serving' / 'compliance.db'}"
    assert serving_from_env("abfss://lake@account.dfs.core.windows.net/root").configured is False
    with pytest.raises(ValueError, match=URL_ENV):
        serving_from_env("abfss://lake@account.dfs.core.windows.net/root").create_engine()

    password = "s3cret-" + secrets.token_hex(4)
    monkeypatch.setenv(URL_ENV, f"postgresql+psycopg2://bi:{password}@db.example.com:5432/compliance")
    resource = serving_from_env(str(lake))
    assert isinstance(resource.url, EnvVar) and resource.url.env_var_name == URL_ENV
    assert resource.url.get_value().endswith("/compliance")
    target = ServingDatabaseResource(url=resource.url.get_value()).safe_target()
    assert target == "postgresql+psycopg2://db.example.com:5432/compliance" and password not in target
    assert password not in repr(ServingDatabaseResource(url=resource.url.get_value()))
    # definitions load with the resource (the lead wires it into compliance_assets/definitions.py)
    Definitions(assets=[bi_serving], asset_checks=[bi_serving_matches_delta], resources={**make_resources(lake), "serving_db": resource})


def test_views_exist_in_both_databases(lake, serving_db):
    assert run(lake, ASSETS, DAY, resources={"serving_db": serving_db}).success
    engine = serving_db.create_engine()
    try:
        from sqlalchemy import inspect

        assert set(VIEWS) <= set(inspect(engine).get_view_names())
    finally:
        engine.dispose()
