"""Event Hubs' Kafka endpoint, emulated: the local broker with a SASL_SSL listener (PLAIN, user
`$ConnectionString`, a connection string as password, a private CA). With the right credentials
the load generator publishes and the stream's Kafka source reads every line; with a wrong password
the pre-flight fails the stream at once, naming endpoint and user but never the secret."""

import datetime as dt
import re
import secrets
import time
import uuid
from collections import Counter

import pytest
from dagster import DagsterInstance, Failure
from dagster._serdes import serialize_value
from pyspark.sql import functions as F

from compliance_assets.streaming.job import transaction_stream_job
from compliance_assets.streaming.loadgen import create_topic, delivery_lines, kafka_client_config_from_env, publish
from compliance_assets.streaming.inputs import KAFKA_SOURCE, kafka_records
from compliance_assets.streaming.stream import StreamOptions, run_stream
from compliance_assets.synthetic.config import SynthConfig
from compliance_assets.synthetic.writer import generate_day
from compliance_assets.transforms.ingestion import bronze_rows
from resources import resources_for_lake
from resources.kafka import KafkaConnectionFailure, KafkaResource, kafka_from_env

DAY = dt.date(2026, 3, 9)


def wrong_connection_string() -> str:
    return f"Endpoint=sb://local.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={secrets.token_urlsafe(32)}="


def sasl_resource(broker, topic: str, password: str | None = None) -> KafkaResource:
    return KafkaResource(
        bootstrap_servers=broker.bootstrap, topic=topic, security_protocol="SASL_SSL", sasl_username=broker.username,
        sasl_password=broker.password if password is None else password, ssl_ca_location=broker.ca_location,
    )


def auth_failure_text(broker) -> str:
    return f"Kafka authentication failed at {broker.bootstrap} as $ConnectionString (SASL PLAIN over SASL_SSL): check EVENTHUBS_CONNECTION_STRING / KAFKA_SASL_PASSWORD"


def test_secret_is_in_no_description_repr_or_ui_config():
    secret = wrong_connection_string()
    kafka = KafkaResource(bootstrap_servers="ns.servicebus.windows.net:9093", security_protocol="SASL_SSL", sasl_username="$ConnectionString", sasl_password=secret)
    for text in (repr(kafka), str(kafka), str(kafka.describe())):
        assert secret not in text and "SharedAccessKey" not in text
    assert kafka.describe()["sasl_username"] == "$ConnectionString"
    # the UI shows resource config: this field is masked there
    fields = KafkaResource.to_config_schema().as_field().config_type.fields
    assert fields["sasl_password"].is_secret and not fields["sasl_username"].is_secret
    # the clients get it, escaped for the JAAS string
    assert kafka.confluent_config()["sasl.password"] == secret
    assert f'password="{secret}"' in kafka.spark_options()["kafka.sasl.jaas.config"]
    quoted = KafkaResource(security_protocol="SASL_SSL", sasl_username="u", sasl_password='a"b\\c').spark_options()["kafka.sasl.jaas.config"]
    assert 'password="a\\"b\\\\c";' in quoted


def test_event_hubs_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "ns.servicebus.windows.net:9093")
    monkeypatch.setenv("EVENTHUBS_CONNECTION_STRING", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s=")
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    assert kafka_client_config_from_env() == {
        "bootstrap.servers": "ns.servicebus.windows.net:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString", "sasl.password": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s=",
    }  # public CAs: no ssl.ca.location
    options = kafka_from_env().spark_options()
    assert options["kafka.security.protocol"] == "SASL_SSL" and "kafka.ssl.truststore.location" not in options


def test_right_credentials_publish_and_the_stream_source_reads_every_line(kafka_sasl_broker, spark, tmp_path, monkeypatch):
    broker = kafka_sasl_broker
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    # the settings a deployment sets (Event Hubs' variables, plus the private CA of the emulator)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC", topic)
    monkeypatch.setenv("EVENTHUBS_CONNECTION_STRING", broker.password)
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", broker.ca_location)
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    kafka = kafka_from_env()
    assert kafka.describe() == {
        "bootstrap_servers": broker.bootstrap, "topic": topic, "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
        "sasl_username": "$ConnectionString", "ssl_ca_location": broker.ca_location,
    }

    # the load generator's own settings (kafka_client_config_from_env) create the topic and publish a day
    generate_day(SynthConfig(seed=11, events_per_day=400, rows_per_file=200), tmp_path / "landing", DAY)
    lines = delivery_lines(tmp_path / "landing" / "transactions" / f"event_date={DAY.isoformat()}")
    client = kafka_client_config_from_env()
    assert client == kafka.confluent_config()
    create_topic(broker.bootstrap, topic, partitions=2, client_config=client)
    assert publish(lines, broker.bootstrap, topic, rate=None, producer_config=client).delivered == len(lines)

    assert kafka.preflight(timeout_s=20)["partitions"] == 2

    # the stream's Kafka source (spark_options() over SASL_SSL, trusting the CA) shaped as bronze rows
    bronze: list = []

    def collect(records, batch_id):
        rows = bronze_rows(records, KAFKA_SOURCE, F.col("delivery_date"), None, ingested_at=F.col("arrived_at"))
        bronze.extend(rows.select("ingest_id", "event_date", "source_file", "payload").collect())

    query = (
        kafka_records(spark, kafka, delivery_date=DAY.isoformat()).writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start()
    )
    try:
        assert query.awaitTermination(180), "the stream did not finish within 180 s"
    finally:
        query.stop()
    assert Counter(r.payload for r in bronze) == Counter(lines)
    assert len({r.ingest_id for r in bronze}) == len(lines)
    assert {r.event_date for r in bronze} == {DAY} and {r.source_file for r in bronze} == {f"{topic}/0", f"{topic}/1"}
    assert broker.password not in str(query.lastProgress)


def test_wrong_password_fails_the_preflight_and_the_stream_at_once(kafka_sasl_broker, spark, tmp_path):
    broker = kafka_sasl_broker
    wrong = wrong_connection_string()
    kafka = sasl_resource(broker, "transactions", password=wrong)

    started = time.monotonic()
    with pytest.raises(KafkaConnectionFailure) as caught:
        kafka.preflight(timeout_s=30)
    assert time.monotonic() - started < 15  # a rejected password ends the check, no waiting for the timeout
    failure = caught.value
    assert isinstance(failure, Failure) and not failure.allow_retries
    assert str(failure).startswith(auth_failure_text(broker))
    shown = " ".join([str(failure), repr(failure), str(failure.metadata), repr(kafka), str(kafka.describe())])
    assert wrong not in shown and broker.password not in shown and "SharedAccessKey" not in shown

    # run_stream checks before anything else (this lake has no champion: that would fail differently)
    resources = resources_for_lake(tmp_path / "lake", salt="test-salt", kafka=kafka)
    with pytest.raises(KafkaConnectionFailure, match=re.escape(auth_failure_text(broker))):
        run_stream(spark, resources["lake"], resources["model_registry"], kafka, "test-salt", None, StreamOptions(source="kafka", available_now=True))

    # the Dagster job fails its run with that message, and no event of the run holds the secret
    instance = DagsterInstance.ephemeral()
    result = transaction_stream_job.execute_in_process(
        run_config={"ops": {"run_transaction_stream": {"config": {"source": "kafka", "available_now": True}}}},
        resources=resources, instance=instance, raise_on_error=False,
    )
    assert not result.success
    step_failure = result.failure_data_for_node("run_transaction_stream")
    assert auth_failure_text(broker) in step_failure.user_failure_data.description
    events = serialize_value(instance.all_logs(result.run_id))
    assert auth_failure_text(broker).replace("$", "") in events.replace("$", "")
    assert wrong not in events and "SharedAccessKey" not in events


def test_wrong_password_fails_sparks_kafka_source(kafka_sasl_broker, spark, tmp_path):
    """Without the pre-flight, Spark's Kafka source with a wrong password fails the query (it does
    not read nothing and succeed), and its error does not carry the secret."""
    broker = kafka_sasl_broker
    wrong = wrong_connection_string()
    kafka = sasl_resource(broker, "transactions", password=wrong)
    query = (
        kafka_records(spark, kafka).writeStream.foreachBatch(lambda df, batch_id: df.count())
        .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start()
    )
    try:
        with pytest.raises(Exception) as caught:
            query.awaitTermination(120)
    finally:
        query.stop()
    message = str(caught.value)
    assert "Authentication failed" in message or "SaslAuthenticationException" in message, message[:2000]
    assert wrong not in message and broker.password not in message


def test_unreachable_broker_fails_the_preflight_with_cannot_reach(kafka_sasl_broker):
    from tests.kafka_brokers import _free_ports

    (port,) = _free_ports(1)
    kafka = KafkaResource(
        bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_SSL", sasl_username="$ConnectionString",
        sasl_password=kafka_sasl_broker.password, ssl_ca_location=kafka_sasl_broker.ca_location,
    )
    with pytest.raises(KafkaConnectionFailure, match=rf"^cannot reach Kafka at 127\.0\.0\.1:{port} \(SASL PLAIN over SASL_SSL\) within 2s") as caught:
        kafka.preflight(timeout_s=2)
    assert caught.value.allow_retries and kafka_sasl_broker.password not in str(caught.value)
