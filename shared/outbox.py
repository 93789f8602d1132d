"""The outbox relay: publishes events committed to a service's `outbox` collection, then
deletes their documents (or marks them sent, kept for `outbox_keep_sent_hours`).

A crash between publishing and deleting republishes those events on restart (at-least-once);
consumers dedupe by event id (shared.store.UnitOfWork.claim).

Publishing scales out: the outbox is divided into `outbox_shards` shards by the events' keys
(shared.lease.unit_of), and the live replicas share the shards under fenced leases
(shared.lease.Leases): each shard is relayed by one replica at a time, which publishes its
pending documents in `seq` order. `seq` rises with each key's commits whatever the replicas'
clocks (shared.store.UnitOfWork._flush), and a shard's pending documents are read in one
snapshot (a snapshot read: no transaction to commit), where a later commit of a key is never
seen without the earlier ones: so each key's events reach its partition in commit order.
Deleting (or marking sent) is one plain write (see publish_pending): a relay that lost its
shard in a stall may publish a round again, never out of order, and drops the shard at its
next lease refresh.

The relay wakes when this process commits events, and reads the shards those commits wrote,
all of them in one round (one read, one wait for the broker, one write); it asks which
shards have anything pending (other replicas' commits, shards it just took
over, what a failed round left) at least once every `outbox_poll_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pymongo import ASCENDING, DeleteOne, UpdateOne

from shared.envelope import Envelope, utcnow
from shared.lease import Leases
from shared.logging import get_logger
from shared.metrics import OUTBOX_PUBLISHED
from shared.store import OUTBOX_INDEX, Store, is_transient
from shared.telemetry import context_from, traceparent_of, tracer

log = get_logger("mptf.outbox")


class OutboxRelay:
    def __init__(self, store: Store, producer: AIOKafkaProducer) -> None:
        self.store = store
        self.producer = producer
        self.settings = store.settings
        self.leases = Leases(store.members, "outbox", self.settings.outbox_shards,
                             self.settings.outbox_lease_seconds)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def release(self) -> None:
        await self.leases.release()

    # -- publishing --------------------------------------------------------------------
    async def pending(self, shard: int | Collection[int] | None) -> list[dict[str, Any]]:
        """A round's pending documents of `shard` (several shards, or every shard if None),
        each shard's in `seq` order, whole transactions until they hold outbox_batch_max
        events; read in one snapshot. (Order matters only within a key, and a key's events
        are all in its one shard.)"""
        q: dict[str, Any] = {"sent_at": None}
        order: list[tuple[str, int]] = [("seq", ASCENDING)]
        hint: Any = None
        shards = [shard] if isinstance(shard, int) else None if shard is None else sorted(shard)
        if shards is not None and len(shards) == 1:
            q["shard"] = shards[0]
        elif shards is not None:
            # several shards: walked in the index's own order, shard after shard (no sort of
            # a backlog, however large, at each round), by its index named (the local
            # server's planner scans the whole collection for an `$in`)
            q["shard"] = {"$in": shards}
            order, hint = OUTBOX_INDEX, OUTBOX_INDEX

        # a snapshot read, not a transaction: the same one snapshot without a commit to send
        docs: list[dict[str, Any]] = []
        events = 0
        async with await self.store.session(snapshot=True) as session:
            cursor = self.store.db.outbox.find(q, session=session, hint=hint).sort(order)
            async for d in cursor:
                docs.append(d)
                events += d["count"]
                if events >= self.settings.outbox_batch_max:
                    break
            await cursor.close()
        return docs

    async def publish_pending(self, shard: int | Collection[int] | None = None) -> int:
        """Publish the pending events of a few transactions of `shard` (several shards, or
        every shard if None: tests and tools), in commit order; mark their outbox documents
        sent; return how many events."""
        docs = await self.pending(shard)
        if not docs:
            return 0
        futures = []
        parents: dict[str, Context] = {}  # (a transaction's events share their traceparent)
        # One publish span per group of events that share their trace, topic, type and
        # programme (a fact's notices: one span, not one per recipient), as OpenTelemetry's
        # messaging conventions make a batch's send span: each event of the group carries
        # that span's context, so its consumer's span is the span's child. Each event still
        # goes out in its commit order; a span is begun at its group's first event.
        spans: dict[tuple[Any, ...], tuple[Span, str | None, list[str]]] = {}
        try:
            for e in (e for d in docs for e in d["events"]):
                env = Envelope.model_validate(e["envelope"])
                group = (env.traceparent, e["topic"], e["type"], env.subject)
                if group not in spans:
                    parent = None
                    if env.traceparent:
                        parent = parents.get(env.traceparent)
                        if parent is None:
                            parent = parents[env.traceparent] = context_from(env.traceparent)
                    # not made current (nothing runs under it)
                    sp = tracer().start_span(
                        f"publish {e['type']}", context=parent, kind=SpanKind.PRODUCER,
                        attributes={"messaging.system": "kafka",
                                    "messaging.destination.name": e["topic"],
                                    "mptf.event_type": e["type"],
                                    **({"mptf.programme_id": env.subject} if env.subject
                                       else {})})
                    spans[group] = (sp, traceparent_of(sp), [])
                _, traceparent, ids = spans[group]
                ids.append(env.id)
                # the consumer's span becomes a child of the group's publish span
                env.traceparent = traceparent or env.traceparent
                futures.append(await self.producer.send(
                    self.settings.topic(e["topic"]), value=bytes(e["value"]),
                    key=e["key"].encode() if e["key"] else None, headers=env.headers()))
                OUTBOX_PUBLISHED.labels(e["topic"]).inc()
        except BaseException as exc:
            for sp, _, _ in spans.values():  # (the round is published again, whole)
                sp.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            raise
        finally:
            for sp, _, ids in spans.values():
                if len(ids) == 1:
                    sp.set_attribute("mptf.event_id", ids[0])
                else:
                    sp.set_attributes({"messaging.batch.message_count": len(ids),
                                       "mptf.event_ids": ids})
                sp.end()
        await asyncio.gather(*futures)
        await self.after_publish(docs)
        # One write, no transaction and no fence: a document done with after it was
        # published is done with whoever says so, and saying it twice changes nothing. (A
        # relay that lost its shard while it published has published again, which consumers
        # dedupe by event id; it finds the shard gone at its next lease refresh, at the
        # latest the first thing after a stall. Each event's first publication stays in
        # its key's commit order, as every relay publishes in `seq` order and a document
        # leaves the pending ones only after it was published.) A fenced write cost the
        # store three round trips a round instead of one.
        # One point write per document (an `$in` makes the local server compare every
        # candidate with every id).
        if self.settings.outbox_keep_sent_hours > 0:  # kept, for inspection (Store.prune)
            now = utcnow()
            done: list[Any] = [UpdateOne({"_id": d["_id"]}, {"$set": {"sent_at": now}})
                               for d in docs]
        else:  # deleted: the local server's delete costs 0.6 of a mark, and no prune after
            done = [DeleteOne({"_id": d["_id"]}) for d in docs]
        await self.store.db.outbox.bulk_write(done, ordered=False)
        return len(futures)

    async def busy_shards(self, held: list[int]) -> list[int]:
        """Which of the `held` shards have anything pending, in one query by the outbox's
        index (hinted: the local server's planner scans the whole collection for it)."""
        if not held:
            return []
        return await self.store.db.outbox.distinct(
            "shard", {"shard": {"$in": held}, "sent_at": None}, hint=OUTBOX_INDEX)

    async def after_publish(self, docs: list[dict[str, Any]]) -> None:
        """Hook between publishing and deleting or marking (fault-injection point in tests)."""

    async def run(self) -> None:
        backoff = 0.2
        renew_at = look_at = 0.0
        last_held: list[int] = []
        while not self._stopping.is_set():
            self.store.outbox_signal.clear()  # before reading: a commit from now on re-wakes us
            dirty, self.store.outbox_dirty = self.store.outbox_dirty, set()
            try:
                now = asyncio.get_running_loop().time()
                if now >= renew_at:  # not at every commit's wake-up: a few times a lease
                    await self.leases.refresh()
                    renew_at = now + self.settings.outbox_lease_seconds / 4
                held = sorted(self.leases.held)  # (a fenced write drops its shard at once)
                if now >= look_at or held != last_held:
                    # every shard with something to publish (one query, not one per shard):
                    # other replicas' commits, shards just taken over, and anything a failed
                    # round left are found here, at least once a poll interval however often
                    # our own commits wake us
                    busy = await self.busy_shards(held)
                    look_at, last_held = now + self.settings.outbox_poll_seconds, held
                else:  # woken by our own commits: the shards they wrote
                    busy = [x for x in held if x in dirty]
                # the busy shards together: one read, one wait for the broker's acks and one
                # write a round, however many shards the commits wrote (a round per shard
                # made the last shard's events wait for the others' three round trips). A
                # round short of the batch read everything committed before it (one
                # snapshot); a commit since has woken us again, so no second read to find it
                # empty
                while busy and await self.publish_pending(busy) >= (
                        self.settings.outbox_batch_max):
                    pass
                backoff = 0.2
            except Exception as e:
                level = log.warning if is_transient(e) else log.exception
                level("outbox_relay_error", error=repr(e))
                renew_at = look_at = 0.0  # look at the leases and every shard again first
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.outbox_signal.wait(),
                                       self.settings.outbox_poll_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping.set()
        self.store.outbox_signal.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.release()
