"""The transaction topic: a local Kafka broker by default, Azure Event Hubs' Kafka endpoint in production.

Event Hubs speaks the Kafka protocol on port 9093 with SASL_SSL and the PLAIN mechanism: the user
name is the literal `$ConnectionString` and the password is the namespace's connection string,
read from EVENTHUBS_CONNECTION_STRING (injected from Key Vault, never logged or put in metadata).
Its certificate is signed by a public CA, so no trust settings are needed; a broker with a private
CA (the local emulator of scripts/kafka.sh, KAFKA_SASL=1) is trusted through `ssl_ca_location`.

Spark's Kafka source takes `spark_options()`, confluent-kafka clients (the load generator, the
pre-flight check) `confluent_config()`: the same endpoint, protocol, credentials and CA for both.
`preflight()` connects once before a stream starts, so wrong credentials fail a run at once with
a message naming the endpoint and the user (never the secret), instead of Spark retrying forever.
"""

import logging
import os
import time

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import EnvVar, ConfigurableResource, Failure
from pydantic import Field

EVENTHUBS_USER = "$ConnectionString"
SECRET_SOURCES = "EVENTHUBS_CONNECTION_STRING / KAFKA_SASL_PASSWORD"
# librdkafka's own log lines (one per failed connection attempt, dozens in a pre-flight) go to this
# logger, silent unless a handler is added to it for debugging: the pre-flight's failure sums them up
CLIENT_LOG = logging.getLogger("resources.kafka.librdkafka")
CLIENT_LOG.addHandler(logging.NullHandler())
CLIENT_LOG.propagate = False
# librdkafka errors that end a pre-flight at once: retrying cannot fix them
AUTH_ERRORS = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError.ILLEGAL_SASL_STATE, KafkaError.UNSUPPORTED_SASL_MECHANISM}
TLS_ERRORS = {KafkaError._SSL}


class KafkaConnectionFailure(Failure):
    """The pre-flight check could not use the topic: authentication, TLS, reachability or a missing topic.
    Its text names the endpoint, the user and the settings to check, never the secret."""

    def __init__(self, description: str, metadata: dict[str, str], retryable: bool):
        super().__init__(description=description, metadata=metadata, allow_retries=retryable)


class KafkaResource(ConfigurableResource):
    """Where the streaming job reads transactions from, and how it authenticates."""

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="host:port list; Event Hubs: <namespace>.servicebus.windows.net:9093.")
    topic: str = Field(default="transactions", description="Topic (Event Hubs: the event hub) carrying one JSON transaction per message.")
    security_protocol: str = Field(default="PLAINTEXT", description="PLAINTEXT locally; SASL_SSL for Event Hubs (SSL, SASL_PLAINTEXT also work).")
    sasl_mechanism: str = Field(default="PLAIN", description="SASL mechanism when the protocol is SASL_*.")
    sasl_username: str = Field(default="", description="SASL user; `$ConnectionString` for Event Hubs.")
    # repr=False keeps it out of repr(); dagster__is_secret masks it in the UI's resource view
    sasl_password: str = Field(
        default="", repr=False, description="SASL password (Event Hubs: the connection string). Secret.", json_schema_extra={"dagster__is_secret": True}
    )
    ssl_ca_location: str = Field(
        default="",
        description="PEM file of the CA that signed the broker's certificate, for a private CA (the local emulator); "
        "empty = the system's public CAs (Event Hubs).",
    )
    starting_offsets: str = Field(default="earliest", description="Where a stream without a checkpoint starts: earliest or latest.")

    def resolved_password(self) -> str:
        """The SASL password: resolved by Dagster inside a run; read from its variable outside one (the load
        generator, the stream's command line)."""
        return (self.sasl_password.get_value() or "") if isinstance(self.sasl_password, EnvVar) else self.sasl_password

    @property
    def _protocol(self) -> str:
        return self.security_protocol.upper()

    @property
    def _uses_sasl(self) -> bool:
        return self._protocol.startswith("SASL")

    @property
    def _uses_tls(self) -> bool:
        return self._protocol in ("SSL", "SASL_SSL")

    def spark_options(self) -> dict[str, str]:
        """Options for Spark's Kafka source. Contains the secret: never log the result."""
        options = {
            "kafka.bootstrap.servers": self.bootstrap_servers,
            "subscribe": self.topic,
            "startingOffsets": self.starting_offsets,
            # a topic whose retention deleted unread offsets must stop the job, not skip records silently
            "failOnDataLoss": "true",
            "kafka.security.protocol": self._protocol,
        }
        if self._uses_sasl:
            options["kafka.sasl.mechanism"] = self.sasl_mechanism
            options["kafka.sasl.jaas.config"] = (
                f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{_jaas_quote(self.sasl_username)}" '
                f'password="{_jaas_quote(self.resolved_password())}";'
            )
        if self._uses_tls and self.ssl_ca_location:
            # Kafka's Java client reads a PEM trust store (KIP-651): the same file confluent-kafka uses
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = self.ssl_ca_location
        return options

    def confluent_config(self) -> dict[str, str]:
        """Settings for confluent-kafka (librdkafka) clients: producer, consumer, admin. Contains the
        secret: never log the result."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self._protocol}
        if self._uses_sasl:
            config.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username, "sasl.password": self.resolved_password()})
        if self._uses_tls and self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config

    def describe(self) -> dict[str, str]:
        """What may be shown in logs and metadata (no secret)."""
        described = {"bootstrap_servers": self.bootstrap_servers, "topic": self.topic, "security_protocol": self._protocol}
        if self._uses_sasl:
            described.update({"sasl_mechanism": self.sasl_mechanism, "sasl_username": self.sasl_username})
        if self._uses_tls and self.ssl_ca_location:
            described["ssl_ca_location"] = self.ssl_ca_location
        return described

    def preflight(self, timeout_s: float = 20.0) -> dict[str, str | int]:
        """Connect with the stream's settings and read the topic's metadata; returns describe() and
        the topic's partition count. Raises KafkaConnectionFailure (a dagster.Failure) at once on
        rejected credentials or a failed TLS handshake, after `timeout_s` if no broker answers, and
        if the topic does not exist. The secret is in no message."""
        errors: list[KafkaError] = []
        # a consumer handle: its metadata requests do not auto-create the topic (an admin or producer
        # handle's do, on brokers that allow it); it joins no group, group.id is only required
        consumer = Consumer(
            {
                **self.confluent_config(),
                "group.id": "compliance-platform-preflight",
                "enable.auto.commit": False,
                "error_cb": errors.append,
                "logger": CLIENT_LOG,
            }
        )
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    metadata = consumer.list_topics(self.topic, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                    break
                except KafkaException as e:
                    errors.append(e.args[0])
                consumer.poll(0)  # serves error_cb: authentication and TLS failures arrive there
                self._raise_decisive(errors)
                if time.monotonic() >= deadline:
                    last = self._redact(errors[-1].str()) if errors else "no answer"
                    raise self._failure(
                        f"cannot reach Kafka at {self.bootstrap_servers} ({self._how()}) within {timeout_s:.0f}s: {last}. "
                        "Check KAFKA_BOOTSTRAP_SERVERS (Event Hubs: <namespace>.servicebus.windows.net:9093), the network path "
                        "and KAFKA_SECURITY_PROTOCOL.",
                        retryable=True,
                    )
        finally:
            consumer.close()
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            reason = self._redact(topic.error.str()) if topic is not None and topic.error is not None else "not in the metadata"
            raise self._failure(
                f"topic {self.topic!r} is not available at {self.bootstrap_servers} as {self.sasl_username or 'anonymous'}: {reason}. "
                "Check KAFKA_TOPIC (Event Hubs: the event hub's name; the event hub must exist), or create it "
                "(locally the load generator does).",
                retryable=True,
            )
        return {**self.describe(), "partitions": len(topic.partitions)}

    def _how(self) -> str:
        return f"SASL {self.sasl_mechanism} over {self._protocol}" if self._uses_sasl else self._protocol

    def _raise_decisive(self, errors: list[KafkaError]) -> None:
        codes = {e.code() for e in errors}
        if codes & AUTH_ERRORS:
            raise self._failure(
                f"Kafka authentication failed at {self.bootstrap_servers} as {self.sasl_username} ({self._how()}): "
                f"check {SECRET_SOURCES} (and KAFKA_SASL_USERNAME / KAFKA_SASL_MECHANISM).",
                retryable=False,
            )
        if codes & TLS_ERRORS:
            reason = self._redact(next(e.str() for e in errors if e.code() in TLS_ERRORS))
            raise self._failure(
                f"TLS handshake with Kafka at {self.bootstrap_servers} failed ({self._how()}): {reason}. Check KAFKA_SSL_CA_LOCATION "
                "(empty for Event Hubs; the broker's CA certificate, PEM, for a private CA) and that the port speaks TLS.",
                retryable=False,
            )

    def _failure(self, message: str, retryable: bool) -> KafkaConnectionFailure:
        return KafkaConnectionFailure(self._redact(message), metadata=self.describe(), retryable=retryable)

    def _redact(self, text: str) -> str:
        """The text without the secret (also in its JAAS-quoted form), should a client ever echo it."""
        if self.resolved_password():
            for secret in {self.resolved_password(), _jaas_quote(self.resolved_password())}:
                text = text.replace(secret, "***")
        return text


def _jaas_quote(value: str) -> str:
    """A value for a double-quoted JAAS option: backslashes and quotes escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


DECISIONS_SUFFIX, DLQ_SUFFIX = "-decisions", "-dlq"


def decisions_topic(kafka: KafkaResource) -> str:
    """The decisions topic of a transactions topic: what the decision service writes and the Delta lane reads."""
    return kafka.topic + DECISIONS_SUFFIX


def create_topic(bootstrap: str, topic: str, partitions: int = 2, client_config: dict | None = None) -> None:
    """Create the topic (broker-default replication) and wait; an existing topic is fine."""
    admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions)], operation_timeout=30)[topic]
    # exception() rather than result(): a caught traceback would keep the client alive (and reconnecting)
    error = future.exception(timeout=60)
    if error is not None and error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
        raise error


def kafka_from_env() -> KafkaResource:
    """KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CA_LOCATION;
    with EVENTHUBS_CONNECTION_STRING set, the Event Hubs settings (SASL_SSL, PLAIN, `$ConnectionString`)."""
    connection = os.getenv("EVENTHUBS_CONNECTION_STRING", "")
    return KafkaResource(
        bootstrap_servers=os.getenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        topic=os.getenv("KAFKA_TOPIC", "transactions"),
        security_protocol=os.getenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL" if connection else "PLAINTEXT"),
        sasl_mechanism=os.getenv("KAFKA_SASL_MECHANISM", "PLAIN"),
        sasl_username=os.getenv("KAFKA_SASL_USERNAME", EVENTHUBS_USER if connection else ""),
        # through dg.EnvVar: Dagster's stored run configuration names the variable, never the secret
        sasl_password=EnvVar("EVENTHUBS_CONNECTION_STRING") if connection else EnvVar("KAFKA_SASL_PASSWORD") if os.getenv("KAFKA_SASL_PASSWORD") else "",
        ssl_ca_location=os.getenv("KAFKA_SSL_CA_LOCATION", ""),
        starting_offsets=os.getenv("KAFKA_STARTING_OFFSETS", "earliest"),
    )


def kafka_from_args(bootstrap: str | None, topic: str | None) -> KafkaResource:
    """`kafka_from_env` with a command line's --bootstrap and --topic, where given."""
    kafka = kafka_from_env()
    if bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap})
    if topic:
        kafka = kafka.model_copy(update={"topic": topic})
    return kafka
