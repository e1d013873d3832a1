"""The transaction topic: a local Kafka broker by default, Azure Event Hubs' Kafka endpoint in production.

Event Hubs speaks the Kafka protocol on port 9093 with SASL_SSL and the PLAIN mechanism: the user
name is the literal `$ConnectionString` and the password is the namespace's connection string,
read from EVENTHUBS_CONNECTION_STRING (injected from Key Vault, never logged or put in metadata).
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

EVENTHUBS_USER = "$ConnectionString"


class KafkaResource(ConfigurableResource):
    """Where the streaming job reads transactions from, and how it authenticates."""

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="host:port list; Event Hubs: <namespace>.servicebus.windows.net:9093.")
    topic: str = Field(default="transactions", description="Topic (Event Hubs: the event hub) carrying one JSON transaction per message.")
    security_protocol: str = Field(default="PLAINTEXT", description="PLAINTEXT locally; SASL_SSL for Event Hubs.")
    sasl_mechanism: str = Field(default="PLAIN", description="SASL mechanism when the protocol is SASL_*.")
    sasl_username: str = Field(default="", description="SASL user; `$ConnectionString` for Event Hubs.")
    sasl_password: str = Field(default="", description="SASL password (Event Hubs: the connection string). Secret.")
    starting_offsets: str = Field(default="earliest", description="Where a stream without a checkpoint starts: earliest or latest.")

    def spark_options(self) -> dict[str, str]:
        """Options for Spark's Kafka source. Contains the secret: never log the result."""
        options = {
            "kafka.bootstrap.servers": self.bootstrap_servers,
            "subscribe": self.topic,
            "startingOffsets": self.starting_offsets,
            # a topic whose retention deleted unread offsets must stop the job, not skip records silently
            "failOnDataLoss": "true",
            "kafka.security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            password = self.sasl_password.replace("\\", "\\\\").replace('"', '\\"')
            options["kafka.sasl.mechanism"] = self.sasl_mechanism
            options["kafka.sasl.jaas.config"] = (
                f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{self.sasl_username}" password="{password}";'
            )
        return options

    def describe(self) -> dict[str, str]:
        """What may be shown in logs and metadata (no secret)."""
        return {"bootstrap_servers": self.bootstrap_servers, "topic": self.topic, "security_protocol": self.security_protocol}


def kafka_from_env() -> KafkaResource:
    """KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*; with
    EVENTHUBS_CONNECTION_STRING set, the Event Hubs settings (SASL_SSL, PLAIN, `$ConnectionString`)."""
    connection = os.getenv("EVENTHUBS_CONNECTION_STRING", "")
    return KafkaResource(
        bootstrap_servers=os.getenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        topic=os.getenv("KAFKA_TOPIC", "transactions"),
        security_protocol=os.getenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL" if connection else "PLAINTEXT"),
        sasl_mechanism=os.getenv("KAFKA_SASL_MECHANISM", "PLAIN"),
        sasl_username=os.getenv("KAFKA_SASL_USERNAME", EVENTHUBS_USER if connection else ""),
        sasl_password=connection or os.getenv("KAFKA_SASL_PASSWORD", ""),
        starting_offsets=os.getenv("KAFKA_STARTING_OFFSETS", "earliest"),
    )
