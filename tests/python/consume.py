"""Consumes `count` records in a consumer group, commits, and prints key and value per line."""
import sys

from confluent_kafka import Consumer

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
)
consumer.subscribe([topic])
seen = 0
for _ in range(600):
    message = consumer.poll(0.1)
    if message is None:
        continue
    if message.error():
        sys.exit(f"consume error: {message.error()}")
    print(f"{message.key().decode()} {message.value().decode()}")
    seen += 1
    if seen == count:
        break
consumer.commit(asynchronous=False)
consumer.close()
if seen != count:
    sys.exit(f"only {seen} of {count} records arrived")
