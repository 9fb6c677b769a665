"""Baseline consumer: confluent-kafka reading a whole topic from the beginning, without a
group, printing records/s once it has read `count` records."""
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": "bench-baseline",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
)
consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
seen = 0
started = time.perf_counter()
deadline = started + 300
while seen < count and time.perf_counter() < deadline:
    for message in consumer.consume(10000, 1.0):
        if message.error() is None:
            seen += 1
elapsed = time.perf_counter() - started
consumer.close()
if seen < count:
    sys.exit(f"read {seen} of {count} records in {elapsed:.0f} s")
print(f"{count / elapsed:.0f}")
