"""The outbox relay: publishes events committed to a service's `outbox` collection, then
marks them sent.

A crash between publishing and marking republishes those events on restart (at-least-once);
consumers dedupe by event id (shared.store.UnitOfWork.claim). Only one instance of a service
relays at a time (a lease document renewed while it works), which keeps each key's events in
commit order on its partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from shared.envelope import Envelope, utcnow
from shared.logging import get_logger
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED
from shared.store import Store, is_transient
from shared.telemetry import current_traceparent, span

log = get_logger("mptf.outbox")


class OutboxRelay:
    def __init__(self, store: Store, producer: AIOKafkaProducer) -> None:
        self.store = store
        self.producer = producer
        self.settings = store.settings
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- leadership -------------------------------------------------------------------
    async def _hold_lease(self) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=self.settings.outbox_lease_seconds)
        try:
            doc = await self.store.db.relay_lease.find_one_and_update(
                {"_id": "outbox", "$or": [{"owner": self.owner}, {"until": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "until": until}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return False  # someone else holds a live lease
        return bool(doc and doc.get("owner") == self.owner)

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.db.relay_lease.update_one(
                {"_id": "outbox", "owner": self.owner}, {"$set": {"until": utcnow()}})

    # -- publishing --------------------------------------------------------------------
    async def publish_pending(self) -> int:
        """Publish the pending events of a few transactions, in commit order; mark their
        outbox documents sent; return how many events."""
        docs: list[dict[str, Any]] = []
        events = 0
        cursor = self.store.db.outbox.find({"sent_at": None}).sort("seq", ASCENDING)
        async for d in cursor:  # whole transactions, until the round holds outbox_batch_max
            docs.append(d)
            events += d["count"]
            if events >= self.settings.outbox_batch_max:
                break
        await cursor.close()
        if not docs:
            return 0
        futures = []
        for e in (e for d in docs for e in d["events"]):
            env = Envelope.model_validate(e["envelope"])
            with span(f"publish {e['type']}", parent=env.traceparent, kind=SpanKind.PRODUCER,
                      attributes={"messaging.system": "kafka",
                                  "messaging.destination.name": e["topic"],
                                  "mptf.event_type": e["type"], "mptf.event_id": env.id,
                                  "mptf.programme_id": env.subject}):
                # the consumer's span becomes a child of this publish span
                env.traceparent = current_traceparent() or env.traceparent
                futures.append(await self.producer.send(
                    self.settings.topic(e["topic"]), value=bytes(e["value"]),
                    key=e["key"].encode() if e["key"] else None, headers=env.headers()))
            OUTBOX_PUBLISHED.labels(e["topic"]).inc()
        await asyncio.gather(*futures)
        await self.after_publish(docs)
        now = utcnow()
        # one point update per document (an `$in` makes the local server compare every
        # candidate with every id)
        await self.store.db.outbox.bulk_write(
            [UpdateOne({"_id": d["_id"]}, {"$set": {"sent_at": now}}) for d in docs])
        return len(futures)

    async def after_publish(self, docs: list[dict[str, Any]]) -> None:
        """Hook between publishing and marking sent (fault-injection point in tests)."""

    async def _report_backlog(self) -> None:
        n, oldest = await self.store.outbox_backlog()
        OUTBOX_BACKLOG.set(n)
        OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            self.store.outbox_signal.clear()  # before reading: a commit from now on re-wakes us
            try:
                if await self._hold_lease():
                    while await self.publish_pending():
                        pass
                    await self._report_backlog()
                backoff = 0.2
            except Exception as e:
                level = log.warning if is_transient(e) else log.exception
                level("outbox_relay_error", error=repr(e))
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
