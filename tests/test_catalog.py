"""The table catalog: every lake table an asset writes has one entry, and a partition key range parses once
into the days and predicates the assets use."""

import datetime as dt
import pickle

import pytest

from catalog import CATALOG, GOLD, SILVER, SNAPSHOTS, Days, compacted, table
from compliance_assets.definitions import defs

# assets that are not Delta tables of the lake: the BI database, the dashboard file, the ledger's landing
# files, the export drop, the MLflow model and the decisions topic
NOT_LAKE_TABLES = {"bi_serving", "compliance_dashboard", "ledger_files", "regulatory_exports", "risk_model", "transaction_decisions"}


def test_every_lake_asset_has_exactly_one_catalog_entry():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys - NOT_LAKE_TABLES == set(CATALOG)


def test_a_range_of_keys_parses_once_into_days_and_predicates():
    days = Days.of(["2026-04-03", "2026-04-01", "2026-04-02"])
    assert (days.first, days.last, len(days)) == (dt.date(2026, 4, 1), dt.date(2026, 4, 3), 3)
    assert days.keys == ["2026-04-01", "2026-04-02", "2026-04-03"]
    assert SILVER.where(days) == "ingest_date >= '2026-04-01' AND ingest_date <= '2026-04-03'"
    assert table("transactions_dlq").where(Days.of("2026-04-02")) == "event_date = '2026-04-02'"
    assert SNAPSHOTS.where(Days.of("2026-04-02")) == "period = '2026-04-02'"
    assert Days.span("2026-04-01", "2026-04-03") == days and Days.span(dt.date(2026, 4, 2)) == Days.of("2026-04-02")
    with pytest.raises(ValueError, match="ends before it starts"):
        Days.span("2026-04-03", "2026-04-01")
    with pytest.raises(ValueError, match="not one contiguous range"):
        Days.of(["2026-04-01", "2026-04-03"])
    with pytest.raises(ValueError, match="not day-partitioned"):
        table("model_audit").where(days)
    with pytest.raises(KeyError, match="not in the table catalog"):
        table("transactions_gold")


def test_an_entry_is_its_name_everywhere_a_name_goes():
    assert GOLD == "risk_scores_gold" and f"tables/{GOLD}" == "tables/risk_scores_gold" and {GOLD: 1}["risk_scores_gold"] == 1
    copy = pickle.loads(pickle.dumps(GOLD))  # Spark closures pickle what they capture
    assert (copy, copy.day_column, copy.zorder) == (GOLD, "ingest_date", ("account_id", "risk_band"))


def test_compaction_and_serving_read_the_catalog():
    from compliance_assets.operations.compaction import ZORDER_COLUMNS
    from compliance_assets.serving.delta_sources import SOURCES

    assert ZORDER_COLUMNS == compacted() and ZORDER_COLUMNS["regulatory_snapshots"] == ()
    assert {s.delta_table for s in SOURCES} == {t for t in CATALOG.values() if t.bi_served}
