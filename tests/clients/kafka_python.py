#!/usr/bin/env python3
"""Client compatibility: kafka-python against a Kafka-compatible broker.

    python3 kafka_python.py BOOTSTRAP          (e.g. 127.0.0.1:9092)

Checks, each printed as "ok: ..." or "FAIL: ...":
  - KafkaAdminClient creates topics with 3 partitions and describe_topics shows them
  - KafkaProducer (acks=all) produces keyed records with headers
  - producing to a topic that does not exist yet works (Kafka auto-creates it)
  - a KafkaConsumer in a group consumes them all (nothing missing or twice), commits (the
    committed offsets equal the end offsets, which add up to what was produced), and closes
    cleanly
  - a second consumer in the same group gets its partitions quickly (the first one left the
    group) and sees nothing again (committed offsets are honoured)
  - at the end a fresh produce and group consume still work
After a failure an "info:" line says whether the broker still answers metadata requests;
when it does not, the remaining checks fail as not run.
Exit code 0 when every check passed, 1 otherwise. The whole run is bounded.
"""
import logging
import os
import socket
import struct
import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from checks import Checks

SCRIPT_TIMEOUT_S = 150
N = 30
# A second consumer must have its partitions within this long after the first closed.
REJOIN_LIMIT_S = 5.0

if len(sys.argv) != 2:
    sys.exit("usage: kafka_python.py BOOTSTRAP")
BOOTSTRAP = sys.argv[1]
SUFFIX = uuid.uuid4().hex[:8]
logging.basicConfig(level=os.environ.get("LOG_LEVEL", "CRITICAL").upper())


def name(what):
    return f"kafka-python-{what}-{SUFFIX}"


def make(cls, **config):
    """`cls(**config)` without the settings this kafka-python version does not know
    (3.x dropped api_version_auto_timeout_ms, for one)."""
    known = getattr(cls, "DEFAULT_CONFIG", None)
    if known is not None:
        config = {k: v for k, v in config.items() if k in known or k == "bootstrap_servers"}
    return cls(**config)


def probe():
    """Prints whether the broker still answers a metadata request on a new connection, and
    returns it. The request is written by hand (Metadata v1, all topics) because kafka-python
    can return an empty topic list instead of an error when the broker is gone."""
    try:
        host, _, port = BOOTSTRAP.rpartition(":")
        client_id = b"sluice-compat-probe"
        body = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", -1)
        with socket.create_connection((host, int(port)), timeout=4) as sock:
            sock.settimeout(4)
            sock.sendall(struct.pack(">i", len(body)) + body)

            def read(n):
                data = b""
                while len(data) < n:
                    chunk = sock.recv(n - len(data))
                    if not chunk:
                        raise ConnectionError("connection closed by the broker")
                    data += chunk
                return data

            (size,) = struct.unpack(">i", read(4))
            response = read(size)
        (correlation_id,) = struct.unpack(">i", response[:4])
        if correlation_id != 1:
            raise ValueError(f"correlation id {correlation_id}")
        print(f"info: broker still answers metadata requests ({size} bytes)", flush=True)
        return True
    except Exception as err:  # noqa: BLE001
        print(f"info: broker no longer answers metadata requests: {type(err).__name__}: {err}", flush=True)
        return False


def records(tag, count):
    return [
        (
            f"{tag}-key-{i}".encode(),
            f"{tag}-value-{i}-".encode() + bytes([0xFF, 0x00, i & 0xFF]),
            [("origin", b"kafka-python"), ("seq", str(i).encode()), ("bin", b"\x00\x01\xfe")],
        )
        for i in range(count)
    ]


def new_producer():
    return make(
        KafkaProducer,
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        linger_ms=5,
        max_block_ms=10000,
        request_timeout_ms=8000,
        delivery_timeout_ms=15000,
        api_version_auto_timeout_ms=5000,
        retry_backoff_ms=200,
    )


def produce(producer, topic, batch):
    futures = [producer.send(topic, key=k, value=v, headers=h) for k, v, h in batch]
    producer.flush(timeout=15)
    partitions = set()
    for future in futures:
        metadata = future.get(timeout=1)
        partitions.add(metadata.partition)
    return f"{len(batch)} records acknowledged on partitions {sorted(partitions)}"


def new_consumer(topic, group):
    consumer = make(
        KafkaConsumer,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=30000,
        request_timeout_ms=12000,
        fetch_max_wait_ms=200,
        api_version_auto_timeout_ms=5000,
    )
    consumer.subscribe([topic])
    return consumer


def poll_records(consumer, expected, limit_s):
    """Polls until `expected` records arrived (then a little longer, to catch duplicates)."""
    got = []
    deadline = time.monotonic() + limit_s
    grace_until = None
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            got.extend(batch)
        if len(got) >= expected and grace_until is None:
            grace_until = time.monotonic() + 0.7
        if grace_until is not None and time.monotonic() >= grace_until:
            break
    return got


def verify(sent, got):
    problems = []
    by_key = {}
    for record in got:
        if record.key in by_key:
            problems.append(f"duplicate {record.key!r}")
        by_key[record.key] = record
    for key, value, headers in sent:
        record = by_key.get(key)
        if record is None:
            problems.append(f"missing {key!r}")
            continue
        if record.value != value:
            problems.append(f"{key!r}: value {record.value!r} != {value!r}")
        if [(h, bytes(v)) for h, v in record.headers] != headers:
            problems.append(f"{key!r}: headers {record.headers!r} != {headers!r}")
    unexpected = set(by_key) - {key for key, _, _ in sent}
    if unexpected:
        problems.append(f"unexpected records {sorted(unexpected)[:3]}")
    if len(got) != len(sent):
        problems.append(f"got {len(got)} records, sent {len(sent)}")
    if problems:
        more = f"; ... ({len(problems)} problems)" if len(problems) > 8 else ""
        raise AssertionError("; ".join(problems[:8]) + more)
    partitions = {record.partition for record in got}
    return f"{len(got)} records, keys/values/headers match, no duplicates, {len(partitions)} partitions"


def group_round_trip(checks, label, producer, topic, tag, group):
    sent = records(tag, N)
    if not checks.run(f"{label}: produce {N} keyed records with headers to {topic} (acks=all)", produce, producer, topic, sent):
        checks.skip(f"{label}: group consume of {topic}", "the produce failed")
        return

    def consume():
        consumer = new_consumer(topic, group)
        try:
            got = poll_records(consumer, N, 20)
            result = verify(sent, got)
            consumer.commit()
        finally:
            consumer.close()
        return result

    checks.run(f"{label}: consumer group {group} reads all {N} back and commits", consume)


def main():
    checks = Checks("kafka-python", SCRIPT_TIMEOUT_S, probe)
    import kafka

    print(f"kafka-python {kafka.__version__} against {BOOTSTRAP}", flush=True)
    topic, final_topic, missing = name("main"), name("final"), name("autocreate")
    group = name("group")

    admin = checks.run(
        "KafkaAdminClient connects",
        lambda: make(KafkaAdminClient, bootstrap_servers=BOOTSTRAP, request_timeout_ms=10000, api_version_auto_timeout_ms=5000),
    )

    def create():
        response = admin.create_topics([NewTopic(t, 3, 1) for t in (topic, final_topic)], timeout_ms=10000)
        if isinstance(response, dict):  # kafka-python 3.x
            errors = [t for t in response.get("topics", []) if t.get("error_code")]
        else:  # 2.x: a CreateTopicsResponse with (topic, error_code, error_message) tuples
            errors = [e for e in getattr(response, "topic_errors", []) if e[1] != 0]
        if errors:
            raise AssertionError(f"topic errors {errors}")
        return "no topic errors"

    def describe():
        # kafka-python asks for the authorized operations (Metadata v8) and decodes them.
        described = admin.describe_topics([topic, final_topic])
        counts = {d.get("topic", d.get("name")): len(d["partitions"]) for d in described}  # 2.x: topic, 3.x: name
        if counts != {topic: 3, final_topic: 3}:
            raise AssertionError(f"partition counts {counts}")
        return "3 partitions each"

    if admin:
        checks.run("KafkaAdminClient.create_topics: 2 topics with 3 partitions", create)
        checks.run("KafkaAdminClient.describe_topics shows them", describe)

    producer = checks.run("KafkaProducer connects", new_producer)
    if not producer:
        checks.skip("produce and consume", "no producer")
        checks.finish()

    sent = records("main", N)
    produced = checks.run(f"KafkaProducer(acks=all): produce {N} keyed records with headers to {topic}", produce, producer, topic, sent)

    # Kafka auto-creates a topic a producer names (auto.create.topics.enable=true).
    auto_sent = records("auto", 5)
    if checks.run(f"KafkaProducer: produce to topic {missing} that does not exist yet (auto-creation)", produce, producer, missing, auto_sent):

        def consume_auto():
            consumer = new_consumer(missing, name("auto-group"))
            try:
                return verify(auto_sent, poll_records(consumer, len(auto_sent), 20))
            finally:
                consumer.close()

        checks.run(f"auto-created topic {missing}: consumer group reads the 5 records back", consume_auto)
    else:
        checks.skip(f"auto-created topic {missing}: group consume", "the produce failed")

    if produced:
        first = {}

        def consume_first():
            consumer = new_consumer(topic, group)
            first["consumer"] = consumer
            got = poll_records(consumer, N, 20)
            result = verify(sent, got)
            consumer.commit()
            return result

        ok = checks.run(f"consumer A in group {group} reads all {N} and commits", consume_first)

        def committed_at_end():
            consumer = first["consumer"]
            partitions = [TopicPartition(topic, p) for p in range(3)]
            ends = consumer.end_offsets(partitions)
            committed = {tp.partition: consumer.committed(tp) for tp in partitions}
            ends = {tp.partition: offset for tp, offset in ends.items()}
            if committed != ends or sum(ends.values()) != N:
                raise AssertionError(f"committed offsets {committed}, end offsets (high watermarks) {ends}; {N} records were produced")
            return f"committed = end offsets = {ends}"

        if ok:
            checks.run("consumer A's committed offsets equal the end offsets (high watermarks sum to N)", committed_at_end)

        def close_first():
            started = time.monotonic()
            first.pop("consumer").close()
            return f"close() took {time.monotonic() - started:.2f} s"

        if "consumer" in first:
            closed = checks.run("consumer A closes cleanly", close_first, always=True)
        else:
            closed = False

        if ok and closed:
            second = {}

            def second_assigned():
                consumer = new_consumer(topic, group)
                second["consumer"] = consumer
                started = time.monotonic()
                seen = []
                while not consumer.assignment() and time.monotonic() - started < 25:
                    for batch in consumer.poll(timeout_ms=100).values():
                        seen.extend(batch)
                waited = time.monotonic() - started
                second["seen"] = seen
                print(f"info: consumer B was assigned {len(consumer.assignment())} partitions after {waited:.2f} s", flush=True)
                if not consumer.assignment():
                    raise AssertionError(f"no partitions after {waited:.1f} s")
                if waited > REJOIN_LIMIT_S:
                    raise AssertionError(
                        f"assigned only after {waited:.1f} s (> {REJOIN_LIMIT_S} s): the group waited for consumer A's session to time out"
                    )
                return f"{len(consumer.assignment())} partitions after {waited:.2f} s"

            assigned = checks.run(f"consumer B in group {group} gets partitions quickly after A closed", second_assigned)

            def second_sees_nothing():
                consumer = second["consumer"]
                seen = second["seen"] + poll_records(consumer, 1, 3)
                if seen:
                    raise AssertionError(f"{len(seen)} records consumed again, first at partition {seen[0].partition} offset {seen[0].offset}")
                positions = {p: consumer.position(TopicPartition(topic, p)) for p in range(3)}
                return f"no records again; positions {positions}"

            if assigned or ("consumer" in second and second["consumer"].assignment()):
                # Even when B was late, what it reads once assigned is worth checking.
                checks.run("consumer B sees nothing again (committed offsets honoured)", second_sees_nothing)
            else:
                checks.skip("consumer B sees nothing again", "it got no partitions")
            if "consumer" in second:
                checks.run("consumer B closes cleanly", second.pop("consumer").close, always=True)
        else:
            checks.skip(f"consumer B in group {group}", "consumer A failed")
    else:
        checks.skip(f"group consume of {topic}", "the produce failed")

    # Whatever happened above, the broker must still take records and serve a group.
    group_round_trip(checks, "final", producer, final_topic, "final", name("final-group"))

    checks.run("KafkaProducer closes", producer.close, timeout=5, always=True)
    if admin:
        checks.run("KafkaAdminClient closes", admin.close, always=True)
    checks.finish()


if __name__ == "__main__":
    main()
