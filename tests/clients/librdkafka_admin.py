#!/usr/bin/env python3
"""Client compatibility: librdkafka's admin API (Python confluent-kafka) against a
Kafka-compatible broker.

    python3 librdkafka_admin.py BOOTSTRAP [SECTION...]     (e.g. 127.0.0.1:9092)

Checks, each printed as "ok: ..." or "FAIL: ...":
  - create_topics, describe_configs
  - section "offsets": list_offsets with OffsetSpec.earliest(), latest() and
    for_timestamp(ts): records are produced with known timestamps, and for_timestamp must
    return the first offset whose timestamp is >= ts (-1 when there is none)
  - section "delete": delete_records: 10 records in a partition, delete those before
    offset 5; the low watermark (get_watermark_offsets and list_offsets earliest) is then 5
    and a consumer from the beginning starts at offset 5
  - incremental_alter_configs with every operation type, each followed by describe_configs
    checking the value: section "configs": SET retention.ms, SET and DELETE cleanup.policy;
    section "append": APPEND to the list config cleanup.policy (delete -> delete,compact);
    section "subtract": SUBTRACT from it (delete,compact -> compact)
  - section "autocreate": producing to a topic that does not exist yet works (Kafka
    auto-creates it)
  - at the end, always, a fresh produce and group consume still work: no admin call may
    take the broker down
Without SECTION arguments every section runs, in the order above. Naming sections runs
only those, which shows each failure on its own when an earlier one breaks the broker.
After a failure an "info:" line says whether the broker still answers metadata requests;
when it does not, the remaining checks fail as not run.
Exit code 0 when every check passed, 1 otherwise. The whole run is bounded.
"""
import os
import sys
import time
import uuid

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from checks import Checks

SCRIPT_TIMEOUT_S = 150
REQUEST_TIMEOUT_S = 10
N = 20

ALL_SECTIONS = ("offsets", "delete", "configs", "append", "subtract", "autocreate")
if len(sys.argv) < 2 or any(s not in ALL_SECTIONS for s in sys.argv[2:]):
    sys.exit(f"usage: librdkafka_admin.py BOOTSTRAP [SECTION...]   (sections: {' '.join(ALL_SECTIONS)}; default all)")
BOOTSTRAP = sys.argv[1]
# The sections to run, in this order; the final produce and group consume always run.
SELECTED = [s for s in ALL_SECTIONS if s in sys.argv[2:]] or list(ALL_SECTIONS)
SUFFIX = uuid.uuid4().hex[:8]
# librdkafka logs to stderr: errors only, unless LOG_LEVEL=debug (protocol debugging) or
# LOG_LEVEL=info (its usual warnings and notices, e.g. disconnects).
CLIENT = {
    "debug": {"debug": "broker,protocol,admin,cgrp"},
    "info": {},
}.get(os.environ.get("LOG_LEVEL", "").lower(), {"log_level": 3})


def name(what):
    return f"librdkafka-{what}-{SUFFIX}"


def probe():
    """Prints whether the broker still answers a metadata request on a new connection, and
    returns it."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "socket.timeout.ms": 4000, "log_level": 3})
    try:
        topics = admin.list_topics(timeout=5).topics
        print(f"info: broker still answers metadata requests ({len(topics)} topics)", flush=True)
        return True
    except Exception as err:  # noqa: BLE001
        print(f"info: broker no longer answers metadata requests: {type(err).__name__}: {err}", flush=True)
        return False


def new_producer():
    return Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 10000,
            "socket.timeout.ms": 8000,
            **CLIENT,
        }
    )


def produce(producer, topic, batch):
    """Produces (key, value, headers, partition, timestamp) tuples and waits for every
    acknowledgement; returns the (partition, offset) of each record in order."""
    results = [None] * len(batch)

    def report(index):
        def on_delivery(err, msg):
            results[index] = err if err is not None else (msg.partition(), msg.offset())

        return on_delivery

    for index, (key, value, headers, partition, timestamp) in enumerate(batch):
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": report(index)}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        producer.produce(topic, **kwargs)
        producer.poll(0)
    remaining = producer.flush(15)
    errors = [r for r in results if not isinstance(r, tuple)]
    if remaining or errors:
        raise AssertionError(f"{remaining} unacknowledged, {len(errors)} failed: {errors[:3]}")
    return results


def records(tag, count, partition=None, timestamps=None):
    return [
        (
            f"{tag}-key-{i}".encode(),
            f"{tag}-value-{i}-".encode() + bytes([0xFF, 0x00, i & 0xFF]),
            [("origin", b"librdkafka"), ("seq", str(i).encode())],
            partition,
            timestamps[i] if timestamps else None,
        )
        for i in range(count)
    ]


def result_of(futures):
    """The single result of a dict of admin futures."""
    (future,) = futures.values()
    return future.result(timeout=REQUEST_TIMEOUT_S + 5)


def topic_configs(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return result_of(admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S))


def list_offset(admin, tp, spec):
    info = result_of(admin.list_offsets({tp: spec}, request_timeout=REQUEST_TIMEOUT_S))
    return info.offset, info.timestamp


def consume_group(topic, group, expected, limit_s=20):
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "socket.timeout.ms": 8000,
            **CLIENT,
        }
    )
    got = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + limit_s
        grace_until = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                if message.error():
                    raise KafkaException(message.error())
                got.append(message)
            if len(got) >= expected and grace_until is None:
                grace_until = time.monotonic() + 0.7
            if grace_until is not None and time.monotonic() >= grace_until:
                break
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def verify(sent, got):
    problems = []
    by_key = {}
    for message in got:
        if message.key() in by_key:
            problems.append(f"duplicate {message.key()!r}")
        by_key[message.key()] = message
    for key, value, headers, _, _ in sent:
        message = by_key.get(key)
        if message is None:
            problems.append(f"missing {key!r}")
            continue
        if message.value() != value:
            problems.append(f"{key!r}: value {message.value()!r} != {value!r}")
        if (message.headers() or []) != headers:
            problems.append(f"{key!r}: headers {message.headers()!r} != {headers!r}")
    if len(got) != len(sent):
        problems.append(f"got {len(got)} records, sent {len(sent)}")
    if problems:
        more = f"; ... ({len(problems)} problems)" if len(problems) > 8 else ""
        raise AssertionError("; ".join(problems[:8]) + more)
    partitions = {message.partition() for message in got}
    return f"{len(got)} records, keys/values/headers match, no duplicates, {len(partitions)} partitions"


def section_offsets(checks, admin, producer, topics):
    """list_offsets with earliest, latest and for_timestamp."""
    base = (int(time.time() * 1000) // 1000 - 3600) * 1000  # an hour ago, on a whole second
    stamps = [base + i * 1000 for i in range(5)]
    tp = TopicPartition(topics["offsets"], 0)
    placed = checks.run(
        f"produce 5 records with timestamps {stamps[0]}..{stamps[-1]} (1 s apart) to partition 0",
        produce,
        producer,
        topics["offsets"],
        records("ts", 5, partition=0, timestamps=stamps),
    )
    if placed:

        def expect_offset(spec, expected, what):
            def run():
                offset, timestamp = list_offset(admin, tp, spec)
                if offset != expected:
                    raise AssertionError(f"offset {offset} (timestamp {timestamp}), expected {expected}")
                return f"offset {offset}, timestamp {timestamp}"

            checks.run(f"list_offsets {what}", run)

        expect_offset(OffsetSpec.earliest(), 0, "OffsetSpec.earliest() is 0")
        expect_offset(OffsetSpec.latest(), 5, "OffsetSpec.latest() is 5")
        expect_offset(OffsetSpec.for_timestamp(stamps[2]), 2, "OffsetSpec.for_timestamp(ts of record 2) is 2")
        expect_offset(OffsetSpec.for_timestamp(stamps[2] - 500), 2, "OffsetSpec.for_timestamp(between records 1 and 2) is 2")
        expect_offset(OffsetSpec.for_timestamp(stamps[0] - 60000), 0, "OffsetSpec.for_timestamp(before all records) is 0")
        expect_offset(OffsetSpec.for_timestamp(stamps[-1] + 60000), -1, "OffsetSpec.for_timestamp(after all records) is -1")
    else:
        checks.skip("list_offsets", "the produce failed")


def section_delete(checks, admin, producer, topics):
    """delete_records, then watermarks, list_offsets and a consumer from the beginning."""
    delete_topic = topics["delete"]
    dtp = TopicPartition(delete_topic, 0)
    placed = checks.run(f"produce 10 records to {delete_topic} partition 0", produce, producer, delete_topic, records("del", 10, partition=0))
    if placed and [offset for _, offset in placed] == list(range(10)):

        def delete():
            deleted = result_of(admin.delete_records([TopicPartition(delete_topic, 0, 5)], request_timeout=REQUEST_TIMEOUT_S, operation_timeout=REQUEST_TIMEOUT_S))
            if deleted.low_watermark != 5:
                raise AssertionError(f"low watermark {deleted.low_watermark}, expected 5")
            return f"low watermark {deleted.low_watermark}"

        if checks.run("delete_records before offset 5", delete):

            def watermarks():
                consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": name("watermarks"), "socket.timeout.ms": 8000, **CLIENT})
                try:
                    low, high = consumer.get_watermark_offsets(dtp, timeout=REQUEST_TIMEOUT_S, cached=False)
                finally:
                    consumer.close()
                # The high watermark (10) is checked by list_offsets latest in "offsets".
                if low != 5:
                    raise AssertionError(f"watermarks ({low}, {high}): low is not 5")
                return f"watermarks ({low}, {high})"

            checks.run("after delete_records: get_watermark_offsets low watermark is 5", watermarks)

            def earliest():
                offset, _ = list_offset(admin, dtp, OffsetSpec.earliest())
                if offset != 5:
                    raise AssertionError(f"earliest offset {offset}, expected 5")
                return f"earliest offset {offset}"

            checks.run("after delete_records: list_offsets earliest is 5", earliest)

            def from_beginning():
                consumer = Consumer(
                    {
                        "bootstrap.servers": BOOTSTRAP,
                        "group.id": name("from-beginning"),
                        "enable.auto.commit": False,
                        "socket.timeout.ms": 8000,
                        **CLIENT,
                    }
                )
                try:
                    consumer.assign([TopicPartition(delete_topic, 0, OFFSET_BEGINNING)])
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        message = consumer.poll(0.2)
                        if message is None:
                            continue
                        if message.error():
                            raise KafkaException(message.error())
                        if message.offset() != 5:
                            raise AssertionError(f"first record at offset {message.offset()}, expected 5")
                        return f"first record at offset {message.offset()}, key {message.key()!r}"
                    raise AssertionError("no record within 10 s")
                finally:
                    consumer.close()

            checks.run("after delete_records: a consumer from the beginning starts at offset 5", from_beginning)
        else:
            checks.skip("after delete_records: watermarks and consumer from the beginning", "delete_records failed")
    else:
        checks.skip("delete_records", f"the 10 records were not placed at offsets 0..9: {placed}")


def alter_and_describe(checks, admin, topic, op, config, value, expected):
    """Applies one incremental config change to `topic`; `expected` is the value
    describe_configs must show afterwards, or a callable that judges the entry (None when
    absent) and returns True or why not."""

    def run():
        resource = ConfigResource(
            ResourceType.TOPIC,
            topic,
            incremental_configs=[ConfigEntry(config, value, incremental_operation=op)],
        )
        result_of(admin.incremental_alter_configs([resource], request_timeout=REQUEST_TIMEOUT_S))
        entry = topic_configs(admin, topic).get(config)
        shown = None if entry is None else entry.value
        if callable(expected):
            verdict = expected(entry)
            if verdict is not True:
                raise AssertionError(f"describe_configs shows {config}={shown!r}: {verdict}")
        elif shown is None or shown.replace(" ", "").split(",") != expected.split(","):
            raise AssertionError(f"describe_configs shows {config}={shown!r}, expected {expected!r}")
        return f"describe_configs shows {config}={shown!r}"

    label = f" {value!r}" if value is not None else ""
    return checks.run(f"incremental_alter_configs {op.name} {config}{label}", run)


def section_configs(checks, admin, producer, topics):
    """incremental_alter_configs SET and DELETE, each checked with describe_configs."""
    topic = topics["configs"]

    def back_to_default(entry):
        # Kafka lists the default (delete) with source DEFAULT_CONFIG; an absent entry is
        # accepted too. What must not remain is the value that was set.
        if entry is None or entry.value == "delete":
            return True
        return "expected the default 'delete' (or no entry)"

    alter_and_describe(checks, admin, topic, AlterConfigOpType.SET, "retention.ms", "3600000", "3600000")
    alter_and_describe(checks, admin, topic, AlterConfigOpType.SET, "cleanup.policy", "compact", "compact")
    alter_and_describe(checks, admin, topic, AlterConfigOpType.DELETE, "cleanup.policy", None, back_to_default)


def section_append(checks, admin, producer, topics):
    """incremental_alter_configs APPEND to the list config cleanup.policy."""
    topic = topics["append"]
    if alter_and_describe(checks, admin, topic, AlterConfigOpType.SET, "cleanup.policy", "delete", "delete"):
        alter_and_describe(checks, admin, topic, AlterConfigOpType.APPEND, "cleanup.policy", "compact", "delete,compact")
    else:
        checks.skip("incremental_alter_configs APPEND cleanup.policy", "the SET before it failed")


def section_subtract(checks, admin, producer, topics):
    """incremental_alter_configs SUBTRACT from the list config cleanup.policy."""
    topic = topics["subtract"]
    if alter_and_describe(checks, admin, topic, AlterConfigOpType.SET, "cleanup.policy", "delete,compact", "delete,compact"):
        alter_and_describe(checks, admin, topic, AlterConfigOpType.SUBTRACT, "cleanup.policy", "delete", "compact")
    else:
        checks.skip("incremental_alter_configs SUBTRACT cleanup.policy", "the SET before it failed")


def section_autocreate(checks, admin, producer, topics):
    """Producing to a topic that does not exist yet."""
    missing = name("autocreate")
    # Kafka auto-creates a topic a producer names (auto.create.topics.enable=true).
    auto_sent = records("auto", 5)
    if checks.run(f"produce to topic {missing} that does not exist yet (auto-creation)", produce, producer, missing, auto_sent):
        checks.run(
            f"auto-created topic {missing}: consumer group reads the 5 records back",
            lambda: verify(auto_sent, consume_group(missing, name("auto-group"), len(auto_sent))),
        )
    else:
        checks.skip(f"auto-created topic {missing}: group consume", "the produce failed")


def section_final(checks, admin, producer, topics):
    """After all the admin calls a produce and a group consume still work."""
    final_sent = records("final", N)
    if checks.run(f"final: produce {N} keyed records with headers to {topics['final']}", produce, producer, topics["final"], final_sent):
        checks.run(
            f"final: consumer group reads all {N} back from {topics['final']}",
            lambda: verify(final_sent, consume_group(topics["final"], name("final-group"), N)),
        )
    else:
        checks.skip("final: group consume", "the produce failed")


def main():
    checks = Checks("librdkafka-admin", SCRIPT_TIMEOUT_S, probe)
    print(f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]}) against {BOOTSTRAP}", flush=True)
    topics = {what: name(what) for what in ("configs", "append", "subtract", "offsets", "delete", "final")}
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "socket.timeout.ms": REQUEST_TIMEOUT_S * 1000, **CLIENT})
    producer = new_producer()

    def create():
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=3, replication_factor=1) for t in topics.values()],
            operation_timeout=REQUEST_TIMEOUT_S,
            request_timeout=REQUEST_TIMEOUT_S,
        )
        for future in futures.values():
            future.result(timeout=REQUEST_TIMEOUT_S + 5)
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics
        counts = {t: len(metadata[t].partitions) if t in metadata else None for t in topics.values()}
        if any(c != 3 for c in counts.values()):
            raise AssertionError(f"partition counts {counts}")
        return f"{len(topics)} topics with 3 partitions each"

    checks.run("create_topics", create)

    def describe():
        configs = topic_configs(admin, topics["configs"])
        if not configs:
            # Not a failure here, but Kafka lists every topic config, defaults included.
            print("info: describe_configs of a new topic returned no entries (Kafka lists every topic config with its default)", flush=True)
        return f"{len(configs)} entries: " + ", ".join(f"{k}={v.value}" for k, v in sorted(configs.items())[:6])

    checks.run("describe_configs of a new topic", describe)

    for section in SELECTED:
        globals()[f"section_{section}"](checks, admin, producer, topics)

    section_final(checks, admin, producer, topics)
    checks.finish()


if __name__ == "__main__":
    main()
