"""Kafka plumbing shared by every service: the idempotent producer, topic creation, and
dead-letter routing.

Producer: `enable_idempotence=True` implies `acks=all` (Kafka documents that idempotence
requires acks=all; aiokafka enforces it), so a retried send never duplicates within a
partition and an acknowledged send is on every in-sync replica.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared import topics as T
from shared.envelope import utcnow
from shared.logging import get_logger
from shared.metrics import DEAD_LETTERS
from shared.settings import ServiceSettings

log = get_logger("mptf.kafka")


def make_producer(settings: ServiceSettings, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"mptf-{settings.service_name}",
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_request_size=2 * 1024 * 1024,
        **kw,
    )


async def ensure_topics(settings: ServiceSettings, names: list[str] | None = None,
                        partitions: int | None = None) -> None:
    """Create the contract topics and their dead-letter topics if they do not exist."""
    base = names or [*T.ALL, *(T.dlq(t) for t in T.ALL)]
    wanted = [settings.topic(n) for n in base]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(n, num_partitions=partitions or settings.topic_partitions,
                             replication_factor=settings.topic_replication) for n in missing])
            except TopicAlreadyExistsError:
                pass  # another instance won the race
        # wait until metadata shows them (creation is asynchronous in the controller)
        for _ in range(50):
            if set(wanted) <= set(await admin.list_topics()):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


class DeadLetters:
    """Routes a record that can never succeed to `<topic>.dlq`: the original key, value and
    headers untouched, plus headers naming the reason, the handler and where it came from."""

    def __init__(self, producer: AIOKafkaProducer, handler: str) -> None:
        self.producer = producer
        self.handler = handler

    async def send(self, record: Any, reason: str, detail: str, *,
                   value: bytes | None = None) -> None:
        """`value` replaces the original bytes only where they must not be kept (personal
        data of migrants): the record then says so in `dlq_redacted`."""
        headers = list(record.headers or ())
        if value is not None:
            headers.append(("dlq_redacted", b"personal-data"))
        headers += [
            ("dlq_reason", reason.encode()),
            ("dlq_detail", detail[:2000].encode("utf-8", "replace")),
            ("dlq_handler", self.handler.encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_time", utcnow().isoformat().encode()),
        ]
        await self.producer.send_and_wait(
            T.dlq(record.topic), value=record.value if value is None else value,
            key=record.key, headers=headers)
        DEAD_LETTERS.labels(record.topic, reason).inc()
        log.warning("dead_lettered", topic=record.topic, partition=record.partition,
                    offset=record.offset, reason=reason, detail=detail[:300])
