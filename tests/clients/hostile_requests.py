#!/usr/bin/env python3
"""Requests no client library sends, written byte by byte, that made an unpatched broker
abort, panic or allocate without bound.

    python3 hostile_requests.py BOOTSTRAP          (e.g. 127.0.0.1:9092)

Each request is sent on its own connection. The broker must answer it with the error code
Kafka uses, or close that one connection, and then still answer a Metadata request on a new
connection. At the end, a kafka-python producer and a consumer in a group must still work.
Prints "ok: ..." or "FAIL: ..." per check; exit code 0 when every check passed.
"""
import os
import socket
import struct
import sys
import threading
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer

if len(sys.argv) != 2:
    sys.exit("usage: hostile_requests.py BOOTSTRAP")
HOST, _, PORT = sys.argv[1].rpartition(":")
PORT = int(PORT)
TOPIC = f"hostile-{uuid.uuid4().hex[:8]}"
CLIENT_ID = b"sluice-hostile"
TIMEOUT_S = 120

# Kafka's error codes that the answers below must carry. A batch whose records do not decode
# is INVALID_RECORD, as Kafka's own record validation answers it (CORRUPT_MESSAGE is for a
# batch whose CRC does not match); a compressed batch that would inflate past the broker's
# limit is MESSAGE_TOO_LARGE; a partition count over the broker's limit is POLICY_VIOLATION,
# as Kafka answers a create.topic.policy's refusal.
MESSAGE_TOO_LARGE = 10
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_SESSION_TIMEOUT = 26
INVALID_REPLICATION_FACTOR = 38
INVALID_REQUEST = 42
POLICY_VIOLATION = 44
INVALID_RECORD = 87

failed = []


def watchdog():
    print(f"FAIL: the whole script timed out after {TIMEOUT_S} s", flush=True)
    os._exit(1)


timer = threading.Timer(TIMEOUT_S, watchdog)
timer.daemon = True
timer.start()


# --- encoding -------------------------------------------------------------------------

def string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def array(items):
    return struct.pack(">i", len(items)) + b"".join(items)


def zigzag(n):
    """A signed varint, as record fields are encoded."""
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def batch(records, record_count, attributes=0):
    """A v2 record batch around `records` (already encoded) that claims `record_count`."""
    after_crc = struct.pack(
        ">hiqqqhii", attributes, max(record_count - 1, 0) if record_count < 2**31 else 0,
        int(time.time() * 1000), int(time.time() * 1000), -1, -1, -1,
        record_count if record_count < 2**31 else record_count - 2**32,
    ) + records
    after_length = struct.pack(">ibI", 0, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def produce_v3(topic, partition, records):
    body = string(None) + struct.pack(">hi", -1, 5000)
    body += array([string(topic) + array([struct.pack(">i", partition) + struct.pack(">i", len(records)) + records])])
    return 0, 3, body


def metadata_v1(topics):
    return 3, 1, array([string(t) for t in topics])


def request(api_key, version, body, correlation_id=7, flexible=False):
    """A request frame; a flexible version's header ends with an empty tagged field list."""
    header = struct.pack(">hhi", api_key, version, correlation_id) + string(CLIENT_ID.decode())
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def exchange(frame):
    """Sends `frame` on a new connection; returns the response body after the correlation id,
    or None when the broker closed the connection instead of answering."""
    with socket.create_connection((HOST, PORT), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(frame)
        data = b""
        try:
            while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
        except ConnectionResetError:
            return None
        return data[8:]


def answers_metadata():
    response = exchange(request(*metadata_v1([])))
    return response is not None


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.at:self.at + n].decode()
        self.at += n
        return s


def produce_error(response):
    r = Reader(response)
    assert r.take(">i") == 1, "one topic in the answer"
    r.string()
    assert r.take(">i") == 1, "one partition in the answer"
    _, error_code = r.take(">ih")
    return error_code


# --- checks ---------------------------------------------------------------------------

def check(what, fn):
    try:
        detail = fn()
    except Exception as err:  # noqa: BLE001 - every failure is reported, not raised
        print(f"FAIL: {what}: {type(err).__name__}: {err}", flush=True)
        failed.append(what)
    else:
        print(f"ok: {what}" + (f" ({detail})" if detail else ""), flush=True)
    if not answers_metadata():
        print(f"FAIL: the broker no longer answers Metadata after: {what}", flush=True)
        failed.append(f"alive after {what}")
        finish()


def expect_code(error_code, code):
    """Describes `error_code`, which must be `code`."""
    if error_code != code:
        raise AssertionError(f"error code {error_code}, expected {code}")
    return f"error code {error_code}"


def expect_produce_error(records, record_count, code, attributes=0):
    response = exchange(request(*produce_v3(TOPIC, 0, batch(records, record_count, attributes))))
    if response is None:
        return "connection closed"
    return expect_code(produce_error(response), code)


def record(headers_count=0):
    """One record: no key or value, `headers_count` claimed and none present."""
    inner = b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1) + zigzag(-1) + zigzag(headers_count)
    return zigzag(len(inner)) + inner


def create_topic_error(partitions, replication_factor):
    name = f"hostile-create-{uuid.uuid4().hex[:8]}"
    body = array([string(name) + struct.pack(">ih", partitions, replication_factor) + array([]) + array([])])
    body += struct.pack(">i", 5000)
    response = exchange(request(19, 0, body))
    if response is None:
        raise AssertionError("connection closed instead of an answer")
    r = Reader(response)
    assert r.take(">i") == 1, "one topic in the answer"
    r.string()
    return r.take(">h")


def expect_create_error(partitions, replication_factor, code):
    return expect_code(create_topic_error(partitions, replication_factor), code)


def join_group_error(session_timeout_ms, protocols):
    body = string(f"hostile-{uuid.uuid4().hex[:8]}") + struct.pack(">i", session_timeout_ms)
    body += string("") + string("consumer") + array(protocols)
    response = exchange(request(11, 0, body))
    if response is None:
        raise AssertionError("connection closed instead of an answer")
    return Reader(response).take(">h")


def expect_join_error(session_timeout_ms, protocols, code):
    return expect_code(join_group_error(session_timeout_ms, protocols), code)


def expect_closed(frame):
    response = exchange(frame)
    if response is not None:
        raise AssertionError(f"answered ({len(response)} bytes) instead of closing")
    return "connection closed"


def offset_fetch_twice():
    group = f"hostile-{uuid.uuid4().hex[:8]}"
    body = string(group) + array([string(TOPIC) + array([struct.pack(">i", 0), struct.pack(">i", 0)])])
    response = exchange(request(9, 1, body))
    if response is None:
        raise AssertionError("connection closed instead of an answer")
    r = Reader(response)
    assert r.take(">i") == 1, "one topic in the answer"
    r.string()
    partitions = r.take(">i")
    return f"{partitions} partition entries"


def init_producer_id_half():
    """InitProducerId v3 (a flexible version) with a producer id and no epoch: INVALID_REQUEST
    in Kafka."""
    body = b"\x00" + struct.pack(">iqh", 60000, 12345, -1) + b"\x00"
    response = exchange(request(22, 3, body, flexible=True))
    if response is None:
        raise AssertionError("connection closed instead of an answer")
    _, error_code = Reader(response[1:]).take(">ih")  # after the header's tagged fields
    return expect_code(error_code, INVALID_REQUEST)


def round_trip():
    producer = KafkaProducer(bootstrap_servers=f"{HOST}:{PORT}", acks="all", max_block_ms=10000)
    values = [f"after-{i}".encode() for i in range(10)]
    for value in values:
        producer.send(TOPIC, value=value)
    producer.flush(timeout=15)
    producer.close()
    consumer = KafkaConsumer(
        TOPIC, bootstrap_servers=f"{HOST}:{PORT}", group_id=f"hostile-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=1000,
        fetch_max_wait_ms=200, request_timeout_ms=12000,
    )
    got = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and len(got) < len(values):
        for messages in consumer.poll(timeout_ms=500).values():
            got.extend(m.value for m in messages)
    consumer.close()
    missing = set(values) - set(got)
    if missing:
        raise AssertionError(f"{len(missing)} of {len(values)} records not consumed")
    return f"{len(values)} produced, {len(got)} consumed in a group"


def finish():
    if failed:
        print(f"hostile requests: {len(failed)} check(s) failed: {' | '.join(failed)}", flush=True)
        os._exit(1)
    print("hostile requests: all checks passed", flush=True)
    os._exit(0)


# The topic, created as Metadata v1 creates an unknown topic.
if exchange(request(*metadata_v1([TOPIC]))) is None:
    print("FAIL: the broker did not answer Metadata at start", flush=True)
    os._exit(1)
time.sleep(0.5)

check("a batch claiming 2^32-1 records is INVALID_RECORD",
      lambda: expect_produce_error(record(), 0xFFFFFFFF, INVALID_RECORD))
check("a record claiming 2^31-1 headers is INVALID_RECORD",
      lambda: expect_produce_error(record(2**31 - 1), 1, INVALID_RECORD))
check("a record claiming a negative header count is INVALID_RECORD",
      lambda: expect_produce_error(record(-5), 1, INVALID_RECORD))
check("a record whose value runs past the batch is INVALID_RECORD",
      lambda: expect_produce_error(zigzag(6) + b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1) + zigzag(1000), 1,
                                   INVALID_RECORD))
check("a snappy batch of a bare xerial header is INVALID_RECORD",
      lambda: expect_produce_error(b"\x82SNAPPY\x00\x00\x00\x00\x01", 1, INVALID_RECORD, attributes=2))
check("a snappy batch declaring 4 GiB is MESSAGE_TOO_LARGE",
      lambda: expect_produce_error(b"\xff\xff\xff\xff\x0f\x00", 1, MESSAGE_TOO_LARGE, attributes=2))
check("CreateTopics with 2^31-1 partitions is POLICY_VIOLATION",
      lambda: expect_create_error(2**31 - 1, 1, POLICY_VIOLATION))
check("CreateTopics with replication factor -5 is INVALID_REPLICATION_FACTOR",
      lambda: expect_create_error(1, -5, INVALID_REPLICATION_FACTOR))
check("JoinGroup without protocols is INCONSISTENT_GROUP_PROTOCOL",
      lambda: expect_join_error(10000, [], INCONSISTENT_GROUP_PROTOCOL))
check("JoinGroup with a negative session timeout is INVALID_SESSION_TIMEOUT",
      lambda: expect_join_error(-1, [string("range") + struct.pack(">i", 0)], INVALID_SESSION_TIMEOUT))
check("OffsetFetch naming one partition twice is answered", offset_fetch_twice)
check("InitProducerId with an id and no epoch is INVALID_REQUEST", init_producer_id_half)
check("a negative frame size closes the connection", lambda: expect_closed(struct.pack(">i", -1)))
check("a 2 GiB frame size closes the connection", lambda: expect_closed(struct.pack(">i", 2**31 - 1)))
check("a produce and a group consume still work", round_trip)
finish()
