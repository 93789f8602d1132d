"""Dead letters and consumer lag, straight from the broker (what `mptf dlq` and `mptf lag`
show)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.settings import ServiceSettings

DLQ_HEADERS = ("dlq_reason", "dlq_detail", "dlq_handler", "dlq_topic", "dlq_partition",
               "dlq_offset", "dlq_time", "dlq_redacted")


def operator_auth(user: str | None = None) -> dict[str, Any]:
    """The options of the operators' principal (or `user`), read as a service reads its own
    (shared.settings): KAFKA_USERNAME/KAFKA_PASSWORD, else the credentials file
    (MPTF_KAFKA_CREDENTIALS, by default the local stack's)."""
    from pydantic import SecretStr

    s = ServiceSettings()
    name = user or s.kafka_username or "operator"
    return s.model_copy(update={
        "kafka_username": name,
        # KAFKA_PASSWORD is the password of KAFKA_USERNAME, not of another principal
        "kafka_password": s.kafka_password if name == s.kafka_username else SecretStr(""),
        "kafka_credentials": s.kafka_credentials or ".run/dev/kafka/credentials.json",
    }).kafka_options()


@dataclass
class DeadLetter:
    topic: str  # the .dlq topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def meta(self, name: str) -> str:
        return next((v.decode("utf-8", "replace") for k, v in self.headers if k == name), "")

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if k not in DLQ_HEADERS]


async def read_dead_letters(bootstrap: str, topic: str, timeout: float = 3.0, *,
                            auth: dict[str, Any] | None = None) -> list[DeadLetter]:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         **(auth or operator_auth()))
    await c.start()
    out: list[DeadLetter] = []
    try:
        parts = c.assignment() or {TopicPartition(topic, p)
                                   for p in (c.partitions_for_topic(topic) or [])}
        end = await c.end_offsets(list(parts))
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            behind = [tp for tp in parts if await c.position(tp) < end[tp]]
            if not behind:
                break
            for recs in (await c.getmany(timeout_ms=200)).values():
                out += [DeadLetter(r.topic, r.partition, r.offset, r.key, r.value,
                                   list(r.headers or ())) for r in recs]
    finally:
        await c.stop()
    return sorted(out, key=lambda d: (d.meta("dlq_time"), d.partition, d.offset))


async def replay(bootstrap: str, letters: list[DeadLetter], *,
                 auth: dict[str, Any] | None = None) -> int:
    """Send dead letters back to the topic they came from, with their original key, value
    and headers (the consumer dedupes by event id, so a replay is safe)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                         **(auth or operator_auth()))
    await p.start()
    try:
        for d in letters:
            if d.meta("dlq_redacted"):
                continue  # redacted personal data cannot be replayed: the sender must resend
            await p.send_and_wait(d.meta("dlq_topic"), value=d.value, key=d.key,
                                  headers=d.original_headers)
    finally:
        await p.stop()
    return sum(1 for d in letters if not d.meta("dlq_redacted"))


async def consumer_lag(bootstrap: str, prefix: str = "mptf-", *,
                       auth: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    auth = auth or operator_auth()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **auth)
    await admin.start()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **auth)
    await probe.start()
    rows: list[dict[str, Any]] = []
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)]
        for g in sorted(groups):
            offsets = await admin.list_consumer_group_offsets(g)
            if not offsets:
                continue
            end = await probe.end_offsets(list(offsets))
            for tp, meta in sorted(offsets.items(), key=lambda x: (x[0].topic, x[0].partition)):
                rows.append({"group": g, "topic": tp.topic, "partition": tp.partition,
                             "committed": meta.offset, "end": end[tp],
                             "lag": max(0, end[tp] - max(meta.offset, 0))})
    finally:
        await probe.stop()
        await admin.close()
    return rows


async def dead_letter_counts(bootstrap: str, dlq_topics: list[str], *,
                             auth: dict[str, Any] | None = None) -> dict[str, int]:
    """How many records each dead-letter topic holds (end minus start offsets). Subscribing
    without a group assigns every partition of the topics, so their offsets can be read."""
    probe = AIOKafkaConsumer(*dlq_topics, bootstrap_servers=bootstrap, group_id=None,
                             **(auth or operator_auth()))
    await probe.start()
    try:
        parts = list(probe.assignment())
        end = await probe.end_offsets(parts) if parts else {}
        start = await probe.beginning_offsets(parts) if parts else {}
        return {t: sum(end[p] - start[p] for p in parts if p.topic == t) for t in dlq_topics}
    finally:
        await probe.stop()
