"""Parity of the two executions: the stream day decided event by event by the decision service's logic (pure
Python, per-account state built from silver) gives the silver rows, DLQ reason codes, scores, top features and
alerts the daily Spark assets give for the same delivery."""

import dataclasses
import datetime as dt
import json
import math
from collections import Counter
from decimal import Decimal

import pandas as pd
import pytest

from compliance_assets.realtime.account_state import AccountState
from compliance_assets.realtime.decisions import DUPLICATE_EVENT, MISKEYED, REJECTED, SCORED, Champion, Decider, Event, encode
from compliance_assets.realtime.reference import load_references
from compliance_assets.realtime.service import history_start, states_from_silver
from compliance_assets.streaming.loadgen import delivery_lines
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from tests.conftest import make_resources
from tests.helpers import STREAM_DAY, read_delta

DAY = dt.date.fromisoformat(STREAM_DAY)
NOT_COMPARED = ("source", "ingest_id", "source_file", "source_line", "dagster_run_id", "processed_at")


@pytest.fixture(scope="module")
def decided(spark, champion_lake):
    """Every line of the stream day decided in delivery order, 50 events per scoring call."""
    resources = make_resources(champion_lake)
    lake, registry = resources["lake"], resources["model_registry"]
    version, model = registry.champion()
    champion = Champion(registry.model_name, str(version.version), version.run_id, model)
    refs = load_references(spark, lake, DAY, DEFAULT_LATENESS_DAYS, model.label_delay_days)
    states = states_from_silver(spark, lake, DAY, DEFAULT_LATENESS_DAYS)

    def state_of(account: str) -> AccountState:
        state = states.setdefault(account, AccountState())
        state.forget_before(history_start(DAY, DEFAULT_LATENESS_DAYS))
        return state

    lines = delivery_lines(champion_lake / "stream_day" / "transactions" / f"event_date={STREAM_DAY}")
    arrived_ms = int(dt.datetime(DAY.year, DAY.month, DAY.day, 23, 0, tzinfo=dt.timezone.utc).timestamp() * 1000)
    events = [Event("transactions", 0, i, arrived_ms, None, line.encode("utf-8", "surrogateescape")) for i, line in enumerate(lines)]
    decider = Decider("test-salt", DEFAULT_LATENESS_DAYS)
    out = []
    for start in range(0, len(events), 50):
        out += decider.decide(events[start : start + 50], state_of, champion, refs)
    return out, champion, refs


def _plain(value):
    """A cell as comparable plain data (arrays and numpy values from delta-rs, Decimals, dates)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return json.dumps([_plain(v) for v in value], default=str)
    if isinstance(value, dict):
        return json.dumps({k: _plain(v) for k, v in value.items()}, default=str, sort_keys=True)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime().replace(tzinfo=None)
    if isinstance(value, Decimal):
        return str(value)
    return value


def test_every_line_gets_one_decision_and_the_outcomes_add_up_to_the_batch_paths(decided, stream_day_batch_lake):
    decisions, _, _ = decided
    bronze = read_delta(stream_day_batch_lake, "transactions_bronze", event_date=STREAM_DAY)
    silver = read_delta(stream_day_batch_lake, "transactions_silver", ingest_date=STREAM_DAY)
    dlq = read_delta(stream_day_batch_lake, "transactions_dlq", event_date=STREAM_DAY)
    outcomes = Counter(d.outcome for d in decisions)
    assert len(decisions) == len(bronze)
    assert outcomes[SCORED] == len(silver) and outcomes[REJECTED] == len(dlq)
    assert outcomes[DUPLICATE_EVENT] == len(bronze) - len(silver) - len(dlq) > 0
    # the same reason codes for the same rejected records (the batch path's classes of bad records)
    assert Counter(tuple(d.reason_codes) for d in decisions if d.outcome == REJECTED) == Counter(tuple(r) for r in dlq["reason_codes"])
    assert len({c.split(":")[0] for d in decisions for c in d.reason_codes}) >= 5


def test_silver_rows_are_the_batch_paths_rows(decided, stream_day_batch_lake):
    decisions, _, _ = decided
    batch = read_delta(stream_day_batch_lake, "transactions_silver", ingest_date=STREAM_DAY).set_index("transaction_id")
    columns = [c for c in batch.columns if c not in NOT_COMPARED]
    mismatches = []
    for d in decisions:
        if d.outcome != SCORED:
            continue
        want = batch.loc[d.transaction_id]
        for c in columns:
            a, b = _plain(d.silver.get(c)), _plain(want[c])
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
                if abs(a - b) > 1e-9 * max(1.0, abs(b)):
                    mismatches.append((d.transaction_id, c, a, b))
            elif str(a) != str(b):
                mismatches.append((d.transaction_id, c, a, b))
    assert not mismatches, f"{len(mismatches)} differences, e.g. {mismatches[:10]}"


def test_scores_top_features_and_alerts_are_the_batch_paths(decided, stream_day_batch_lake):
    decisions, champion, _ = decided
    gold = read_delta(stream_day_batch_lake, "risk_scores_gold", ingest_date=STREAM_DAY).set_index("transaction_id")
    alerts = read_delta(stream_day_batch_lake, "anomaly_alerts", ingest_date=STREAM_DAY).set_index("transaction_id")
    scored = [d for d in decisions if d.outcome == SCORED]
    assert len(scored) == len(gold)
    assert {d.risk_band for d in scored} >= {"LOW", "HIGH"}
    for d in scored:
        g = gold.loc[d.transaction_id]
        assert (d.risk_score, d.risk_band, champion.version) == (g["risk_score"], g["risk_band"], g["model_version"]), d.transaction_id
        assert _plain(d.top_features) == _plain([dict(f) for f in g["top_features"]]), d.transaction_id
    raised = {d.transaction_id: (d.alert_id, d.alert_reasons) for d in scored if d.alert_reasons}
    assert raised == {t: (a["alert_id"], list(a["reasons"])) for t, a in alerts.iterrows()}
    assert raised


def test_an_event_keyed_by_another_account_is_decided_and_reported(decided):
    """Producers key by account; an event whose key is another account's is still decided, with MISKEYED_EVENT."""
    decisions, champion, refs = decided
    first = next(d for d in decisions if d.outcome == SCORED)
    decider = Decider("test-salt", DEFAULT_LATENESS_DAYS, DAY)

    def decide(key: bytes) -> object:
        event = Event("transactions", 0, 0, first.event.timestamp_ms, key, first.event.value)
        return decider.decide([event], lambda account: AccountState(), champion, refs)[0]

    own, other = decide(first.account_id.encode()), decide(b"ACC99999999")
    assert own.outcome == other.outcome == SCORED
    assert own.routing_warnings == [] and other.routing_warnings == [MISKEYED]
    assert own.risk_score == other.risk_score


def test_features_that_are_not_finite_are_recorded_as_missing(decided):
    """A NaN or an infinite feature (here: the ratio to an account's NaN limit, or to a vanishing threshold) is None in
    the decision's features and top features, as JSON has no NaN; the other features are the ones decided before."""
    decisions, champion, refs = decided
    first = next(d for d in decisions if d.outcome == SCORED)
    event = Event("transactions", 0, 0, first.event.timestamp_ms, None, first.event.value)
    decider = Decider("test-salt", DEFAULT_LATENESS_DAYS, first.delivery_date)

    def decide(limits: dict) -> object:
        odd = dataclasses.replace(refs, limits={**refs.limits, first.account_id: {**refs.limits.get(first.account_id, {}), **limits}})
        return decider.decide([event], lambda account: AccountState(), champion, odd)[0]

    plain = decide({})
    for limit, feature, value in (("single_transaction_limit", "amount_to_single_limit", float("nan")), ("reporting_threshold", "amount_to_reporting_threshold", 1e-310)):
        changed = decide({limit: value})
        assert plain.features[feature] is not None and changed.features[feature] is None, (feature, changed.features[feature])
        assert all(v is None or math.isfinite(v) for v in changed.features.values())
        assert all(f["value"] is None or math.isfinite(f["value"]) for f in changed.top_features)
        same = [k for k in changed.features if k not in (feature, "exceeds_single_limit", "just_below_reporting_threshold")]
        assert {k: changed.features[k] for k in same} == {k: plain.features[k] for k in same}


def test_a_record_encodes_dates_datetimes_and_decimals_as_text():
    """Dates ISO, datetimes with six fraction digits (naive: UTC; aware: with their offset), decimals as written, NaN and
    infinities null, keys in order; the same again once the dates and naive datetimes are remembered."""
    cest = dt.timezone(dt.timedelta(hours=2))
    record = {
        "b": dt.datetime(2026, 4, 6, 23, 0), "a": dt.datetime(2026, 4, 6, 23, 0, 0, 4500), "day": dt.date(2026, 4, 6),
        "aware": dt.datetime(2026, 4, 6, 23, 0, tzinfo=cest), "also_aware": dt.datetime(2026, 4, 6, 21, 0, tzinfo=dt.timezone.utc),
        "amounts": [Decimal("1.10"), Decimal("1.1"), Decimal("-0.00")], "odd": [float("nan"), float("inf"), -0.0, 1e-07],
        "nested": {"day": dt.date(2026, 4, 6), "at": dt.datetime(2026, 4, 6, 23, 0)}, "text": "é\"",
    }
    want = ('{"b":"2026-04-06T23:00:00.000000","a":"2026-04-06T23:00:00.004500","day":"2026-04-06",'
            '"aware":"2026-04-06T23:00:00.000000+02:00","also_aware":"2026-04-06T21:00:00.000000+00:00",'
            '"amounts":["1.10","1.1","-0.00"],"odd":[null,null,-0.0,1e-7],'
            '"nested":{"day":"2026-04-06","at":"2026-04-06T23:00:00.000000"},"text":"é\\""}').encode("utf-8")
    for _ in range(2):
        assert encode(record) == want
    assert json.loads(encode(record)) == json.loads(want)
