"""Baseline producer: confluent-kafka with the same settings `sluice produce` uses."""
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
producer = Producer(
    {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1000000}
)
failed = 0


def report(err, _msg):
    global failed
    if err is not None:
        failed += 1


value = bytearray(b"x" * size)
started = time.perf_counter()
for n in range(count):
    number = str(n).encode()
    value[: len(number)] = number[:size]
    while True:
        try:
            producer.produce(topic, value=bytes(value), on_delivery=report)
            break
        except BufferError:
            producer.poll(0.001)
    producer.poll(0)
left = producer.flush(120)
elapsed = time.perf_counter() - started
if left or failed:
    sys.exit(f"{left} unflushed, {failed} failed")
print(f"{count / elapsed:.0f}")
