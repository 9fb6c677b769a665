#!/usr/bin/env python3
"""Client compatibility: aiokafka against a Kafka-compatible broker.

    python3 aiokafka_client.py BOOTSTRAP          (e.g. 127.0.0.1:9092)

Checks, each printed as "ok: ..." or "FAIL: ...":
  - AIOKafkaAdminClient creates topics with 3 partitions
  - AIOKafkaProducer (acks=all) produces keyed records with headers
  - producing to a topic that does not exist yet works (Kafka auto-creates it)
  - consumer A in group G consumes everything and commits (committed offsets = end offsets,
    which add up to what was produced); the generation it joined with is
    printed and must be >= 1 (Kafka's first generation is 1; aiokafka sends LeaveGroup on
    stop() only when its generation is > 0)
  - close -> reopen: after `await A.stop()` consumer B in G is assigned partitions within a
    few seconds (the time is printed; more than 5 s fails: the group then waited for A's
    session to time out instead of seeing A leave), and sees nothing again
  - at the end a fresh produce and group consume still work
After a failure an "info:" line says whether the broker still answers metadata requests;
when it does not, the remaining checks fail as not run.
Exit code 0 when every check passed, 1 otherwise. The whole run is bounded.
"""
import asyncio
import logging
import os
import sys
import time
import uuid

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from checks import AsyncChecks

SCRIPT_TIMEOUT_S = 150
N = 30
SESSION_TIMEOUT_MS = 10000
REJOIN_LIMIT_S = 5.0
REJOIN_WAIT_S = 25.0

if len(sys.argv) != 2:
    sys.exit("usage: aiokafka_client.py BOOTSTRAP")
BOOTSTRAP = sys.argv[1]
SUFFIX = uuid.uuid4().hex[:8]
logging.basicConfig(level=os.environ.get("LOG_LEVEL", "CRITICAL").upper())


def name(what):
    return f"aiokafka-{what}-{SUFFIX}"


async def probe():
    """Prints whether the broker still answers a metadata request on a new connection, and
    returns it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=4000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        topics = await asyncio.wait_for(admin.list_topics(), 5)
        print(f"info: broker still answers metadata requests ({len(topics)} topics)", flush=True)
        return True
    except Exception as err:  # noqa: BLE001
        print(f"info: broker no longer answers metadata requests: {type(err).__name__}: {err or 'timed out'}", flush=True)
        return False
    finally:
        try:
            await asyncio.wait_for(admin.close(), 3)
        except Exception:  # noqa: BLE001
            pass


def records(tag, count):
    return [
        (
            f"{tag}-key-{i}".encode(),
            f"{tag}-value-{i}-".encode() + bytes([0xFF, 0x00, i & 0xFF]),
            [("origin", b"aiokafka"), ("seq", str(i).encode()), ("bin", b"\x00\x01\xfe")],
        )
        for i in range(count)
    ]


async def produce(producer, topic, batch):
    futures = [await producer.send(topic, key=k, value=v, headers=h) for k, v, h in batch]
    partitions = {(await future).partition for future in futures}
    return f"{len(batch)} records acknowledged on partitions {sorted(partitions)}"


def new_consumer(topic, group):
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        rebalance_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=30000,
        request_timeout_ms=12000,
        fetch_max_wait_ms=200,
    )


async def get_records(consumer, expected, limit_s):
    """Fetches until `expected` records arrived (then a little longer, to catch duplicates)."""
    got = []
    deadline = time.monotonic() + limit_s
    grace_until = None
    while time.monotonic() < deadline:
        for batch in (await consumer.getmany(timeout_ms=300)).values():
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


async def stop_quietly(client):
    try:
        await asyncio.wait_for(client.stop(), 5)
    except Exception:  # noqa: BLE001
        pass


async def consume_group(topic, group, sent, limit_s=20):
    consumer = new_consumer(topic, group)
    try:
        await consumer.start()
        result = verify(sent, await get_records(consumer, len(sent), limit_s))
        await consumer.commit()
    finally:
        await stop_quietly(consumer)
    return result


async def main():
    checks = AsyncChecks("aiokafka", SCRIPT_TIMEOUT_S, probe)
    print(f"aiokafka {aiokafka.__version__} against {BOOTSTRAP}", flush=True)
    topic, final_topic, missing = name("main"), name("final"), name("autocreate")
    group = name("group")

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=10000)

    async def create():
        await admin.start()
        await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in (topic, final_topic)], timeout_ms=10000)
        described = await admin.describe_topics([topic, final_topic])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        if counts != {topic: 3, final_topic: 3}:
            raise AssertionError(f"partition counts {counts}")
        return "describe_topics shows 3 partitions each"

    await checks.run("AIOKafkaAdminClient creates 2 topics with 3 partitions", 20, create())

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5, request_timeout_ms=10000)
    if not await checks.run("AIOKafkaProducer starts", 10, producer.start()):
        checks.skip("produce and consume", "no producer")
        checks.finish()

    sent = records("main", N)
    produced = await checks.run(f"AIOKafkaProducer(acks=all): produce {N} keyed records with headers to {topic}", 20, produce(producer, topic, sent))

    # Kafka auto-creates a topic a producer names (auto.create.topics.enable=true).
    auto_sent = records("auto", 5)
    if await checks.run(f"AIOKafkaProducer: produce to topic {missing} that does not exist yet (auto-creation)", 15, produce(producer, missing, auto_sent)):
        await checks.run(f"auto-created topic {missing}: consumer group reads the 5 records back", 25, consume_group(missing, name("auto-group"), auto_sent))
    else:
        checks.skip(f"auto-created topic {missing}: group consume", "the produce failed")

    if produced:
        a = new_consumer(topic, group)

        async def consume_a():
            await a.start()
            got = await get_records(a, N, 20)
            result = verify(sent, got)
            await a.commit()
            return result

        a_ok = await checks.run(f"consumer A in group {group} reads all {N} and commits", 25, consume_a())

        async def committed_at_end():
            partitions = [TopicPartition(topic, p) for p in range(3)]
            ends = {tp.partition: offset for tp, offset in (await a.end_offsets(partitions)).items()}
            committed = {tp.partition: await a.committed(tp) for tp in partitions}
            if committed != ends or sum(ends.values()) != N:
                raise AssertionError(f"committed offsets {committed}, end offsets (high watermarks) {ends}; {N} records were produced")
            return f"committed = end offsets = {ends}"

        if a_ok:
            await checks.run("consumer A's committed offsets equal the end offsets (high watermarks sum to N)", 10, committed_at_end())
        generation = getattr(getattr(a, "_coordinator", None), "generation", None)
        print(f"info: consumer A's generation (consumer._coordinator.generation) = {generation}", flush=True)

        async def generation_check():
            if generation is None or generation < 1:
                raise AssertionError(
                    f"generation is {generation}; Kafka's first generation is 1, and aiokafka sends LeaveGroup on stop() only when generation > 0"
                )
            return f"generation {generation}"

        if a_ok:
            await checks.run("consumer A joined with a generation >= 1", 1, generation_check())

        async def stop_a():
            started = time.monotonic()
            await a.stop()
            return f"stop() took {time.monotonic() - started:.2f} s"

        a_stopped = await checks.run("consumer A stops cleanly (await consumer.stop())", 10, stop_a(), always=True)

        if a_ok and a_stopped:
            b = new_consumer(topic, group)

            async def b_assigned():
                started = time.monotonic()
                try:
                    await b.start()
                    while not b.assignment() and time.monotonic() - started < REJOIN_WAIT_S:
                        await asyncio.sleep(0.05)
                except Exception as err:
                    raise AssertionError(f"after {time.monotonic() - started:.1f} s: {type(err).__name__}: {err}") from err
                waited = time.monotonic() - started
                b_generation = b._coordinator.generation
                print(
                    f"info: consumer B was assigned {len(b.assignment())} partitions after {waited:.2f} s (generation {b_generation}; session timeout {SESSION_TIMEOUT_MS / 1000:.0f} s)",
                    flush=True,
                )
                if not b.assignment():
                    raise AssertionError(f"no partitions after {waited:.1f} s")
                if waited > REJOIN_LIMIT_S:
                    raise AssertionError(
                        f"assigned only after {waited:.1f} s (> {REJOIN_LIMIT_S} s): the group waited for consumer A's session to time out (A never sent LeaveGroup?)"
                    )
                return f"{len(b.assignment())} partitions after {waited:.2f} s"

            b_ok = await checks.run(f"consumer B in group {group} is assigned partitions within {REJOIN_LIMIT_S:.0f} s of A's stop()", REJOIN_WAIT_S + 5, b_assigned())

            async def b_nothing():
                seen = await get_records(b, 1, 3)
                if seen:
                    raise AssertionError(f"{len(seen)} records consumed again, first at partition {seen[0].partition} offset {seen[0].offset}")
                positions = {p: await b.position(TopicPartition(topic, p)) for p in range(3)}
                return f"no records again; positions {positions}"

            if b_ok or b.assignment():
                # Even when B was late, what it reads once assigned is worth checking.
                await checks.run("consumer B sees nothing again (committed offsets honoured)", 10, b_nothing())
            else:
                checks.skip("consumer B sees nothing again", "it got no partitions")
            await checks.run("consumer B stops cleanly", 10, b.stop(), always=True)
        else:
            checks.skip(f"consumer B in group {group}", "consumer A failed")
            await stop_quietly(a)
    else:
        checks.skip(f"group consume of {topic}", "the produce failed")

    # Whatever happened above, the broker must still take records and serve a group.
    final_sent = records("final", N)
    if await checks.run(f"final: produce {N} keyed records with headers to {final_topic}", 20, produce(producer, final_topic, final_sent)):
        await checks.run(f"final: consumer group reads all {N} back from {final_topic}", 25, consume_group(final_topic, name("final-group"), final_sent))
    else:
        checks.skip("final: group consume", "the produce failed")

    await checks.run("AIOKafkaProducer stops", 10, producer.stop(), always=True)
    try:
        await asyncio.wait_for(admin.close(), 5)
    except Exception:  # noqa: BLE001
        pass
    checks.finish()


if __name__ == "__main__":
    asyncio.run(main())
