"""The Dagster UI used the way an operator uses it: a partition backfill of reference data + ingest launched
through the webserver's GraphQL API (what the UI's "Materialize selected > backfill" dialog sends),
executed by the daemon, read back from the lake with delta-rs; then the ingest group's lineage graph
opened in a real (headless) browser and saved as a screenshot for a human to look at.

Both tests share one webserver + daemon (module-scoped `dagster_ui`); the backfill test comes first, so
the screenshot shows materialised assets.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import read_delta
from tests.ui.conftest import INGEST_ASSETS, REFERENCE_ASSETS, REPO, DagsterUI, png_size

ASSET_KEYS = [*REFERENCE_ASSETS, *INGEST_ASSETS]
TAGS = {"requested_by": "ui-test", "incident_id": "INC-TEST"}
BACKFILL_TIMEOUT_S = 900
SCREENSHOT = REPO / "test-artifacts" / "ui" / "asset_graph.png"
SUCCESS = {"COMPLETED", "COMPLETED_SUCCESS"}
FAILED = {"FAILED", "COMPLETED_FAILED", "CANCELED"}

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status title numPartitions isAssetBackfill
      tags { key value }
      error { message stack }
      runs(limit: 100) { runId status startTime endTime tags { key value } assetSelection { path } }
    }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message stack }
  }
}"""

RUN_LOGS = """
query RunLogs($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message stack causes { message stack } } }
      }
    }
    ... on PythonError { message }
  }
}"""

ZOOM_OUT_BUTTON = '[data-svg-viewport] button:has([aria-label="zoom_out"])'

# names of the graph's nodes that are not entirely inside the graph canvas
NODES_OUTSIDE_VIEWPORT = """(() => {
  const r = document.querySelector('[data-svg-viewport]').getBoundingClientRect();
  return Array.from(document.querySelectorAll('[data-svg-viewport] foreignObject'))
    .filter(n => n.textContent.trim())
    .filter(n => { const b = n.getBoundingClientRect();
                   return b.left < r.left - 1 || b.top < r.top - 1 || b.right > r.right + 1 || b.bottom > r.bottom + 1; })
    .map(n => n.textContent.trim().slice(0, 40));
})()"""

PARTITION_STATS = """
query PartitionStats($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) { assetKey { path } partitionStats { numMaterialized numFailed } }
}"""


def run_diagnostics(ui: DagsterUI, backfill: dict) -> str:
    """Everything that helps when a backfill did not succeed: the backfill error, each run's failures and
    last log lines, and the tails of the daemon and webserver logs."""
    out = [f"backfill {backfill.get('id')}: status {backfill.get('status')}"]
    if backfill.get("error"):
        out.append(f"backfill error: {backfill['error']['message']}\n{''.join(backfill['error']['stack'])}")
    for run in backfill.get("runs") or []:
        out.append(f"===== run {run['runId']} status {run['status']}")
        try:
            logs = ui.gql(RUN_LOGS, {"runId": run["runId"]})["logsForRun"]
        except Exception as exc:  # diagnostics must not hide the original failure
            out.append(f"(could not read its logs: {exc})")
            continue
        events = logs.get("events") or []
        for event in events:
            if event.get("error"):
                error = event["error"]
                out.append(f"[{event.get('stepKey')}] {event.get('message')}\n{error['message']}{''.join(error['stack'])}")
                out.extend(f"caused by: {c['message']}{''.join(c['stack'])}" for c in error.get("causes") or [])
        out.append("last log lines:")
        out.extend(f"  {e.get('level')} [{e.get('stepKey')}] {(e.get('message') or '')[:500]}" for e in events[-40:])
    out.append(ui.log_tails(80))
    return "\n".join(out)


def wait_for_backfill(ui: DagsterUI, backfill_id: str, timeout: float) -> dict:
    started = time.monotonic()
    deadline = started + timeout
    last_status, backfill = None, {}
    while time.monotonic() < deadline:
        ui.check_alive()
        backfill = ui.gql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs = ", ".join(f"{r['runId'][:8]}={r['status']}" for r in backfill["runs"])
        if (backfill["status"], runs) != last_status:
            print(f"[ui] {time.monotonic() - started:6.1f}s backfill {backfill_id}: {backfill['status']} runs: {runs or '-'}")
            last_status = (backfill["status"], runs)
        if backfill["status"] in SUCCESS:
            return backfill
        if backfill["status"] in FAILED:
            pytest.fail(f"backfill ended {backfill['status']}\n{run_diagnostics(ui, backfill)}")
        time.sleep(5)
    pytest.fail(f"backfill still {backfill.get('status')} after {timeout:.0f}s\n{run_diagnostics(ui, backfill)}")


def test_backfill_through_graphql(dagster_ui: DagsterUI):
    ui = dagster_ui
    start, end = min(ui.days), max(ui.days)
    params = {
        "partitionsByAssets": [{"assetKey": {"path": [key]}, "partitions": {"range": {"start": start, "end": end}}} for key in ASSET_KEYS],
        "title": f"UI test: reference data + ingest {start}..{end}",
        "tags": [{"key": k, "value": v} for k, v in TAGS.items()],
    }
    launched = time.monotonic()
    result = ui.gql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]

    backfill = wait_for_backfill(ui, backfill_id, BACKFILL_TIMEOUT_S)
    print(f"[ui] backfill {backfill_id} {backfill['status']} after {time.monotonic() - launched:.1f}s")

    # the daemon split the backfill into runs: every run succeeded and carries the backfill's tags
    runs = backfill["runs"]
    assert backfill["isAssetBackfill"] and backfill["numPartitions"] == 2
    assert {t["key"]: t["value"] for t in backfill["tags"]}.items() >= TAGS.items()
    assert runs, "the backfill launched no runs"
    covered = set()
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        selection = sorted("/".join(a["path"]) for a in run["assetSelection"] or [])
        print(
            f"[ui] run {run['runId']} {run['status']} {run['endTime'] - run['startTime']:.0f}s "
            f"partitions {tags.get('dagster/asset_partition_range_start', tags.get('dagster/partition'))}"
            f"..{tags.get('dagster/asset_partition_range_end', '')} assets {selection}"
        )
        assert run["status"] == "SUCCESS", run
        assert tags.get("dagster/backfill") == backfill_id, tags
        assert tags.items() >= TAGS.items(), tags
        covered.update(selection)
    assert covered == set(ASSET_KEYS)
    run_ids = {r["runId"] for r in runs}

    # what the UI's asset pages show: both partitions materialised, none failed
    nodes = ui.gql(PARTITION_STATS, {"keys": [{"path": [k]} for k in ASSET_KEYS]})["assetNodes"]
    stats = {n["assetKey"]["path"][-1]: n["partitionStats"] for n in nodes}
    assert stats == {k: {"numMaterialized": 2, "numFailed": 0} for k in ASSET_KEYS}, stats

    # the lake, read with delta-rs: every table has both days, written by the backfill's runs
    for table in ASSET_KEYS:
        days = set(read_delta(ui.lake_root, table)["event_date"].astype(str))
        assert set(ui.days) <= days, (table, days)
    bronze = read_delta(ui.lake_root, "transactions_bronze")
    silver = read_delta(ui.lake_root, "transactions_silver")
    dlq = read_delta(ui.lake_root, "transactions_dlq")
    for frame in (bronze, silver, dlq):
        assert set(frame["dagster_run_id"]) <= run_ids
    for day, summary in ui.days.items():
        n_bronze = int((bronze["event_date"].astype(str) == day).sum())
        n_silver = int((silver["ingest_date"].astype(str) == day).sum())
        n_dlq = int((dlq["event_date"].astype(str) == day).sum())
        assert n_bronze == summary.lines, (day, n_bronze, summary.lines)
        assert 0 < n_silver and 0 < n_dlq and n_silver + n_dlq <= n_bronze, (day, n_bronze, n_silver, n_dlq)
        print(f"[ui] {day}: bronze {n_bronze}, silver {n_silver} (ingest date), dlq {n_dlq}")


def test_asset_graph_screenshot(dagster_ui: DagsterUI, browser):
    # A first visit shows a "Join the Dagster community" dialog over the graph; its Skip button sends this
    # mutation (the instance then remembers it was seen), so the screenshot shows the graph unobstructed.
    assert dagster_ui.gql("mutation { setNuxSeen }")["setNuxSeen"] is True

    # the ingest group's lineage: its partitioned assets as full nodes, the reference tables upstream
    url = f"{dagster_ui.url}/locations/compliance_assets/asset-groups/ingest"
    browser.open(url)
    browser.wait_for_text(INGEST_ASSETS[:1], timeout=120)

    # The asset graph opens zoomed to fit its width (at most 100%), so a tall graph runs off the bottom of
    # the window: zoom out with the graph's own zoom-out button, as a user would, until every node shows.
    zoom_out = browser.center_of(ZOOM_OUT_BUTTON)
    assert zoom_out, "the graph has no zoom-out button"
    for _ in range(20):
        if not browser.evaluate(NODES_OUTSIDE_VIEWPORT):
            break
        browser.click(*zoom_out)
        time.sleep(0.8)  # the zoom is animated
    # the graph renders only the nodes inside its canvas: every node shows once the whole graph fits
    text = browser.wait_for_text(ASSET_KEYS, timeout=60)
    png = browser.settled_screenshot()
    outside = browser.evaluate(NODES_OUTSIDE_VIEWPORT)
    html = browser.html()

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
    print(f"\n[ui] screenshot of {url}: {SCREENSHOT} ({len(png) / 1024:.0f} kB)")

    assert png_size(png) == (browser.width, browser.height)
    assert len(png) > 20_000, "the screenshot is nearly empty"
    for name in ASSET_KEYS:
        assert name in html, name
    assert "Partitions" in text, "the asset nodes show no partition status"
    assert "Join the Dagster community" not in browser.evaluate("document.body.innerText"), "a dialog covers the graph"
    assert outside == [], f"graph nodes still outside the visible canvas after zooming out: {outside}"
