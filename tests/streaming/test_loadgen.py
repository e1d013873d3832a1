"""The load generator against a real broker: every line of a synthetic day arrives exactly once,
keyed by account, in order per account; defective lines included."""

import datetime as dt
import json
import time
import uuid
from collections import Counter, defaultdict

from confluent_kafka import Consumer, KafkaException, TopicPartition

from compliance_assets.streaming.loadgen import account_key, create_topic, delivery_lines, publish
from compliance_assets.synthetic.config import SynthConfig
from compliance_assets.synthetic.writer import generate_day

DAY = dt.date(2026, 3, 2)


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 120.0) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of the topic's messages in arrival order, read from the earliest offset by a new
    group, and the topic's total message count (end offsets), which must equal `expected`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=1.0):
                if m.error():
                    raise KafkaException(m.error())
                got.append((m.key(), m.value()))
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        assert total == expected, f"topic holds {total} messages, {expected} were published"
        return got
    finally:
        consumer.close()


def fresh_topic(bootstrap: str) -> str:
    topic = f"loadgen-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions=2)
    create_topic(bootstrap, topic, partitions=2)  # existing already: fine
    return topic


def test_every_line_once_in_order_per_account(kafka_broker, tmp_path):
    generate_day(SynthConfig(seed=7, events_per_day=2000, rows_per_file=500), tmp_path, DAY)
    lines = delivery_lines(tmp_path / "transactions" / f"event_date={DAY.isoformat()}")
    assert len(lines) == 2000

    def parsed(line):
        try:
            return json.loads(line)
        except ValueError:
            return None

    assert any(parsed(line) is None for line in lines), "the day should hold malformed lines"
    topic = fresh_topic(kafka_broker)

    stats = publish(lines, kafka_broker, topic, rate=5000)
    assert (stats.sent, stats.delivered, stats.failed) == (len(lines), len(lines), 0)

    got = consume_all(kafka_broker, topic, len(lines))
    assert Counter(v for _, v in got) == Counter(line.encode() for line in lines)
    published, arrived = defaultdict(list), defaultdict(list)
    for line in lines:
        published[account_key(line)].append(line.encode())
    for key, value in got:
        arrived[key].append(value)
    assert arrived == published  # per key: same values in the order published
    for key, value in got:
        record = parsed(value)
        if isinstance(record, dict):
            account = record.get("account_id")
            assert key == (account.encode() if isinstance(account, str) else None)
        else:  # malformed: keyed by the account id if the cut left it whole
            assert key == account_key(value.decode())


def test_edge_lines_and_loop(kafka_broker, tmp_path):
    (tmp_path / "part-00001.jsonl").write_bytes(b'{"account_id":"ACC00000002"}\r\n\n  \n{"account_id":"ACC0\xff"}')
    (tmp_path / "part-00000.jsonl").write_bytes(b'{"account_id":"ACC00000001","amount":\n')
    (tmp_path / "_manifest.json").write_text("{}")
    lines = delivery_lines(tmp_path)
    assert lines == ['{"account_id":"ACC00000001","amount":', '{"account_id":"ACC00000002"}', "", "  ", '{"account_id":"ACC0\udcff"}']
    assert [account_key(line) for line in lines] == [b"ACC00000001", b"ACC00000002", None, None, b"ACC0\xff"]

    topic = fresh_topic(kafka_broker)
    publish(lines, kafka_broker, topic, rate=None)
    got = consume_all(kafka_broker, topic, len(lines))
    assert Counter(v for _, v in got) == Counter(line.encode("utf-8", "surrogateescape") for line in lines)

    looped = publish(lines, kafka_broker, fresh_topic(kafka_broker), rate=200, duration=0.5, loop=True)
    assert looped.sent > len(lines) and looped.delivered == looped.sent and looped.failed == 0


def test_items_that_are_not_lines_go_out_as_their_message_says_when_sent(kafka_broker):
    """publish's `message` hook (the streaming benchmark's replay of decision records): each item becomes its
    value, key and partition at the moment it is sent, in order per partition."""
    topic = fresh_topic(kafka_broker)
    items = [(i % 2, f"K{i % 5}".encode(), f"record-{i}".encode()) for i in range(40)]
    sent_at: list[float] = []

    def message(item):
        sent_at.append(time.monotonic())
        partition, key, value = item
        return value + b"@" + str(len(sent_at)).encode(), key, partition

    stats = publish(items, kafka_broker, topic, rate=400, message=message)
    assert (stats.sent, stats.delivered, stats.failed) == (40, 40, 0)
    assert sent_at[-1] - sent_at[0] >= 0.05  # paced: called as each item went out, not all up front
    consumer = Consumer({"bootstrap.servers": kafka_broker, "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
        got: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < 40 and time.monotonic() < deadline:
            for m in consumer.consume(100, 1.0):
                assert m.error() is None, m.error()
                got[m.partition()].append((m.key(), m.value()))
    finally:
        consumer.close()
    for p in (0, 1):
        expected = [(key, value + b"@" + str(i + 1).encode()) for i, (partition, key, value) in enumerate(items) if partition == p]
        assert got[p] == expected
