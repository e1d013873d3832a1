"""Both lanes end to end on a real broker, Spark, Delta and MLflow: the stream day published to Kafka, decided by
the decision service, written to the lake by the Delta lane, gives the batch path's rows; a promotion during the
stream changes the model of the later decisions only."""

import datetime as dt
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Consumer

from compliance_assets.realtime.service import DecisionProcessor, ServiceOptions, run_service, state_store
from resources.kafka import decisions_topic
from compliance_assets.streaming.loadgen import create_topic, delivery_lines, publish
from compliance_assets.streaming.stream import StreamOptions, run_stream
from resources.kafka import KafkaConnectionFailure, KafkaResource
from tests.conftest import make_resources
from tests.helpers import STREAM_DAY, read_delta

REPO = Path(__file__).resolve().parents[2]

GOLD_CONTENT = ["transaction_id", "event_time", "event_date", "risk_score", "risk_band", "top_features", "model_version", "dq_status"]
NOT_COMPARED = ("source", "ingest_id", "source_file", "source_line", "dagster_run_id", "processed_at", "rejected_at", "ingested_at", "raised_at", "pipeline_run_id")


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 120, done=None) -> list[dict]:
    """Every record of a topic (from the start) once `expected` have arrived (or `done(records)` holds), parsed."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout_s
    finished = done or (lambda records: len(records) >= expected)
    try:
        while not finished(out) and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                if m.error() is None:
                    out.append({**json.loads(m.value()), "_partition": m.partition(), "_offset": m.offset()})
    finally:
        consumer.close()
    return out


def start_service(spark, lake, kafka: KafkaResource, options: ServiceOptions) -> tuple[threading.Thread, threading.Event, list]:
    resources = make_resources(lake)
    stop, errors = threading.Event(), []

    def target():
        try:
            run_service(spark, resources["lake"], resources["model_registry"], kafka, "test-salt", options, stop=stop, log=lambda m: None)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, stop, errors


def delivered(lake, table: str) -> pd.DataFrame:
    column = "event_date" if table in ("transactions_bronze", "transactions_dlq") else "ingest_date"
    df = read_delta(lake, table, **{column: STREAM_DAY})
    df = df.drop(columns=[c for c in NOT_COMPARED if c in df.columns])
    for c in df.columns:
        if df[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, (str, bytes))).any():
            df[c] = df[c].map(lambda v: None if v is None else json.dumps(v.tolist() if hasattr(v, "tolist") else list(v), default=str))
    return df


@pytest.fixture(scope="module")
def clean_run(spark, champion_lake, kafka_broker, tmp_path_factory):
    """The stream day published to a topic and decided by the service in process, then stopped cleanly:
    (lake, kafka resource, lines, decisions)."""
    lake = tmp_path_factory.mktemp("service") / "lake"
    shutil.copytree(champion_lake, lake, ignore=shutil.ignore_patterns("stream_day"))
    lines = delivery_lines(champion_lake / "stream_day" / "transactions" / f"event_date={STREAM_DAY}")
    kafka = KafkaResource(bootstrap_servers=kafka_broker, topic=f"tx-{uuid.uuid4().hex[:8]}")
    for topic in (kafka.topic, decisions_topic(kafka), kafka.topic + "-dlq"):
        create_topic(kafka_broker, topic, partitions=2)
    assert publish(lines, kafka_broker, kafka.topic, rate=None).delivered == len(lines)
    thread, stop, errors = start_service(spark, lake, kafka, ServiceOptions(delivery_date=STREAM_DAY, snapshot_seconds=1.0))
    decisions = read_topic(kafka_broker, decisions_topic(kafka), len(lines))
    stop.set()
    thread.join(60)
    assert not errors and not thread.is_alive()
    return lake, kafka, lines, decisions


def test_published_events_are_decided_and_the_delta_lane_writes_the_batch_paths_rows(spark, clean_run, stream_day_batch_lake, kafka_broker):
    lake, kafka, lines, decisions = clean_run
    # one decision per event, on the event's own partition, with the outcome the batch path gives
    assert len(decisions) == len(lines) and len({d["ingest_id"] for d in decisions}) == len(lines)
    assert all(d["source_file"] == f"{kafka.topic}/{d['_partition']}" for d in decisions)
    outcomes = Counter(d["outcome"] for d in decisions)
    batch_silver = read_delta(stream_day_batch_lake, "transactions_silver", ingest_date=STREAM_DAY)
    assert outcomes["SCORED"] == len(batch_silver) and outcomes["REJECTED"] > 0 and outcomes["DUPLICATE"] > 0
    dlq_topic = read_topic(kafka_broker, kafka.topic + "-dlq", outcomes["REJECTED"])
    assert sorted(d["ingest_id"] for d in dlq_topic) == sorted(d["ingest_id"] for d in decisions if d["outcome"] == "REJECTED")
    scored = [d for d in decisions if d["outcome"] == "SCORED"]
    assert all(d["model_version"] and d["risk_band"] in ("LOW", "MEDIUM", "HIGH") and len(d["features"]) > 30 for d in scored)

    # the Delta lane: the lake gets the batch path's rows, conserving counts
    resources = make_resources(lake)
    batches = run_stream(spark, resources["lake"], resources["model_registry"], kafka, "test-salt", None, StreamOptions(source="decisions", available_now=True))
    assert batches >= 1
    bronze = read_delta(lake, "transactions_bronze", event_date=STREAM_DAY)
    assert len(bronze) == len(lines) and bronze["ingest_id"].is_unique
    for table, key in (("transactions_silver", "transaction_id"), ("transactions_dlq", "reason_codes"), ("risk_scores_gold", "transaction_id"), ("anomaly_alerts", "alert_id")):
        got, want = delivered(lake, table), delivered(stream_day_batch_lake, table)
        if table == "risk_scores_gold":
            got, want = got[GOLD_CONTENT], want[GOLD_CONTENT]
        cols = sorted(want.columns)
        pd.testing.assert_frame_equal(
            got[cols].sort_values([key, *[c for c in cols if c != key]][:3]).reset_index(drop=True),
            want[cols].sort_values([key, *[c for c in cols if c != key]][:3]).reset_index(drop=True),
            check_dtype=False, obj=table,
        )
    progress = read_delta(lake, "stream_batches")
    assert progress["latency_p95_ms"].notna().any() and progress["input_offsets"].notna().all()

    # the lane run again finds nothing new; decisions re-emitted by a restarted service change nothing
    assert run_stream(spark, resources["lake"], resources["model_registry"], kafka, "test-salt", None, StreamOptions(source="decisions", available_now=True)) == 0


def _content(decision: dict, also: tuple[str, ...] = ()) -> str:
    """A decision without what differs between two emissions of it (its emission time, the topics' names and offsets)."""
    skip = ("decided_at", "_offset", "ingest_id", "source_file", *also)
    kept = {k: v for k, v in decision.items() if k not in skip}
    if kept.get("silver"):
        kept["silver"] = {k: v for k, v in kept["silver"].items() if k not in skip}
    return json.dumps(kept, sort_keys=True)


def _wait(condition, timeout_s: float) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _labelled_batches(table: Path, lane: str) -> set[int]:
    """Micro-batch ids of the Delta lane whose append to a Delta table is committed (the commits' userMetadata
    labels `<lane>:<table>:<day>@<batch>`)."""
    batches = set()
    for log in sorted((table / "_delta_log").glob("*.json")) if (table / "_delta_log").exists() else ():
        for line in log.read_text().splitlines():
            label = json.loads(line).get("commitInfo", {}).get("userMetadata") or ""
            if label.startswith(lane + ":"):
                batches.add(int(label.rsplit("@", 1)[1]))
    return batches


def _by_line(decisions: list[dict]) -> dict[tuple, str]:
    """Decisions by the line they decide: its payload and which copy of it (a line without a key may land on
    any partition, so offsets differ between two topics), as `_content` without the broker time."""
    seen: Counter = Counter()
    out = {}
    for d in sorted(decisions, key=lambda d: (d["_partition"], d["source_line"])):
        seen[d["payload"]] += 1
        out[(d["payload"], seen[d["payload"]])] = _content(d, ("arrived_at", "_partition", "source_line"))
    return out


def _difference(got: dict, want: dict, n: int) -> str:
    """Which fields of two decisions differ (for the failure message)."""
    flat = lambda d: {**{k: v for k, v in d.items() if k != "silver"}, **{f"silver.{k}": v for k, v in (d.get("silver") or {}).items()}}  # noqa: E731
    a, b = flat(got), flat(want)
    return f"{n} decisions differ from the clean run's, e.g. " + ", ".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def test_sigkill_of_both_lanes_loses_nothing_and_re_emits_identical_decisions(spark, champion_lake, clean_run, kafka_broker, tmp_path):
    """Two decision service instances share the topic's partitions; one is killed (SIGKILL) mid-stream and the other
    takes its partition over from its state snapshot: every event has a decision, the re-emitted ones are identical
    and equal a clean run's. The Delta lane, also killed mid-batch (SIGKILL) and restarted, writes each transaction once."""
    _, _, lines, clean_decisions = clean_run
    reference = _by_line(clean_decisions)
    lake = tmp_path / "lake"
    shutil.copytree(champion_lake, lake, ignore=shutil.ignore_patterns("stream_day"))
    crashed = KafkaResource(bootstrap_servers=kafka_broker, topic=f"crash-{uuid.uuid4().hex[:8]}")
    for topic in (crashed.topic, decisions_topic(crashed), crashed.topic + "-dlq"):
        create_topic(kafka_broker, topic, partitions=2)

    command = [sys.executable, "-m", "compliance_assets.realtime", "--lake", str(lake), "--bootstrap", kafka_broker, "--topic", crashed.topic,
               "--delivery-date", STREAM_DAY, "--snapshot-every", "60", "--stats-every", "1", "--group", "crash"]
    env = {**os.environ, "SPARK_MASTER": "local[1]", "SPARK_DRIVER_MEMORY": "1g"}
    half = len(lines) // 2
    publish(lines[:half], kafka_broker, crashed.topic, rate=None)
    # two instances in one group: one in this process, one in its own (the one to be killed)
    thread, stop, errors = start_service(spark, lake, crashed, ServiceOptions(delivery_date=STREAM_DAY, group_id="crash", snapshot_seconds=2.0))
    victim = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    reports: list[dict] = []
    threading.Thread(target=lambda: reports.extend(json.loads(line) for line in victim.stdout if line.startswith("{")), daemon=True).start()
    rest = threading.Thread(target=publish, args=(lines[half:], kafka_broker, crashed.topic), kwargs={"rate": 300})
    try:
        assert len(read_topic(kafka_broker, decisions_topic(crashed), half, timeout_s=180)) >= half
        assert _wait(lambda: any(r.get("assigned") for r in reports), 180), "the second instance never got a partition"
        # the instance snapshots its partition every 60 s only: everything it decides from here on is decided again
        rest.start()
        assert _wait(lambda: max((r.get("events", 0) for r in reports), default=0) >= 100, 60), "the second instance decided nothing"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    rest.join(60)
    later = _renamed(lines, "TK", 100)  # events after the kill: the survivor must take the partition over to decide them
    publish(later, kafka_broker, crashed.topic, rate=None)
    try:  # the survivor takes the killed instance's partition over (after the group's session timeout) from its snapshot
        every_event = lambda records: len({(d["_partition"], d["source_line"]) for d in records}) >= len(lines) + len(later)  # noqa: E731
        decisions = read_topic(kafka_broker, decisions_topic(crashed), 0, timeout_s=240, done=every_event)
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    by_event: dict[tuple, set] = {}
    for d in decisions:
        by_event.setdefault((d["_partition"], d["source_line"]), set()).add(_content(d))
    assert len(by_event) == len(lines) + len(later)  # nothing lost
    assert all(len(v) == 1 for v in by_event.values())  # a re-emitted decision is identical
    assert len(decisions) >= len(by_event) + 100, len(decisions)  # the killed instance's decisions were made again
    final = _by_line([json.loads(next(iter(v))) for v in by_event.values()])
    assert set(reference) <= set(final)
    differing = [k for k in reference if final[k] != reference[k]]
    assert not differing, _difference(json.loads(final[differing[0]]), json.loads(reference[differing[0]]), len(differing))  # a clean run's

    # the Delta lane over the decisions with their re-emissions, killed (SIGKILL) after a micro-batch's first
    # append and before its checkpoint commit, then restarted: each transaction once in the lake
    name = f"decisions_{decisions_topic(crashed)}"
    lane = [sys.executable, "-m", "compliance_assets.streaming", "--source", "decisions", "--lake", str(lake), "--bootstrap", kafka_broker,
            "--topic", crashed.topic, "--available-now", "--max-offsets", "400"]
    victim = subprocess.Popen(lane, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    killed_in, deadline = None, time.monotonic() + 300
    try:
        while killed_in is None and victim.poll() is None and time.monotonic() < deadline:
            for batch in _labelled_batches(lake / "tables" / "transactions_bronze", name):
                if batch >= 1 and not (lake / "checkpoints" / name / "commits" / str(batch)).exists():
                    victim.send_signal(signal.SIGKILL)
                    killed_in = batch
                    break
            time.sleep(0.05)
    finally:
        victim.kill()
        victim.wait(30)
    assert killed_in is not None, "the Delta lane finished before it could be killed mid-batch"
    resources = make_resources(lake)
    run_stream(spark, resources["lake"], resources["model_registry"], crashed, "test-salt", None, StreamOptions(source="decisions", available_now=True, max_offsets_per_trigger=400))
    bronze = read_delta(lake, "transactions_bronze", event_date=STREAM_DAY)
    gold = read_delta(lake, "risk_scores_gold", ingest_date=STREAM_DAY)
    silver = read_delta(lake, "transactions_silver", ingest_date=STREAM_DAY)
    dlq = read_delta(lake, "transactions_dlq", event_date=STREAM_DAY)
    outcomes = Counter(json.loads(v)["outcome"] for v in final.values())
    assert len(bronze) == len(final) and bronze["ingest_id"].is_unique
    assert len(dlq) == outcomes["REJECTED"] and dlq["ingest_id"].is_unique
    assert len(silver) == len(gold) == outcomes["SCORED"] and silver["transaction_id"].is_unique and gold["transaction_id"].is_unique


def _renamed(lines: list[str], prefix: str, n: int) -> list[str]:
    """`n` valid lines as new transactions (their ids given another prefix): the same accounts, new events."""
    out = []
    for line in lines:
        if '"transaction_id":"TX' in line and line.startswith("{") and line.endswith("}"):
            out.append(line.replace('"transaction_id":"TX', f'"transaction_id":"{prefix}', 1))
        if len(out) == n:
            break
    return out


def test_the_services_long_lived_data_is_kept_out_of_the_collectors_generations(spark, clean_run):
    """Once loaded, the champion, the base state and the day's reference data are frozen out of the garbage collector's
    generations (gc.freeze): its full collections walk every tracked object, and would pause the decisions for tenths
    of a second every few tens of seconds at thousands of events a second."""
    lake, kafka, _, _ = clean_run
    resources = make_resources(lake)
    processor = DecisionProcessor(spark, resources["lake"], resources["model_registry"], kafka.topic, "test-salt",
                                  ServiceOptions(delivery_date=STREAM_DAY), state_store(resources["lake"]), log=lambda m: None)
    processor.assign(0, None)
    refs = processor._references_for(dt.date.fromisoformat(STREAM_DAY))
    tracked = {id(o) for o in gc.get_objects()}
    long_lived = {"champion": processor.champion.model, "base state": processor._bootstrap, "KYC": refs.kyc, "merchant risk": refs.merchant_risk}
    assert all(gc.is_tracked(o) for o in long_lived.values())  # objects the collector would walk
    assert [name for name, o in long_lived.items() if id(o) in tracked] == []  # but frozen


def test_a_promotion_during_the_stream_decides_later_events_with_the_new_version(spark, clean_run, kafka_broker):
    lake, kafka, lines, decided_before = clean_run
    registry = make_resources(lake)["model_registry"]
    old = registry.version_by_alias("champion")
    thread, stop, errors = start_service(spark, lake, kafka, ServiceOptions(delivery_date=STREAM_DAY, refresh_seconds=0.5))
    try:
        publish(_renamed(lines, "TA", 100), kafka_broker, kafka.topic, rate=None)
        assert len(read_topic(kafka_broker, decisions_topic(kafka), len(decided_before) + 100)) == len(decided_before) + 100
        new = registry.client().create_model_version(registry.model_name, source=old.source, run_id=old.run_id)
        registry.set_alias("champion", new.version)
        published, deadline = 100, time.monotonic() + 90
        while time.monotonic() < deadline:
            publish(_renamed(lines, f"TB{published:04d}", 20), kafka_broker, kafka.topic, rate=None)
            published += 20
            decided = read_topic(kafka_broker, decisions_topic(kafka), len(decided_before) + published)
            if any(d["model_version"] == str(new.version) for d in decided):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    later = [d for d in decided if d["transaction_id"] and d["transaction_id"][:2] in ("TA", "TB") and d["outcome"] == "SCORED"]
    versions = {d["transaction_id"][:2]: set() for d in later}
    for d in later:
        versions[d["transaction_id"][:2]].add(d["model_version"])
    assert versions["TA"] == {str(old.version)} and str(new.version) in versions["TB"]
    for partition in {d["_partition"] for d in later}:  # per partition, in decision order: the old version, then the new
        order = [d["model_version"] for d in sorted(later, key=lambda d: d["_offset"]) if d["_partition"] == partition]
        assert order == sorted(order, key=lambda v: v == str(new.version))


def test_the_service_over_event_hubs_style_sasl_ssl_decides_and_a_wrong_password_fails_at_once(spark, clean_run, kafka_sasl_broker):
    """The Azure profile's path: SASL_SSL, PLAIN, `$ConnectionString` and a private CA, as the Spark stream's test has it."""
    lake, _, lines, _ = clean_run
    broker = kafka_sasl_broker
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap, topic=f"sasl-{uuid.uuid4().hex[:8]}", security_protocol="SASL_SSL",
                          sasl_username=broker.username, sasl_password=broker.password, ssl_ca_location=broker.ca_location)
    client = kafka.confluent_config()
    create_topic(broker.bootstrap, kafka.topic, partitions=2, client_config=client)
    sample = _renamed(lines, "TS", 100)
    assert publish(sample, broker.bootstrap, kafka.topic, rate=None, producer_config=client).delivered == len(sample)
    thread, stop, errors = start_service(spark, lake, kafka, ServiceOptions(delivery_date=STREAM_DAY, group_id="sasl"))
    try:
        consumer = Consumer({**client, "group.id": f"reader-{uuid.uuid4()}", "auto.offset.reset": "earliest"})
        consumer.subscribe([decisions_topic(kafka)])
        got, deadline = [], time.monotonic() + 120
        while len(got) < len(sample) and time.monotonic() < deadline and not errors:
            got += [json.loads(m.value()) for m in consumer.consume(500, 0.5) if m.error() is None]
        consumer.close()
    finally:
        stop.set()
        thread.join(60)
    assert not errors and sorted(d["transaction_id"] for d in got) == sorted(json.loads(line)["transaction_id"] for line in sample)

    wrong = kafka.model_copy(update={"sasl_password": "Endpoint=sb://local.servicebus.windows.net/;SharedAccessKeyName=x;SharedAccessKey=wrong="})
    started = time.monotonic()
    with pytest.raises(KafkaConnectionFailure) as caught:
        run_service(spark, make_resources(lake)["lake"], make_resources(lake)["model_registry"], wrong, "test-salt", ServiceOptions(group_id="sasl"), log=lambda m: None)
    assert time.monotonic() - started < 20 and "SharedAccessKey" not in str(caught.value)
