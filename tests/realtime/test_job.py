"""The decision_service job on a real broker, Spark, Delta and MLflow. A first run, stopped the way Dagster's
Terminate stops a run (an interrupt in the run's main thread), decides the first half of a few hundred published
events and saves its state on the way out; a second run with a time limit resumes from that state, decides the
second half and succeeds: one decision per event on the decisions topic, and transaction_decisions observations
with the service's rate and latency in the run's log."""

import os
import shutil
import signal
import threading
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from dagster import DagsterInstance

from compliance_assets.realtime.job import DECISIONS, decision_service_job
from compliance_assets.realtime.service import ServiceOptions, state_store
from resources.kafka import decisions_topic
from compliance_assets.streaming.loadgen import create_topic, delivery_lines, publish
from resources.kafka import KafkaResource
from tests.conftest import make_resources
from tests.helpers import STREAM_DAY
from tests.realtime.test_service import read_topic

EVENTS = 300


def run_job(resources: dict, **config):
    return decision_service_job.execute_in_process(
        run_config={"ops": {"run_decision_service": {"config": {"delivery_date": STREAM_DAY, "stats_every_seconds": 1.0, **config}}}},
        resources=resources, instance=DagsterInstance.ephemeral(), raise_on_error=False,
    )


def terminate_once_decided(bootstrap: str, topic: str, count: int) -> threading.Thread:
    """Interrupt this process's main thread (as Dagster's Terminate does to a run worker) once `count` decisions are out."""
    def watch():
        read_topic(bootstrap, topic, count, timeout_s=90)
        time.sleep(1.5)  # a statistics report or two
        if any(t.name == "decision-service" and t.is_alive() for t in threading.enumerate()):
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"offsets-{uuid.uuid4()}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)}
    finally:
        consumer.close()


def test_terminate_saves_the_state_and_the_next_run_resumes_and_reports_rate_and_latency(champion_lake, kafka_broker, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(champion_lake, lake, ignore=shutil.ignore_patterns("stream_day"))
    lines = delivery_lines(champion_lake / "stream_day" / "transactions" / f"event_date={STREAM_DAY}")[:EVENTS]
    kafka = KafkaResource(bootstrap_servers=kafka_broker, topic=f"tx-{uuid.uuid4().hex[:8]}")
    # the output topics too: the service creates missing ones, but a topic created a moment ago may not yet be in
    # the broker's metadata when the service checks it (its pre-flight then fails the run; the next one succeeds)
    for topic in (kafka.topic, decisions_topic(kafka), kafka.topic + "-dlq"):
        create_topic(kafka_broker, topic, partitions=2)
    resources = {**make_resources(lake), "kafka": kafka}
    half = EVENTS // 2

    # run 1: until terminated
    assert publish(lines[:half], kafka_broker, kafka.topic, rate=None).delivered == half
    watcher = terminate_once_decided(kafka_broker, decisions_topic(kafka), half)
    first = run_job(resources, stop_after_seconds=0.0)
    watcher.join(5)
    for service in [t for t in threading.enumerate() if t.name == "decision-service"]:
        service.join(60)  # its clean stop, however the interrupt reached the op
    assert not first.success and not any(t.name == "decision-service" for t in threading.enumerate())
    [failure] = [e for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "DagsterExecutionInterruptedError" in str(failure.step_failure_data.error)
    # the clean stop saved every partition's state at its end offset: nothing will be decided twice
    published = end_offsets(kafka_broker, kafka.topic)
    store = state_store(resources["lake"])
    assert {p: store.load(ServiceOptions.group_id, kafka.topic, p)[0] for p in (0, 1)} == published

    # run 2: stops after a time limit, resuming from the saved state
    assert publish(lines[half:], kafka_broker, kafka.topic, rate=None).delivered == EVENTS - half
    # its first event waits for the reference data: 10-15 s on this 2-core machine under load; the limit leaves room for that
    second = run_job(resources, stop_after_seconds=25.0)
    assert second.success

    decisions = read_topic(kafka_broker, decisions_topic(kafka), EVENTS, timeout_s=30)
    assert len(decisions) == EVENTS and len({d["ingest_id"] for d in decisions}) == EVENTS

    observations = [e.asset_observation_data.asset_observation for e in second.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observations and all(o.asset_key.to_user_string() == DECISIONS for o in observations)
    meta = [{k: v.value for k, v in o.metadata.items()} for o in observations]
    busy = [m for m in meta if m["rate_events_per_s"] > 0]
    assert busy and all(0 < m["latency_p50_ms"] <= m["latency_p95_ms"] <= m["latency_max_ms"] and m["outputs"] >= m["events"] for m in busy)
    assert all(m["champion_version"] == "1" for m in meta)
    assert [m["report"] for m in meta][:-1] == ["periodic"] * (len(meta) - 1) and meta[-1]["report"].startswith("final")
    assert meta[-1]["events"] == EVENTS - half and meta[-1]["snapshots"] > 0
    assert any(m["assigned_partitions"] == "0, 1" for m in meta)
