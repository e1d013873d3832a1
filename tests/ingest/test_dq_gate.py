"""The DQ gate: a delivery with too many bad records fails the blocking critical-rules check, and
assets downstream of transactions_silver are not materialised in that run."""

import datetime as dt

import pytest
from dagster import AssetKey, BackfillPolicy, DagsterInstance, asset, materialize

from compliance_assets.synthetic import SynthConfig, generate_day
from partitions import daily_partitions
from tests.conftest import make_resources
from tests.helpers import INGEST_ASSETS, INGEST_CHECKS, check_results, read_delta

DAY = "2026-04-10"


@asset(partitions_def=daily_partitions, deps=["transactions_silver"], backfill_policy=BackfillPolicy.single_run())
def downstream_of_silver() -> None:
    """Stands in for scoring: must not run on a partition that failed the DQ gate."""


def run(lake):
    return materialize(
        [*INGEST_ASSETS, *INGEST_CHECKS, downstream_of_silver],
        partition_key=DAY,
        resources=make_resources(lake),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


@pytest.mark.parametrize("malformed_rate, gate_passes", [(0.12, False), (0.01, True)])
def test_critical_rules_under_95_percent_block_downstream(spark, tmp_path, malformed_rate, gate_passes):
    generate_day(SynthConfig(seed=5, events_per_day=600, malformed_json=malformed_rate), tmp_path / "landing", dt.date.fromisoformat(DAY))
    result = run(tmp_path)
    checks = check_results(result)
    assert checks[("transactions_silver", "critical_dq_rules_pass")] is gate_passes
    assert checks[("transactions_silver", "silver_rows_conserved")], "bad rows are rejected, never lost"
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("transactions_silver") in materialised
    assert (AssetKey("downstream_of_silver") in materialised) is gate_passes
    dq = read_delta(tmp_path, "dq_results", event_date=DAY).set_index("reason_code")
    assert (dq.loc["MALFORMED_JSON", "pass_rate"] < 0.95) is not gate_passes
