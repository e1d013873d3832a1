"""Real single-node Kafka brokers (scripts/kafka.sh) for the streaming and real-time tests, one of each kind per test
session: a PLAINTEXT one, and one with an Event Hubs-like SASL_SSL/PLAIN listener."""

import os
import secrets
import socket
import subprocess
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all sockets held open while choosing, so none repeats)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@contextmanager
def _broker(env: dict[str, str]):
    """Start a broker with kafka.sh and these settings, stop it on exit."""
    env = {**os.environ, **env}

    def script(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "scripts/kafka.sh", command], cwd=REPO, env=env, capture_output=True, text=True)

    from filelock import FileLock

    jars = Path.home() / ".cache" / "compliance-platform"
    jars.mkdir(parents=True, exist_ok=True)
    with FileLock(str(jars / "kafka-start.lock")):  # the first run ever also downloads the broker jars: one worker at a time
        started = script("start")
    if started.returncode != 0:
        script("stop")
        pytest.fail(f"kafka.sh start failed:\n{started.stdout}\n{started.stderr}")
    try:
        yield
    finally:
        script("stop")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """Bootstrap string of a broker started for this session in a throwaway data dir, stopped at the end."""
    port, controller_port = _free_ports(2)
    with _broker({"KAFKA_DATA": str(tmp_path_factory.mktemp("kafka")), "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller_port)}):
        yield f"127.0.0.1:{port}"


@dataclass(frozen=True)
class SaslBroker:
    """A broker emulating Event Hubs' Kafka endpoint: SASL_SSL, PLAIN, user `$ConnectionString`, a
    connection string as password, a certificate from a private CA (ca_location, PEM)."""

    bootstrap: str  # the SASL_SSL listener
    plaintext_bootstrap: str  # the same broker's PLAINTEXT listener (no credentials)
    username: str
    password: str
    ca_location: str


@pytest.fixture(scope="session")
def kafka_sasl_broker(tmp_path_factory) -> SaslBroker:
    """A broker with a SASL_SSL listener (KAFKA_SASL=1) and a fresh random fake connection string,
    started for this session on its own ports and stopped at the end."""
    port, controller_port, sasl_port = _free_ports(3)
    data = tmp_path_factory.mktemp("kafka_sasl")
    broker = SaslBroker(
        bootstrap=f"127.0.0.1:{sasl_port}",
        plaintext_bootstrap=f"127.0.0.1:{port}",
        username="$ConnectionString",
        password=(
            "Endpoint=sb://local.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
            f"SharedAccessKey={secrets.token_urlsafe(32)}="
        ),
        ca_location=str(data / "tls" / "ca.pem"),
    )
    env = {
        "KAFKA_DATA": str(data), "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller_port), "KAFKA_SASL": "1",
        "KAFKA_SASL_PORT": str(sasl_port), "KAFKA_SASL_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": broker.username,
        "KAFKA_SASL_PASSWORD": broker.password,
    }
    with _broker(env):
        yield broker
