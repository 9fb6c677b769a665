"""A consumer group member that joins, says when it is assigned, and then only polls, so that
a test can kill it: group_member.py BOOTSTRAP GROUP TOPIC SESSION_TIMEOUT_MS."""
import sys
import time

from confluent_kafka import Consumer

bootstrap, group, topic, session = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def assigned(_consumer, partitions):
    print(f"assigned {len(partitions)}", flush=True)


consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "session.timeout.ms": int(session),
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
    }
)
consumer.subscribe([topic], on_assign=assigned)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    consumer.poll(0.1)
consumer.close()
