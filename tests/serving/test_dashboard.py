"""The daily compliance dashboard on a copy of the session's champion lake (two days scored, one reconciled) with
planted numbers: extra HIGH alerts of a planted scenario and channel, a DQ rule's pass rate, DLQ rows with planted
reason codes, streamed latencies and drift rows. The page is opened from file:// in headless Chromium; the numbers
are read back from its KPI text and from the Plotly figures' data, and compared with the Delta tables (read with
delta-rs) and the plant."""

import base64
import datetime as dt
import io
import json
import math
import shutil
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, PathMetadataValue, materialize
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from catalog import MODEL_DRIFT
from compliance_assets.monitoring import drift
from compliance_assets.reporting.reconciliation import reconcile_with_ledger
from compliance_assets.serving import dashboard_panels as panels
from compliance_assets.serving.dashboard import compliance_dashboard
from tests.browser import HeadlessChromium, chromium, png_size  # noqa: F401 (chromium: a fixture)
from tests.conftest import make_resources
from tests.helpers import SCORED_DAYS as SCORED
from tests.helpers import read_delta

DAY = SCORED[-1]
PANEL_KEYS = ["risk-bands", "alerts-scenario", "alerts-channel", "alert-trend", "dq-pass-rates", "dlq-reasons", "stream-latency", "reconciliation", "drift", "model"]
PLANTED_ALERTS, PLANTED_SCENARIO, PLANTED_CHANNEL = 9, "PLANTED_SCENARIO", "PLANTED_CHANNEL"
PLANTED_PASS_RATE = 0.4321
PLANTED_DLQ, PLANTED_DLQ_EXTRA = 7, 3  # 7 rows with PLANTED_REASON, 3 of them also with PLANTED_EXTRA
PLANTED_LATENCIES_MS = [1000.0 * i for i in range(1, 101)]  # nearest-rank p95: the 95th value
PLANTED_PSI = {"amount_base": (0.31, "FAIL"), "hour_of_day": (0.12, "WARN"), "txn_count_24h": (0.02, "OK")}
SCREENSHOT_COPY = "/tmp/dashboard_screenshot.png"
WIDTH = 1400


def run(lake, assets, partition_key=None, first=None, last=None):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else {}
    return materialize(assets, partition_key=partition_key, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=True)


def table(lake, name: str) -> str:
    return str(lake / "tables" / name)


def plant(spark, lake) -> dict:
    """Plant known numbers into the day's tables; returns what was planted and the counts before."""
    gold = read_delta(lake, "risk_scores_gold", ingest_date=DAY)
    alerts = read_delta(lake, "anomaly_alerts", ingest_date=DAY)
    before = {"alerts": len(alerts), "high": int((alerts.risk_band == "HIGH").sum()), "dlq": len(read_delta(lake, "transactions_dlq", event_date=DAY))}

    # extra HIGH alerts of a planted scenario on transactions that had none, whose silver rows get a planted channel
    picks = sorted(set(gold.transaction_id) - set(alerts.transaction_id))[:PLANTED_ALERTS]
    g = spark.read.format("delta").load(table(lake, "risk_scores_gold")).where(F.col("transaction_id").isin(picks) & (F.col("ingest_date") == F.lit(DAY).cast("date")))
    s = spark.read.format("delta").load(table(lake, "transactions_silver")).select("transaction_id", "event_time", "merchant_id", "amount_base")
    columns = spark.read.format("delta").load(table(lake, "anomaly_alerts")).columns
    reason = f"{PLANTED_SCENARIO}:dashboard-test"
    planted = g.join(s, ["transaction_id", "event_time"]).select(
        F.concat(F.lit("ALR-PLANTED-"), "transaction_id").alias("alert_id"), "transaction_id", "event_time", "account_id", "merchant_id", "amount_base",
        F.lit(reason).alias("primary_reason"), F.array(F.lit(reason)).alias("reasons"), "risk_score", F.lit("HIGH").alias("risk_band"), "top_features",
        "model_name", "model_version", "dq_status", F.col("scored_at").alias("raised_at"), "pipeline_run_id", "event_date", "ingest_date",
    ).select(*columns)
    assert planted.count() == PLANTED_ALERTS
    planted.write.format("delta").mode("append").save(table(lake, "anomaly_alerts"))
    DeltaTable.forPath(spark, table(lake, "transactions_silver")).update(F.col("transaction_id").isin(picks), {"channel": F.lit(PLANTED_CHANNEL)})

    # one DQ rule's pass rate
    rule = sorted(read_delta(lake, "dq_results", event_date=DAY).rule_id)[0]
    DeltaTable.forPath(spark, table(lake, "dq_results")).update(
        (F.col("event_date") == F.lit(DAY).cast("date")) & (F.col("rule_id") == rule),
        {"pass_rate": F.lit(PLANTED_PASS_RATE), "failed": F.round(F.col("checked") * (1 - PLANTED_PASS_RATE)).cast("long")},
    )

    # DLQ rows with planted reason codes
    dlq = spark.read.format("delta").load(table(lake, "transactions_dlq"))
    rows = [
        {"ingest_id": f"planted-{i}", "event_date": dt.date.fromisoformat(DAY), "source": "dashboard-test", "source_file": "planted.jsonl", "source_line": i,
         "payload": "{}", "source_payload": None, "transaction_id": None, "reason_codes": ["PLANTED_REASON"] + (["PLANTED_EXTRA"] if i < PLANTED_DLQ_EXTRA else []),
         "primary_reason": "PLANTED_REASON", "dagster_run_id": "planted", "rejected_at": dt.datetime(2026, 4, 5, 12)}
        for i in range(PLANTED_DLQ)
    ]
    spark.createDataFrame([tuple(r[c] for c in dlq.columns) for r in rows], dlq.schema).write.format("delta").mode("append").save(table(lake, "transactions_dlq"))

    # streamed latencies on 100 of the day's gold rows
    streamed = sorted(gold.transaction_id)[-len(PLANTED_LATENCIES_MS):]
    source = spark.createDataFrame(list(zip(streamed, PLANTED_LATENCIES_MS)), "transaction_id string, planted double")
    (
        DeltaTable.forPath(spark, table(lake, "risk_scores_gold")).alias("t")
        .merge(source.alias("s"), f"t.transaction_id = s.transaction_id AND t.ingest_date = DATE'{DAY}'")
        .whenMatchedUpdate(set={"latency_ms": "s.planted"}).execute()
    )

    # the day's drift rows (the model_drift table's own schema)
    now = dt.datetime(2026, 4, 6, 1)
    drift_rows = [(dt.date.fromisoformat(DAY), drift.FEATURE_PSI, name, value, 0.1, 0.25, status, 3000, "{}", "transaction_risk", "1", "planted", "planted", now) for name, (value, status) in PLANTED_PSI.items()]
    drift_rows.append((dt.date.fromisoformat(DAY), drift.BAND_PSI, "risk_band", 0.9, 0.1, 0.25, "FAIL", 3000, "{}", "transaction_risk", "1", "planted", "planted", now))  # not a feature: not plotted
    spark.createDataFrame(drift_rows, drift.SCHEMA).write.format("delta").partitionBy("event_date").save(table(lake, MODEL_DRIFT))
    return {"before": before, "picks": picks, "rule": rule, "streamed": streamed}


@pytest.fixture(scope="module")
def lake(scored_lake, spark, tmp_path_factory):
    root = shutil.copytree(scored_lake, tmp_path_factory.mktemp("dashboard") / "lake")
    assert run(root, [reconcile_with_ledger], partition_key=DAY).success
    return root, plant(spark, root)


@pytest.fixture
def page(chromium, tmp_path):
    browser = HeadlessChromium(chromium, tmp_path, width=WIDTH, height=1000)
    try:
        yield browser
    finally:
        browser.close()


def wait_for_plots(browser, timeout: float = 90) -> dict:
    """Wait until every Plotly panel holds a rendered .main-svg; returns {panel id: kind}."""
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        state = browser.evaluate(
            "(() => { if (document.readyState !== 'complete') return null; const out = {};"
            " document.querySelectorAll('section.panel').forEach(s => out[s.id] = [s.dataset.kind, !!s.querySelector('.main-svg')]); return out; })()"
        ) or {}
        if state and all(rendered for kind, rendered in state.values() if kind == "plotly"):
            return {k: kind for k, (kind, _) in state.items()}
        time.sleep(0.5)
    raise AssertionError(f"plots not rendered within {timeout:.0f}s: {state}")


def chart(browser, key: str) -> list[dict]:
    """The traces of a panel's Plotly figure as the browser holds them (typed arrays made plain)."""
    return browser.evaluate(
        f"Array.from(document.getElementById('chart-{key}').data).map(t => ({{name: t.name || null, type: t.type,"
        " x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null, value: t.value === undefined ? null : t.value}))"
    )


def text_of(browser, element_id: str) -> str:
    return browser.evaluate(f"document.getElementById({json.dumps(element_id)}).innerText")


def kpi(browser, key: str) -> str:
    return browser.evaluate(f"document.querySelector('#kpi-{key} .value').innerText")


def expected_numbers(lake) -> dict:
    """What the page must show, from the Delta tables (delta-rs and pandas, not the asset's code)."""
    gold = read_delta(lake, "risk_scores_gold", ingest_date=DAY)
    alerts = read_delta(lake, "anomaly_alerts", ingest_date=DAY)
    silver = read_delta(lake, "transactions_silver")[["transaction_id", "event_time", "channel"]]
    with_channel = alerts.merge(silver, on=["transaction_id", "event_time"], how="left")
    assert with_channel.channel.notna().all() and len(with_channel) == len(alerts)
    with_channel["scenario"] = with_channel.primary_reason.map(lambda r: r.split(":")[0])
    dlq = read_delta(lake, "transactions_dlq", event_date=DAY)
    dq = read_delta(lake, "dq_results", event_date=DAY)
    all_alerts, all_gold = read_delta(lake, "anomaly_alerts"), read_delta(lake, "risk_scores_gold")
    end = dt.date.fromisoformat(DAY)
    window = [(end - dt.timedelta(days=i)).isoformat() for i in range(29, -1, -1)]
    scored_days = set(all_gold.ingest_date.astype(str))
    alerts_per_day = all_alerts.ingest_date.astype(str).value_counts()
    report = read_delta(lake, "reconciliation_report", event_date=DAY)
    differences = report[~report.category.isin(["LEDGER", "SILVER", "GOLD", "MATCHED", "LATE_ARRIVAL"])]
    return {
        "scored": len(gold),
        "bands": gold.risk_band.value_counts().to_dict(),
        "alerts": len(alerts),
        "high": int((alerts.risk_band == "HIGH").sum()),
        "by_scenario": with_channel.scenario.value_counts().to_dict(),
        "by_channel": with_channel.channel.value_counts().to_dict(),
        "dlq_rows": len(dlq),
        "dlq_reasons": pd.Series([c for codes in dlq.reason_codes for c in codes]).value_counts().to_dict(),
        "dq": dict(zip(dq.rule_id, dq.pass_rate)),
        "dq_min": float(dq.pass_rate.min()),
        "trend": {d: (int(alerts_per_day.get(d, 0)) if d in scored_days else None) for d in window},
        "unexplained": int(differences[differences.explained == False].transactions.sum()),  # noqa: E712
        "streamed_p95_s": sorted(PLANTED_LATENCIES_MS)[math.ceil(0.95 * len(PLANTED_LATENCIES_MS)) - 1] / 1000.0,
    }


def trace_sum(traces: list[dict]) -> dict:
    """{x: sum of y over the traces} of a (stacked) bar chart."""
    out: dict = {}
    for t in traces:
        for x, y in zip(t["x"], t["y"]):
            out[x] = out.get(x, 0) + y
    return {k: v for k, v in out.items() if v}


def test_dashboard_renders_every_panel_with_the_planted_numbers(lake, page, tmp_path):
    lake, planted = lake
    result = run(lake, [compliance_dashboard], partition_key=DAY)
    expected = expected_numbers(lake)
    uri = f"sqlite:///{lake}/mlflow/mlflow.db"  # the registry URI too: it defaults to the global one, which an earlier test may have set
    champion = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("transaction_risk", "champion")

    # the plant is what the tables now hold (the expectations below come from the tables, checked against the plant here)
    assert expected["alerts"] == planted["before"]["alerts"] + PLANTED_ALERTS and expected["high"] == planted["before"]["high"] + PLANTED_ALERTS
    assert expected["by_scenario"][PLANTED_SCENARIO] == PLANTED_ALERTS and expected["by_channel"][PLANTED_CHANNEL] == PLANTED_ALERTS
    assert expected["dlq_rows"] == planted["before"]["dlq"] + PLANTED_DLQ and expected["dlq_reasons"]["PLANTED_EXTRA"] == PLANTED_DLQ_EXTRA
    assert expected["dq_min"] == PLANTED_PASS_RATE

    # metadata: a path the UI links to, a PNG preview inline and beside the page, the key numbers
    metadata = result.asset_materializations_for_node("compliance_dashboard")[0].metadata
    html_path = lake / "drops" / "dashboards" / f"{DAY}.html"
    assert isinstance(metadata["dashboard"], PathMetadataValue) and metadata["dashboard"].value == str(html_path) and html_path.is_file()
    markdown = metadata["preview"].value
    assert markdown.startswith("![preview](data:image/png;base64,") and markdown.endswith(")") and len(markdown) < 60_000
    preview = base64.b64decode(markdown.split("base64,", 1)[1][:-1])
    assert png_size(preview) == (600, 300) and (lake / "drops" / "dashboards" / f"{DAY}.png").read_bytes() == preview
    assert metadata["preview_png"].value == str(lake / "drops" / "dashboards" / f"{DAY}.png")
    numbers = {k: metadata[k].value for k in ("transactions_scored", "alerts", "high_alerts", "dlq_rows", "dq_min_pass_rate")}
    assert numbers == {"transactions_scored": expected["scored"], "alerts": expected["alerts"], "high_alerts": expected["high"], "dlq_rows": expected["dlq_rows"], "dq_min_pass_rate": PLANTED_PASS_RATE}

    # no external resource: nothing in the document points at http(s), and the browser fetched nothing
    page.open(html_path.as_uri())
    kinds = wait_for_plots(page)
    assert list(kinds) == [f"panel-{k}" for k in PANEL_KEYS], kinds
    assert {k for k, kind in kinds.items() if kind != "plotly"} == {"panel-model"}, kinds
    external = page.evaluate(
        "Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => /^(https?:)?\\/\\//i.test(u))"
        ".concat(performance.getEntriesByType('resource').map(e => e.name).filter(u => /^https?:/i.test(u)))"
    )
    assert external == []
    source = html_path.read_text()
    assert page.evaluate("typeof Plotly") == "object" and source.count("* plotly.js v") == 1 and source.count("Plotly.newPlot") == 9  # plotly.js once, nine figures

    # header and KPI tiles (plain text)
    assert text_of(page, "dashboard-day") == DAY and text_of(page, "run-id") == result.run_id
    generated = dt.datetime.strptime(text_of(page, "generated-at"), "%Y-%m-%d %H:%M:%S UTC")
    assert abs((dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - generated).total_seconds()) < 900
    assert kpi(page, "transactions-scored") == f"{expected['scored']:,}"
    assert kpi(page, "alerts") == f"{expected['alerts']:,}" and kpi(page, "high-alerts") == f"{expected['high']:,}"
    assert kpi(page, "dlq-rows") == f"{expected['dlq_rows']:,}" and kpi(page, "dq-min-pass-rate") == "43.21%"
    assert kpi(page, "champion") == f"v{champion.version}"

    # the figures' data
    bands = chart(page, "risk-bands")[0]
    assert dict(zip(bands["x"], bands["y"])) == expected["bands"]
    assert trace_sum(chart(page, "alerts-scenario")) == expected["by_scenario"]
    assert trace_sum(chart(page, "alerts-channel")) == expected["by_channel"]
    high_by_channel = next(t for t in chart(page, "alerts-channel") if t["name"] == "HIGH band")
    assert dict(zip(high_by_channel["x"], high_by_channel["y"]))[PLANTED_CHANNEL] == PLANTED_ALERTS
    trend = chart(page, "alert-trend")[0]
    assert dict(zip(trend["x"], trend["y"])) == expected["trend"] and sum(v is not None for v in trend["y"]) == len(SCORED)
    dq = chart(page, "dq-pass-rates")[0]
    shown = dict(zip(dq["y"], dq["x"]))
    assert shown[planted["rule"]] == PLANTED_PASS_RATE and len(shown) == min(len(expected["dq"]), panels.DQ_RULES_SHOWN)
    assert all(expected["dq"][rule] == pytest.approx(rate) for rule, rate in shown.items())
    assert sorted(expected["dq"].values())[: len(shown)] == pytest.approx(sorted(shown.values()))  # the lowest rules are the ones shown
    low = read_delta(lake, "dq_results", event_date=DAY, rule_id=planted["rule"]).iloc[0]
    assert f"{planted['rule']} 43.21% ({low.failed:,} of {low.checked:,} failed)" in text_of(page, "panel-dq-pass-rates") and low.failed > 0
    dlq = chart(page, "dlq-reasons")[0]
    assert dict(zip(dlq["x"], dlq["y"])) == expected["dlq_reasons"]
    assert chart(page, "stream-latency")[0]["value"] == pytest.approx(expected["streamed_p95_s"]) == 95.0
    assert f"streamed rows\t{len(PLANTED_LATENCIES_MS)}" in text_of(page, "panel-stream-latency")
    psi = chart(page, "drift")[0]
    assert dict(zip(psi["y"], psi["x"])) == {name: value for name, (value, _) in PLANTED_PSI.items()}
    reconciliation = text_of(page, "panel-reconciliation")
    status = "RECONCILED" if expected["unexplained"] == 0 else "UNEXPLAINED DIFFERENCES"
    assert f"status\t{status}" in reconciliation and f"unexplained differences\t{expected['unexplained']:,}" in reconciliation
    assert kpi(page, "reconciliation") == status
    model = text_of(page, "panel-model")
    assert f"champion version\t{champion.version}" in model and champion.run_id in model

    # a full-page screenshot, for a human to look at: a real image, not a blank page
    height = page.evaluate("document.documentElement.scrollHeight")
    page.resize(WIDTH, height)
    time.sleep(1.0)  # the responsive plots re-layout to the new viewport
    wait_for_plots(page)
    png = page.screenshot()
    (tmp_path / "dashboard.png").write_bytes(png)
    shutil.copy(tmp_path / "dashboard.png", SCREENSHOT_COPY)
    assert png_size(png) == (WIDTH, height) and height > 1500
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    assert len(colors) > 200 and counts.max() / len(pixels) < 0.8, (len(colors), counts.max() / len(pixels))
    red = ((pixels[:, 0] > 150) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)).mean()  # HIGH bars and the trend line are drawn
    assert red > 0.001


def test_missing_inputs_give_no_data_panels_not_a_failure(spark, tmp_path):
    lake = tmp_path / "empty_lake"
    lake.mkdir()
    result = run(lake, [compliance_dashboard], partition_key=DAY)
    metadata = result.asset_materializations_for_node("compliance_dashboard")[0].metadata
    page = (lake / "drops" / "dashboards" / f"{DAY}.html").read_text()
    for key in PANEL_KEYS:
        section = page.split(f'id="panel-{key}"', 1)[1].split("</section>", 1)[0]
        assert 'data-kind="no-data"' in section.split(">", 1)[0] and 'class="no-data"' in section, key
    assert "no streamed rows" in page and "not computed" in page and "no model has the champion alias" in page
    assert "Plotly.newPlot" not in page
    assert metadata["transactions_scored"].value == 0 and metadata["alerts"].value == 0 and "dlq_rows" not in metadata
    assert set(json.loads(page.split('id="dashboard-summary">', 1)[1].split("</script>", 1)[0])["panels"].values()) == {"no data"}
    assert "dashboard" in metadata and metadata["preview"].value.startswith("![preview](data:image/png;base64,")


def test_trend_leaves_unscored_days_as_gaps_and_alerts_without_silver_are_counted():
    trend = pd.DataFrame({"day": ["2026-04-03", "2026-04-05"], "alerts": [4, 0], "scored": [100, 90]})
    figure = panels.trend_panel(trend, "2026-04-05", 3).figure
    assert list(figure.data[0].x) == ["2026-04-03", "2026-04-04", "2026-04-05"] and list(figure.data[0].y) == [4, None, 0]
    alerts = pd.DataFrame({"scenario": ["HIGH_RISK_SCORE", None], "channel": [None, "ATM"], "risk_band": ["HIGH", "LOW"], "alerts": [3, 2]})
    by_scenario, by_channel = panels.alert_panels(alerts)
    assert trace_sum([{"x": list(t.x), "y": list(t.y)} for t in by_channel.figure.data]) == {panels.NOT_IN_SILVER: 3, "ATM": 2}
    assert trace_sum([{"x": list(t.x), "y": list(t.y)} for t in by_scenario.figure.data]) == {"HIGH_RISK_SCORE": 3, panels.NO_REASON: 2}
