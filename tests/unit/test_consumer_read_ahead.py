"""The consumer's read-ahead, one subscription against a stand-in consumer: records read
ahead are handed over only to the consumer that read them, and only for the partitions it
still has (shared.consumer.Subscription.take_ahead). The broker-backed behaviour (order,
commits, giving them back on failure) is in tests/integration/test_consumer.py."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from shared.consumer import Subscription
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.settings import ServiceSettings
from tests.support import event_record

NOTE = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)
TOPIC = "t.mptf.in.concept-notes.IOM"


def record(partition: int, offset: int) -> ConsumerRecord:
    key, value, headers = event_record(NOTE, key=f"k{partition}")
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, key, value, None, 0, len(value),
                          tuple(headers))


class StandIn:
    """What the subscription asks of an aiokafka consumer here: records already fetched,
    and the partitions assigned."""

    def __init__(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        self.fetched = fetched
        self.assigned = set(fetched)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None
                      ) -> dict[TopicPartition, list[ConsumerRecord]]:
        out, self.fetched = self.fetched, {}
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)


def subscription() -> Subscription:
    async def handler(batch: list[Any]) -> None:
        return None

    settings = ServiceSettings(service_name="intake")
    return Subscription(TOPIC, "notes", frozenset({SubmitConceptNote.TYPE}), handler, settings,
                        dead_letters=lambda: None)  # type: ignore[arg-type,return-value]


def fetched() -> dict[TopicPartition, list[ConsumerRecord]]:
    return {TopicPartition(TOPIC, 0): [record(0, 5), record(0, 6)],
            TopicPartition(TOPIC, 1): [record(1, 9)]}


async def test_records_read_ahead_are_handed_over_decoded_to_the_consumer_that_read_them() -> None:
    sub, consumer = subscription(), StandIn(fetched())
    await sub.read_ahead(consumer)
    assert [(r.partition, r.offset) for r in sub.ahead] == [(0, 5), (0, 6), (1, 9)]
    assert sub.predecoded is not None and len(sub.predecoded[1].events) == 3
    handed = sub.take_ahead(consumer)
    assert handed is sub.predecoded[0]  # handled without decoding again
    assert sub.ahead == () and sub.take_ahead(consumer) == ()


async def test_records_read_ahead_are_not_handed_to_another_consumer() -> None:
    """A consumer made anew (the broker reconnected) starts from the committed offsets: the
    records its predecessor read ahead are dropped, not handled under its commits."""
    sub, old = subscription(), StandIn(fetched())
    await sub.read_ahead(old)
    assert sub.take_ahead(StandIn({})) == ()
    assert sub.predecoded is None and sub.ahead == ()


async def test_records_of_a_partition_lost_meanwhile_are_left_to_its_new_owner() -> None:
    sub, consumer = subscription(), StandIn(fetched())
    await sub.read_ahead(consumer)
    consumer.assigned = {TopicPartition(TOPIC, 0)}  # partition 1 went to another member
    handed = sub.take_ahead(consumer)
    assert [(r.partition, r.offset) for r in handed] == [(0, 5), (0, 6)]
    assert sub.predecoded is None  # (the batch handed over is decoded as it is handled)


async def test_nothing_is_read_ahead_when_turned_off() -> None:
    sub, consumer = subscription(), StandIn(fetched())
    sub.settings = ServiceSettings(service_name="intake", consumer_read_ahead=False)
    await sub.read_ahead(consumer)
    assert sub.ahead == () and sub.predecoded is None and consumer.fetched
