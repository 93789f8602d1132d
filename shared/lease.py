"""Shared work among a service's replicas, coordinated by the service's own store.

* `Members`: who is alive. Each process keeps a heartbeat document in `members` (renewed
  every `member_beat_seconds`, expiring after `member_ttl_seconds`) that also lists the
  server sessions its transactions use. The renewal runs on a thread of its own, so a
  process whose event loop is busy for a while (a large batch's CPU work) stays alive and
  keeps its sessions: reaping it would abort the very transaction it is finishing, and the
  batch, run again, would be reaped again. The thread renews only while the event loop has
  made progress within `member_stall_seconds`: a process hung for longer is reaped like a
  dead one. Every member reaps the others' expired documents: it
  ends the dead member's server sessions (`killSessions`, which aborts a transaction the
  process was killed in and frees what it held, instead of letting the server reap it after
  its transaction lifetime: 60 s by default on mongod and SecantusDB), releases the dead
  member's leases, runs the services' hooks (the dispatcher's claimed deliveries), then
  deletes the document. The document also says how this release records consumed event
  ids (`inbox`, see shared.store.Store.settle_inbox): a member without it is of an earlier
  release, and `earlier_releases` counts them at each heartbeat.
* `Leases`: `count` units of one kind of shared work (the outbox relay's shards, the
  scheduler's shards), each held by one member under a lease in `leases`, spread so that
  each live member holds its fair share (ceil(count / live members)). A lease's `token`
  grows each time it changes hands, and `fence(uow, unit)` inside a transaction writes the
  lease document on condition that this member still holds it with the token it took: a
  holder that lost its lease (it stalled past the lease, and another took over) cannot commit
  anything (`Fenced`), and a takeover racing a fenced write makes one of the two conflict.
  (The relay's marks need no fence: shared.outbox.OutboxRelay.publish_pending.)

Lease times are each member's own clock; skew between replicas can only make a lease change
hands early, which fencing makes safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.envelope import utcnow
from shared.errors import Conflict
from shared.logging import get_logger

log = get_logger("mptf.lease")


class Fenced(Conflict):
    """A member wrote under a lease it no longer holds."""


# How this release records the event ids it consumed (shared.store): one document per batch,
# its ids under a unique multikey index. A member without it (an earlier release) records
# one document per id and looks only at those.
INBOX_SHAPE = 2


class Members:
    def __init__(self, store: Any) -> None:
        self.store = store
        s = store.settings
        self.ttl, self.beat_every = s.member_ttl_seconds, s.member_beat_seconds
        self.stall = s.member_stall_seconds
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sessions: list[dict[str, Any]] = []  # the server sessions we used (lsids)
        self.live = 1  # members alive at the last heartbeat (this one included)
        self.on_reap: list[Callable[[str], Awaitable[Any]]] = []  # per dead member's id
        self.on_beat: list[Callable[[], Awaitable[Any]]] = []  # after each heartbeat
        self.earlier_releases = 0  # members (live or not yet reaped) of an earlier release
        self.reaped = 0  # dead members this process reaped
        self._task: asyncio.Task[None] | None = None
        self._ticked = time.monotonic()  # the event loop's last sign of progress
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def coll(self) -> Any:
        return self.store.db.members

    def _until(self) -> Any:
        return utcnow() + timedelta(seconds=self.ttl)

    async def track(self, session: Any) -> None:
        """Record a server session before a transaction uses it (once per session: the
        driver pools them), so that if this process dies mid-transaction another member can
        end it."""
        lsid = session.session_id
        if lsid in self.sessions:
            return
        self.sessions.append(lsid)
        await self._renew([lsid])

    async def _renew(self, sessions: list[dict[str, Any]]) -> None:
        """Move our document's expiry on (never back) and add `sessions` to it. The expiry
        is read from the clock before the write's awaits: if the event loop stalls in
        between (a hung process), the write lands with an expiry already past. So the
        expiry only ever grows (`$max`, the keepalive thread may have moved it further),
        and a document the others reaped meanwhile is not brought back by that late write
        (no upsert): it is made anew with the clock read again, after the stall."""
        for upsert in (False, True, False):  # (the last: made meanwhile by our other write)
            try:
                res = await self.coll.update_one(
                    {"_id": self.owner},
                    {"$max": {"until": self._until()}, "$set": {"inbox": INBOX_SHAPE},
                     "$addToSet": {"sessions": {"$each": sessions}}}, upsert=upsert)
            except DuplicateKeyError:
                continue
            if res.matched_count or res.upserted_id is not None:
                return

    async def beat(self) -> None:
        """Renew our document; count the live members; reap the dead ones."""
        await self._renew(self.sessions)
        now = utcnow()
        live, dead, earlier = 0, [], 0
        async for d in self.coll.find({}, {"until": 1, "sessions": 1, "inbox": 1}):
            if d["until"] > now:
                live += 1
                earlier += d.get("inbox") != INBOX_SHAPE
            else:
                dead.append(d)
        self.live = max(live, 1)
        for d in dead:
            # a dead member of an earlier release counts until it is reaped (its sessions
            # ended): until then a transaction it was killed in may still commit
            if not await self.reap(d) and d.get("inbox") != INBOX_SHAPE:
                earlier += 1
        self.earlier_releases = earlier
        for hook in self.on_beat:
            await hook()

    async def reap(self, member: dict[str, Any]) -> bool:
        """End a dead member's sessions, release its work, forget it; whether it is gone
        (False: it renewed meanwhile, alive after all)."""
        dead = member["_id"]
        current = await self.coll.find_one({"_id": dead}, {"until": 1})
        if current is None:
            return True  # another member reaped it
        if current["until"] != member["until"]:
            return False  # it renewed meanwhile (alive after all)
        if member.get("sessions"):
            try:
                await self.store.client.admin.command("killSessions", member["sessions"])
            except Exception as e:  # already ended (the server reaped them): go on
                log.warning("kill_sessions_failed", member=dead, error=repr(e))
        await self.store.db.leases.update_many({"owner": dead},
                                               {"$set": {"until": utcnow()}})
        for hook in self.on_reap:
            await hook(dead)
        # only if it did not come back meanwhile (a stalled process renews the same id)
        res = await self.coll.delete_one({"_id": dead, "until": member["until"]})
        if res.deleted_count:
            self.reaped += 1
            log.warning("member_reaped", member=dead, sessions=len(member.get("sessions", [])))
        return bool(res.deleted_count)

    async def run(self) -> None:
        from shared.runtime import keep_running

        async def tick() -> None:  # the loop's progress, as the renewal thread sees it
            while True:
                self._ticked = time.monotonic()
                await asyncio.sleep(min(1.0, self.beat_every))

        ticker = asyncio.create_task(tick(), name="members-tick")
        try:
            await keep_running("members", self.beat, lambda _: asyncio.sleep(self.beat_every),
                               cap=self.beat_every)
        finally:
            ticker.cancel()

    def _keepalive(self) -> None:
        """The renewal thread (its own synchronous client): our document's expiry moved on
        every `beat_every` seconds while the event loop shows progress; it only renews a
        document that exists (the loop's `beat` creates it, `leave` deletes it)."""
        from pymongo import MongoClient

        from shared.store import retry_writes  # (store imports this module)

        url = self.store.settings.mongodb_url
        client: Any = MongoClient(url, tz_aware=True, serverSelectionTimeoutMS=3000,
                                  connectTimeoutMS=3000, **retry_writes(url),
                                  **self.store.settings.mongo_options())
        coll = client[self.store.settings.database].members
        try:
            while not self._stop.wait(self.beat_every):
                if time.monotonic() - self._ticked > self.stall:
                    continue  # hung: let the others reap us
                try:
                    coll.update_one({"_id": self.owner}, {"$max": {"until": self._until()}})
                except Exception as e:  # the store restarting: the next round tries again
                    log.debug("member_keepalive_failed", error=repr(e))
        finally:
            client.close()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="members")
        self._stop.clear()
        self._thread = threading.Thread(target=self._keepalive, name="members-keepalive",
                                        daemon=True)
        self._thread.start()

    async def leave(self) -> None:
        """A clean stop: our leases and document go at once, so others take over now."""
        self._stop.set()
        if self._thread:
            await asyncio.to_thread(self._thread.join, 5)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.store.db.leases.update_many({"owner": self.owner},
                                                   {"$set": {"until": utcnow()}})
            await self.coll.delete_one({"_id": self.owner})


def unit_of(key: Any, count: int) -> int:
    """The unit (shard) of a key: the same on every replica, Python version and restart."""
    return zlib.crc32(str(key or "").encode()) % count


class Leases:
    def __init__(self, members: Members, kind: str, count: int, seconds: float) -> None:
        self.members, self.kind, self.count, self.seconds = members, kind, count, seconds
        self.held: dict[int, int] = {}  # unit -> the token we took it with

    @property
    def coll(self) -> Any:
        return self.members.store.db.leases

    def _id(self, unit: int) -> str:
        return f"{self.kind}:{unit}"

    async def refresh(self) -> list[int]:
        """Renew what we hold, give back what is beyond our fair share, take free units up
        to it; the units we hold now."""
        me, now = self.members.owner, utcnow()
        until = now + timedelta(seconds=self.seconds)
        share = math.ceil(self.count / max(self.members.live, 1))
        if self.held:
            ids = [self._id(u) for u in self.held]
            await self.coll.update_many({"_id": {"$in": ids}, "owner": me},
                                        {"$set": {"until": until}})
            still = {d["_id"]: d["token"] async for d in self.coll.find(
                {"_id": {"$in": ids}, "owner": me}, {"token": 1})}
            self.held = {u: still[self._id(u)] for u in self.held if self._id(u) in still}
        for u in sorted(self.held, reverse=True)[:max(len(self.held) - share, 0)]:
            await self.coll.update_one({"_id": self._id(u), "owner": me},
                                       {"$set": {"until": now}})
            del self.held[u]
        start = unit_of(me, self.count)  # members try the units in different orders
        for i in range(self.count):
            if len(self.held) >= share:
                break
            u = (start + i) % self.count
            if u in self.held:
                continue
            try:
                doc = await self.coll.find_one_and_update(
                    {"_id": self._id(u), "until": {"$lt": now}},
                    {"$set": {"owner": me, "until": until, "kind": self.kind},
                     "$inc": {"token": 1}},
                    upsert=True, return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:
                continue  # held by a live member
            if doc and doc.get("owner") == me:
                self.held[u] = doc["token"]
        return sorted(self.held)

    async def fence(self, uow: Any, unit: int) -> None:
        """In `uow`'s transaction: commit only while we hold `unit` with our token."""
        token = self.held.get(unit)
        res = await uow.db.leases.update_one(
            {"_id": self._id(unit), "owner": self.members.owner, "token": token},
            {"$set": {"fenced_at": utcnow()}}, session=uow.session)
        if token is None or res.matched_count != 1:
            self.held.pop(unit, None)
            raise Fenced(f"{self._id(unit)} is no longer held by {self.members.owner}")

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.coll.update_many({"_id": {"$in": [self._id(u) for u in self.held]},
                                         "owner": self.members.owner},
                                        {"$set": {"until": utcnow()}})
        self.held = {}
