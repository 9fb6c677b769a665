"""Produces numbered records with keys, headers and binary values using confluent-kafka."""
import sys

from confluent_kafka import Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = Producer({"bootstrap.servers": bootstrap})
failures = []


def report(err, _msg):
    if err is not None:
        failures.append(err)


for n in range(count):
    producer.produce(
        topic,
        key=f"py-{n}".encode(),
        value=f"value-{n}".encode() + b"\xff\x00",
        headers=[("origin", b"python"), ("seq", str(n).encode())],
        on_delivery=report,
    )
    producer.poll(0)
remaining = producer.flush(30)
if remaining or failures:
    sys.exit(f"{remaining} unflushed, {len(failures)} failed: {failures[:3]}")
print(f"produced {count}")
