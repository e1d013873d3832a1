"""A real single-node Kafka broker (scripts/kafka.sh) for the streaming tests, one per test session."""

import os
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all sockets held open while choosing, so none repeats)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """Bootstrap string of a broker started for this session in a throwaway data dir, stopped at the end."""
    port, controller_port = _free_ports(2)
    env = {**os.environ, "KAFKA_DATA": str(tmp_path_factory.mktemp("kafka")), "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller_port)}

    def script(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "scripts/kafka.sh", command], cwd=REPO, env=env, capture_output=True, text=True)

    started = script("start")  # the first run ever also downloads the broker jars
    if started.returncode != 0:
        script("stop")
        pytest.fail(f"kafka.sh start failed:\n{started.stdout}\n{started.stderr}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        script("stop")
