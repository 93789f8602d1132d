"""A subscription's offset commits, against a stand-in consumer whose commits wait for the
test: a batch is not held by its commit; the offsets of batches handled while a commit is
under way go together in the next one; a clean stop waits for them (FastStream's subscriber
stops its consumer only after); only partitions still assigned, of the consumer that read
them, are committed; a refused commit is logged and later ones still go. The broker-backed
behaviour (what is committed around read-ahead and failures) is in
tests/integration/test_consumer.py."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError

from shared.contracts.intake import SubmitConceptNote
from shared.settings import ServiceSettings
from tests.unit.test_consumer_read_ahead import TOPIC, StandIn, record, subscription

P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class Committing(StandIn):
    """Each commit is noted, then waits until the test lets it go (or fails, if told)."""

    def __init__(self) -> None:
        super().__init__({P0: [], P1: []})
        self.commits: list[dict[TopicPartition, int]] = []
        self.go = asyncio.Event()
        self.fail_next = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        await self.go.wait()
        if self.fail_next:
            self.fail_next = False
            raise CommitFailedError("the group rebalanced")


async def test_a_batch_is_not_held_by_its_commit_and_later_offsets_go_in_the_next() -> None:
    sub, consumer = subscription(), Committing()
    # a whole batch handled: it returns with its commit still waiting on the broker
    await asyncio.wait_for(sub.process((record(0, 5), record(1, 2)), consumer), 5)
    await asyncio.sleep(0)
    assert consumer.commits == [{P0: 6, P1: 3}] and not sub.committing.done()  # type: ignore[union-attr]
    # two more batches meanwhile: nothing more is sent until the first commit is answered
    await sub.process((record(0, 6), record(0, 7)), consumer)
    await sub.process((record(0, 8),), consumer)
    assert len(consumer.commits) == 1
    consumer.go.set()
    await asyncio.wait_for(sub.flush_commits(), 5)
    assert consumer.commits == [{P0: 6, P1: 3}, {P0: 9}]  # the two batches' in one commit
    assert sub.to_commit == {}


async def test_a_clean_stop_waits_for_the_offsets_offered_so_far() -> None:
    sub, consumer = subscription(), Committing()
    sub.commit({P0: 41}, consumer)
    sub.commit({P1: 7}, consumer)
    flushed = asyncio.ensure_future(sub.flush_commits())
    await asyncio.sleep(0.05)
    assert not flushed.done()  # the broker has not answered
    consumer.go.set()
    await asyncio.wait_for(flushed, 5)
    assert consumer.commits == [{P0: 42, P1: 8}]  # (offered before the first went out)


async def test_only_assigned_partitions_of_the_reading_consumer_are_committed() -> None:
    sub, consumer = subscription(), Committing()
    consumer.go.set()
    consumer.assigned = {P1}  # partition 0 went to another member in a rebalance
    sub.commit({P0: 10, P1: 3}, consumer)
    await sub.flush_commits()
    assert consumer.commits == [{P1: 4}]
    # a consumer made anew (the broker reconnected): the old one's offsets are not its own
    consumer.go.clear()
    sub.commit({P1: 5}, consumer)
    await asyncio.sleep(0)  # (sent: waits on the broker)
    sub.commit({P1: 6}, consumer)  # (to go with the next commit: then a new consumer)
    fresh = Committing()
    fresh.go.set()
    sub.commit({P0: 20}, fresh)
    consumer.go.set()
    await sub.flush_commits()
    # the first went out; the second, offered after it, was the old consumer's: dropped
    assert consumer.commits == [{P1: 4}, {P1: 6}] and fresh.commits == [{P0: 21}]


async def test_a_refused_commit_is_logged_and_later_offsets_still_committed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.consumer

    logged: list[tuple[str, dict[str, object]]] = []

    class Log:  # (the module's logger: structlog caches its loggers once configured)
        def warning(self, event: str, **kw: object) -> None:
            logged.append((event, kw))

    monkeypatch.setattr(shared.consumer, "log", Log())
    sub, consumer = subscription(), Committing()
    consumer.fail_next = True
    consumer.go.set()
    sub.commit({P0: 1}, consumer)
    await sub.flush_commits()
    assert [e for e, _ in logged] == ["offset_commit_failed"]
    assert "rebalanced" in str(logged[0][1]["error"])
    sub.commit({P0: 2}, consumer)
    await sub.flush_commits()
    assert consumer.commits == [{P0: 2}, {P0: 3}]
    # a consumer that cannot even say its partitions (stopped under it): logged too, and the
    # offsets offered after it still go out, on a commit task of their own
    fresh = Committing()
    fresh.go.set()

    def stopped() -> set[TopicPartition]:
        raise ConsumerStoppedError()

    fresh.assignment = stopped  # type: ignore[method-assign]
    sub.commit({P0: 4}, fresh)
    await sub.flush_commits()
    assert [e for e, _ in logged] == ["offset_commit_failed"] * 2
    del fresh.assignment
    sub.commit({P0: 5}, fresh)
    await sub.flush_commits()
    assert fresh.commits == [{P0: 6}]

class Stopping(Committing):
    """...and notes when it is stopped, with the commits it had answered by then."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0
        self.stopped_after: int | None = None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await super().commit(offsets)
        self.answered += 1

    async def stop(self) -> None:
        self.stopped_after = self.answered


async def test_the_subscribers_stop_commits_before_it_stops_its_consumer() -> None:
    """FastStream's own subscriber, as subscribe() makes it: its stop ends the consume loop,
    waits for the commits under way and offered, and only then stops the consumer (whose
    commits would then be refused: the group's next member would get those records again)."""
    from faststream.kafka import KafkaBroker

    from shared.consumer import PromptBatchSubscriber, subscribe

    broker = KafkaBroker("127.0.0.1:9", logger=None)  # (never connected)
    sub = subscribe(broker, ServiceSettings(service_name="intake"), topic="programmes",
                    name="notes", accepts=[SubmitConceptNote.TYPE],
                    handler=lambda batch: None,  # type: ignore[arg-type,return-value]
                    dead_letters=lambda: None)  # type: ignore[arg-type,return-value]
    (subscriber,) = [s for s in broker.subscribers if isinstance(s, PromptBatchSubscriber)]
    consumer = Stopping()
    subscriber.consumer = consumer  # (as start() makes it)
    sub.commit({P0: 3}, consumer)
    await asyncio.sleep(0)  # (sent: the broker has not answered)
    sub.commit({P1: 8}, consumer)  # (offered meanwhile)
    stopping = asyncio.ensure_future(subscriber.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done() and consumer.stopped_after is None
    consumer.go.set()
    await asyncio.wait_for(stopping, 5)
    assert consumer.commits == [{P0: 4}, {P1: 9}] and consumer.stopped_after == 2
    assert subscriber.consumer is None
