"""Kafka plumbing shared by every service: authenticated clients, the idempotent producer,
and dead-letter routing. Topics, users and ACLs are provisioned by the operators' tooling
(mptf_cli.provision, as the admin principal): services hold no right to create topics.

Producer: `enable_idempotence=True` implies `acks=all` (Kafka documents that idempotence
requires acks=all; aiokafka enforces it), so a retried send never duplicates within a
partition and an acknowledged send is on every in-sync replica.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from shared import lenient_records
from shared import topics as T
from shared.envelope import utcnow
from shared.logging import get_logger
from shared.metrics import DEAD_LETTERS
from shared.privacy import redacted_bytes
from shared.settings import ServiceSettings

# a record whose header name is not UTF-8 reaches the consumer (and is dead-lettered) instead
# of stopping it (shared.lenient_records)
lenient_records.install()

log = get_logger("mptf.kafka")


class KafkaCredentialsMissing(RuntimeError):
    """No anonymous Kafka client: a process without a user and password does not start."""


def client_options(username: str, password: str, *, protocol: str = "SASL_PLAINTEXT",
                   mechanism: str = "SCRAM-SHA-512", ca_file: str = "") -> dict[str, Any]:
    """aiokafka's keyword arguments for an authenticated client (SASL/SCRAM, over TLS when
    `protocol` is SASL_SSL)."""
    if not username or not password:
        raise KafkaCredentialsMissing(
            f"Kafka user {username or '(none)'} has no password: set KAFKA_USERNAME and "
            "KAFKA_PASSWORD (the broker refuses anonymous clients)")
    opts: dict[str, Any] = {"security_protocol": protocol, "sasl_mechanism": mechanism,
                            "sasl_plain_username": username, "sasl_plain_password": password}
    if protocol == "SASL_SSL":
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(cafile=ca_file or None)
    return opts


def service_client(settings: ServiceSettings) -> dict[str, Any]:
    """aiokafka's keyword arguments naming a service's client: its brokers, its client id and
    its authentication (any of its clients: producer, consumer, admin)."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers,
            "client_id": f"mptf-{settings.service_name}", **settings.kafka_options()}


def make_producer(settings: ServiceSettings, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **service_client(settings),
        enable_idempotence=True,
        acks="all",
        # no lingering: a relay round sends all its records before it yields, so they are
        # batched anyway, and each hop of the pipeline paid the 2 ms it lingered (measured
        # at 6/s: allocated -> notified 43 / 39 ms against 46 / 44 at linger 2)
        linger_ms=0,
        max_request_size=2 * 1024 * 1024,
        **kw,
    )


class DeadLetters:
    """Routes a record that can never succeed to `<topic>.dlq`: the original key, value and
    headers untouched, plus headers naming the reason, the handler and where it came from."""

    def __init__(self, producer: AIOKafkaProducer, handler: str) -> None:
        self.producer = producer
        self.handler = handler

    async def send(self, record: Any, reason: str, detail: str, *,
                   value: bytes | None = None) -> None:
        """`value` replaces the original bytes only where they must not be kept (personal
        data of migrants): the record then says so in `dlq_redacted`. Whatever else is wrong
        with a record, personal data found in it is redacted here before it is kept."""
        if value is None:
            value = redacted_bytes(record.value)
        # a name that was not UTF-8 (read with surrogate escapes) is kept escaped: the
        # producer writes names as UTF-8 text
        headers = [(lenient_records.escaped(k), v) for k, v in record.headers or ()]
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
