"""The MongoDB store base: the only module that touches the driver.

Every service's store adapter subclasses `Store` and uses only API that motor and PyMongo's
native async driver share, so switching driver (motor is deprecated as of 2026-05-14) is the
`MPTF_MONGO_DRIVER` setting here and nothing else; tests/integration runs both.

State changes happen in a `UnitOfWork` inside one multi-document transaction that also
  * appends the events they cause to the `outbox` collection (transactional outbox), and
  * records the ids of the consumed events in `inbox` (idempotent consumer: `_id` is unique,
    so a redelivered event is seen as already processed, in the same atomic write as its
    effect).
MongoDB documents transactions on replica sets (a one-node replica set is enough); writes use
w="majority", which on a replica set also implies the journal (writeConcernMajorityJournalDefault).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, WriteConcern
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from shared.contracts import contract_for
from shared.envelope import Envelope, utcnow
from shared.settings import ServiceSettings
from shared.telemetry import current_traceparent

T = TypeVar("T")

MAJORITY = WriteConcern(w="majority")


def _make_client(url: str, driver: str) -> Any:
    kw = dict(tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=3000)
    if driver == "pymongo":
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(url, **kw)
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient(url, **kw)


def is_transient(exc: BaseException) -> bool:
    """Errors that may succeed on retry (store or broker unreachable), as opposed to bugs or
    bad input. Consumers back off and retry these; they never dead-letter them."""
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, OperationFailure | PyMongoError) and exc.has_error_label(
        "TransientTransactionError"
    ):
        return True
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError

    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NotLeaderForPartitionError
                      | ConnectionError | asyncio.TimeoutError)


class UnitOfWork:
    """One transaction: state writes through `session`, events through `emit`."""

    def __init__(self, store: Store, session: Any) -> None:
        self.store = store
        self.session = session
        self.db = store.db
        self._events: list[tuple[Envelope, BaseModel]] = []

    def emit(self, event: BaseModel, *, traceparent: str | None = None) -> Envelope:
        """Queue a fact for the outbox; it is written in this transaction."""
        c = contract_for(event)
        key = getattr(event, c.key)
        env = Envelope(
            source=f"/mptf/{self.store.settings.service_name}",
            type=c.type,
            subject=str(key) if key is not None else None,
            traceparent=traceparent or current_traceparent(),
        )
        self._events.append((env, event))
        return env

    async def unseen(self, consumer: str, event_ids: Iterable[str]) -> set[str]:
        """The ids among `event_ids` that `consumer` has not processed (read in this
        transaction)."""
        ids = list(dict.fromkeys(event_ids))
        keys = {f"{consumer}:{i}": i for i in ids}
        seen = {d["_id"] async for d in self.db.inbox.find(
            {"_id": {"$in": list(keys)}}, {"_id": 1}, session=self.session)}
        return {i for k, i in keys.items() if k not in seen}

    async def mark_seen(self, consumer: str, event_ids: Iterable[str]) -> None:
        """Record processed ids, in the same transaction as their effect. A concurrent
        instance recording the same id makes this insert conflict and the whole transaction
        retry, after which the id is seen: never two effects."""
        ids = list(dict.fromkeys(event_ids))
        if ids:
            now = utcnow()
            await self.db.inbox.insert_many(
                [{"_id": f"{consumer}:{i}", "consumer": consumer, "event_id": i, "at": now}
                 for i in ids], session=self.session)

    async def claim(self, consumer: str, event_ids: Iterable[str]) -> set[str]:
        """unseen + mark_seen: the ids to act on now; the rest are redeliveries."""
        fresh = await self.unseen(consumer, event_ids)
        await self.mark_seen(consumer, [i for i in dict.fromkeys(event_ids) if i in fresh])
        return fresh

    async def _flush(self) -> None:
        if not self._events:
            return
        base = time.time_ns()
        docs = []
        for n, (env, event) in enumerate(self._events):
            c = contract_for(event)
            docs.append({
                "_id": env.id,
                "seq": base + n,
                "topic": c.topic,
                "key": env.subject,
                "type": env.type,
                "envelope": env.model_dump(mode="json"),
                "value": event.model_dump_json().encode(),
                "created_at": env.time,
                "sent_at": None,
            })
        await self.db.outbox.insert_many(docs, session=self.session)

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for e, _ in self._events]


class Store:
    """Base of each service's store adapter."""

    def __init__(self, settings: ServiceSettings, *, driver: str | None = None) -> None:
        self.settings = settings
        self.driver = driver or os.environ.get("MPTF_MONGO_DRIVER", "motor")
        self.client = _make_client(settings.mongodb_url, self.driver)
        self.db = self.client[settings.database]
        self.outbox_signal = asyncio.Event()

    async def ping(self) -> bool:
        await self.db.command("ping")
        return True

    async def ensure_indexes(self) -> None:
        await self.db.outbox.create_index([("sent_at", ASCENDING), ("seq", ASCENDING)])
        await self.db.inbox.create_index([("at", ASCENDING)])
        await self.indexes()

    async def indexes(self) -> None:
        """Service-specific indexes."""

    def _start_session(self) -> Any:
        # the one difference between the drivers that we meet: motor's is a coroutine
        return self.client.start_session()

    async def transaction(self, fn: Callable[[UnitOfWork], Awaitable[T]]) -> tuple[T, UnitOfWork]:
        """Run fn in one transaction (retried as a whole on transient transaction errors, with
        a fresh UnitOfWork each time) and commit its events to the outbox with it."""
        s = self._start_session()
        if asyncio.iscoroutine(s):
            s = await s
        holder: dict[str, UnitOfWork] = {}

        async def attempt(session: Any) -> T:
            uow = UnitOfWork(self, session)
            result = await fn(uow)
            await uow._flush()
            holder["uow"] = uow
            return result

        async with s:
            result = await s.with_transaction(attempt, write_concern=MAJORITY)
        uow = holder["uow"]
        if uow.envelopes:
            self.outbox_signal.set()  # wake the relay now rather than at its next poll
        return result, uow

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        n = await self.db.outbox.count_documents({"sent_at": None})
        oldest = await self.db.outbox.find_one({"sent_at": None}, sort=[("seq", ASCENDING)])
        return n, (oldest or {}).get("created_at")

    async def close(self) -> None:
        r = self.client.close()
        if asyncio.iscoroutine(r):  # PyMongo's async client closes asynchronously
            await r

