"""Notifications' MongoDB adapter (its own database): the directory of recipients, what it
remembers of programmes, and deliveries: the delivery log, the inbox and the outgoing queue.

Every notification has its id (fact, recipient, channel), made once whatever is redelivered.
`deliveries` holds them in two shapes:

* a fact's inbox notices, all in one document (`_id` domain.inbox_group(fact)): its
  `recipients` and their notification `ids` side by side, and `read_by`. They are
  delivered by their writing, so nothing about them differs per recipient but the read
  mark, and one document instead of one per recipient is most of the store's work saved
  (the Mongo server pays per document and per index entry: docs/benchmarks.md);
* a webhook or e-mail delivery, one document each (`_id` its notification id), with its
  status, attempts, history and lease. A dispatcher claims it under a lease; a lease that
  expires (a dispatcher killed mid-send) makes it due again, so the boundary with a remote
  system is at-least-once and every message carries its notification id for the receiver
  to dedupe. (Earlier releases kept inbox notices in this shape: they are moved into
  their facts' inbox documents at start.)

The log and the inbox read rows out of both (`rows_of`), so their answers are one row per
notification as before.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from services.notifications.domain import (
    FMU,
    Contact,
    Notice,
    Programme,
    inbox_group,
    next_digest,
)
from shared import paging
from shared.contracts.notifications import (
    NotificationDelivered,
    NotificationFailed,
    NotificationRead,
    NotificationRequeued,
    NotificationRetrying,
)
from shared.envelope import utcnow
from shared.errors import BadRequest
from shared.metrics import BUSINESS
from shared.reference import NETWORK_MEMBERS
from shared.settings import ServiceSettings
from shared.store import Store, UnitOfWork


class Recent:
    """The programmes this process read last (at most `size` of them, the oldest forgotten
    first): whom a batch's facts are likely to address is known before the batch's
    programmes are read, so their directory entries can be read meanwhile. Only a guess:
    what it misses is read in the transaction, as without it."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._programmes: OrderedDict[str, Programme] = OrderedDict()

    def get(self, pid: str | None) -> Programme | None:
        return self._programmes.get(pid) if pid else None

    def put(self, p: Programme) -> None:
        self._programmes[p.programme_id] = p
        self._programmes.move_to_end(p.programme_id)
        while len(self._programmes) > self.size:
            self._programmes.popitem(last=False)


def contact_of(d: dict[str, Any] | None) -> Contact | None:
    if d is None:
        return None
    return Contact(d["_id"], d.get("webhook_url"), d.get("webhook_secret"), d.get("email"),
                   tuple(d.get("event_types") or ["*"]), d.get("mode", "immediate"))


class NotificationsStore(Store):
    def __init__(self, settings: ServiceSettings, *, driver: str | None = None) -> None:
        super().__init__(settings, driver=driver)
        self.recent = Recent()

    async def indexes(self) -> None:
        d = self.db.deliveries
        await self._rows_of_earlier_releases()
        # the inbox and the log by recipient (a fact's inbox document under each of its
        # recipients), and a notification id to its fact's inbox document
        await d.create_index([("recipients", ASCENDING), ("created_at", DESCENDING),
                              ("_id", DESCENDING)])
        await d.create_index([("ids", ASCENDING)])
        await d.create_index([("programme_id", ASCENDING)])
        # The dispatcher's queue: partial indexes holding only the webhook and e-mail
        # deliveries that wait or are being sent. Inbox notices, most of the log, are
        # delivered by their creation and never enter them (each index a write costs).
        have = set(await d.index_information())  # (the same call in both drivers)
        # their earlier forms, and the fact_id index a batch's deliveries were once looked up
        # by (record() now inserts a batch's notices without a lookup: see expect_new)
        for old in ("status_1_due_at_1", "status_1_lease_until_1", "fact_id_1",
                    "recipient_1_created_at_-1"):
            if old in have:
                with suppress(OperationFailure):  # another replica starting dropped it first
                    await d.drop_index(old)
        await d.create_index([("status", ASCENDING), ("due_at", ASCENDING)], name="queue_due",
                             partialFilterExpression={"status": "pending"})
        await d.create_index([("status", ASCENDING), ("lease_until", ASCENDING)],
                             name="queue_leased", partialFilterExpression={"status": "sending"})
        await self.db.parked.create_index([("programme_id", ASCENDING)])
        await d.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])

    async def _rows_of_earlier_releases(self) -> None:
        """Deliveries written before a fact's inbox notices were kept together have one
        recipient each: each inbox notice moves into its fact's inbox document (its id, its
        read mark and all), and the other deliveries get `recipients` like the rest. Once:
        a marker in `meta` says it was done, so a start does not scan the log again. Each
        chunk is one transaction, so replicas starting together cannot move a notice
        twice (one conflicts, and finds it moved)."""
        if await self.db.meta.find_one({"_id": "deliveries.recipients"}):
            return
        while old := await self.db.deliveries.find(
                {"recipients": {"$exists": False}}).limit(200).to_list(None):
            async def move(uow: UnitOfWork, old: list[dict[str, Any]] = old) -> None:
                deliveries = uow.docs("deliveries")
                await deliveries.load([d["_id"] for d in old] + [
                    inbox_group(d["fact_id"]) for d in old if d["channel"] == "inbox"])
                for d in old:
                    if (deliveries.cache.get(d["_id"]) or {}).get("recipients") is not None:
                        continue  # (moved meanwhile)
                    if d["channel"] != "inbox":
                        await deliveries.update(d["_id"], {"$set": {
                            "recipients": [d["recipient"]]}})
                        continue
                    group = inbox_group(d["fact_id"])
                    if deliveries.cache.get(group) is None:
                        await deliveries.insert({
                            "_id": group, **{k: d.get(k) for k in (
                                "fact_id", "fact_type", "programme_id", "channel", "subject",
                                "text", "status", "created_at", "delivered_at",
                                "traceparent")}, "recipients": [], "ids": [], "read_by": []})
                    if deliveries.cache.get(d["_id"]) is not None:
                        await deliveries.update(group, {
                            "$push": {"recipients": d["recipient"], "ids": d["_id"]},
                            **({"$addToSet": {"read_by": d["recipient"]}}
                               if d.get("read") else {})})
                        await deliveries.delete(d["_id"])

            await self.transaction(move)
        await self.db.meta.update_one({"_id": "deliveries.recipients"},
                                      {"$set": {"at": utcnow()}}, upsert=True)

    async def seed_directory(self) -> None:
        """The Network's members and the FMU, with no contact points yet (inbox only); an
        entry already there is left as it is. One command at every start (it was one per
        entry: 30 round trips). A replica starting at the same moment may insert some
        entries first: their unique `_id` refuses ours, and theirs are the same."""
        seeds = [UpdateOne({"_id": code}, {"$setOnInsert": {
            "name": name, "kind": "fmu" if code == FMU else "entity", "event_types": ["*"],
            "mode": "immediate"}}, upsert=True)
            for code, name in {**NETWORK_MEMBERS, FMU: "Fund Management Unit"}.items()]
        try:
            await self.db.directory.bulk_write(seeds, ordered=False)
        except BulkWriteError as e:
            if any(x.get("code") != 11000 for x in e.details.get("writeErrors", [])):
                raise

    # -- the directory ------------------------------------------------------------------------
    async def contacts(self, uow: UnitOfWork, codes: list[str]) -> dict[str, Contact]:
        directory = uow.docs("directory")
        await directory.load(codes)
        return {code: c for code in codes if (c := contact_of(directory.cache[code]))}

    async def read_contacts(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        """Directory entries read outside any transaction (see handle_facts' preload)."""
        return {d["_id"]: d async for d in self.db.directory.find({"_id": {"$in": codes}})}

    async def contact(self, code: str) -> Contact | None:
        return contact_of(await self.db.directory.find_one({"_id": code}))

    async def put_contact(self, code: str, doc: dict[str, Any]) -> dict[str, Any]:
        await self.db.directory.update_one({"_id": code}, {"$set": doc}, upsert=True)
        return await self.db.directory.find_one({"_id": code})

    async def directory(self) -> list[dict[str, Any]]:
        return await self.db.directory.find().sort("_id", ASCENDING).to_list(None)

    # -- programmes ---------------------------------------------------------------------------
    async def remember_programme(self, uow: UnitOfWork, view: dict[str, Any]) -> None:
        await uow.docs("programmes").update(view["_id"], {"$set": view}, upsert=True)

    async def add_contributors(self, uow: UnitOfWork, pid: str, contributors: list[str]
                               ) -> None:
        await uow.docs("programmes").update(
            pid, {"$addToSet": {"contributors": {"$each": contributors}}}, upsert=True)

    async def programme(self, uow: UnitOfWork, pid: str | None) -> Programme | None:
        if not pid:
            return None
        d = await uow.docs("programmes").get(pid)
        return Programme.from_doc(d) if d and d.get("punos") else None

    async def recent_programme(self, pid: str | None) -> Programme | None:
        """The programme as this process last read it (no read now), if it still recalls it."""
        return self.recent.get(pid)

    async def park(self, uow: UnitOfWork, fact_id: str, fact_type: str, pid: str,
                   data: dict[str, Any], traceparent: str | None, at: datetime) -> None:
        """Keep a fact until its programme is known. Parking also writes the programme's
        document, so it conflicts with a concurrent remember_programme (which writes the same
        document): one transaction retries and sees the other, and no fact is left parked
        (snapshot isolation alone would let both commit, each blind to the other)."""
        await uow.docs("programmes").update(pid, {"$inc": {"parked": 1}}, upsert=True)
        await uow.docs("parked").update(
            fact_id, {"$setOnInsert": {"type": fact_type, "programme_id": pid,
                                       "data": data, "traceparent": traceparent, "at": at}},
            upsert=True)

    async def load_parked(self, uow: UnitOfWork, pids: list[str]) -> None:
        """The facts parked for these programmes (their submissions are in the batch), read
        in one query; unpark() then reads none. Only those whose documents (loaded) say
        they have some: a pipeline running behind parks many (a programme's money facts
        read before its submission, on another topic), and then each submission's query
        was a round trip of its own inside the batch's transaction."""
        programmes = uow.docs("programmes")
        waiting = [pid for pid in dict.fromkeys(pids)
                   if (programmes.cache.get(pid) or {}).get("parked")]
        if waiting:
            parked = uow.docs("parked")
            await parked.load_where({"programme_id": {"$in": waiting}})
            parked.covered.update(waiting)  # (every parked fact of theirs is cached now)

    async def unpark(self, uow: UnitOfWork, pid: str) -> list[dict[str, Any]]:
        prog = await uow.docs("programmes").get(pid)
        if not prog or not prog.get("parked"):
            return []  # nothing was ever parked for it: no query
        parked = uow.docs("parked")
        if pid in parked.covered:  # (load_parked; and those parked in the batch since)
            docs = [d for d in parked.cache.values()
                    if d is not None and d.get("programme_id") == pid]
        else:
            docs = await parked.load_where({"programme_id": pid})
        for d in docs:
            await parked.delete(d["_id"])
        await uow.docs("programmes").update(pid, {"$unset": {"parked": ""}})
        return docs

    def expect_new(self, uow: UnitOfWork, fact_ids: list[str]) -> None:
        """These facts' notices are taken to be new, without a query: the inbox has not seen
        the facts, so neither has record(), unless a fact's inbox record expired before it
        came again. Then inserting a notice that exists fails the transaction on its unique
        id (E11000), and the batch runs again without this (handle_facts): each notice is
        looked up by its id before it is made."""
        uow.docs("deliveries").covered.update(fact_ids)

    # -- deliveries ---------------------------------------------------------------------------
    async def record(self, uow: UnitOfWork, notices: list[Notice], contacts: dict[str, Contact],
                     now: datetime, digest_hour: int, traceparent: str | None) -> int:
        """Create each notice once: a fact's inbox notices in its one inbox document,
        delivered by this very write; each webhook and e-mail notice in a document of its
        own, waiting for the dispatcher (at once, or at the next digest slot). Returns how
        many of the new notices wait for it."""
        if not notices:
            return 0
        deliveries = uow.docs("deliveries")
        # each notice's own document (webhook, e-mail) and its fact's inbox document, by fact
        keys = {n.id: n.fact_id for n in notices} | {
            n.group: n.fact_id for n in notices if n.channel == "inbox"}
        for key, fact in keys.items():
            if fact in deliveries.covered:
                deliveries.cache.setdefault(key, None)  # the load found none
        await deliveries.load(keys)

        def made(n: Notice) -> bool:
            group = deliveries.cache.get(n.group) if n.channel == "inbox" else None
            return deliveries.cache[n.id] is not None or (
                group is not None and n.id in group["ids"])

        queued = 0
        inbox: dict[str, list[Notice]] = {}
        for n in (n for n in notices if not made(n)):
            if n.channel == "inbox":
                inbox.setdefault(n.group, []).append(n)
                uow.emit(NotificationDelivered(
                    notification_id=n.id, fact_id=n.fact_id, fact_type=n.fact_type,
                    programme_id=n.programme_id, recipient=n.recipient, channel="inbox",
                    delivered_at=now), traceparent=traceparent)
                continue
            digest = getattr(contacts.get(n.recipient), "mode", "") == "digest"
            await deliveries.insert({
                "_id": n.id, "fact_id": n.fact_id, "fact_type": n.fact_type,
                "programme_id": n.programme_id, "recipient": n.recipient,
                "recipients": [n.recipient], "channel": n.channel,
                "subject": n.subject, "text": n.text(),
                # HTML only where it is sent (e-mail): the inbox and the log never show it
                **({"html": n.html()} if n.channel == "email" else {}),
                "status": "pending", "digest": digest, "attempts": 0, "created_at": now,
                "due_at": next_digest(now, digest_hour) if digest else now,
                "delivered_at": None, "read": False, "traceparent": traceparent,
                "history": [], **({"data": n.data} if n.data is not None else {})})
            queued += 1
        for group, new in inbox.items():
            added = {"recipients": [n.recipient for n in new], "ids": [n.id for n in new]}
            if deliveries.cache.get(group) is not None:  # recipients the fact has gained
                await deliveries.update(group, {"$push": {
                    k: {"$each": v} for k, v in added.items()}})
                continue
            first = new[0]  # (a fact's words are the same for each of its recipients)
            await deliveries.insert({
                "_id": group, "fact_id": first.fact_id, "fact_type": first.fact_type,
                "programme_id": first.programme_id, "channel": "inbox", **added,
                "read_by": [], "subject": first.subject, "text": first.text(),
                "status": "delivered", "created_at": now, "delivered_at": now,
                "traceparent": traceparent})
        delivered = sum(len(new) for new in inbox.values())
        if delivered:
            BUSINESS.labels("notifications_delivered").inc(delivered)
        return queued

    async def claim_due(self, owner: str, now: datetime, limit: int, lease: float
                        ) -> list[dict[str, Any]]:
        """Take up to `limit` deliveries that are due, or whose sender's lease ran out, under
        a lease of our own. Two plain indexed queries, not one `$or`: the Mongo wire server
        we run locally scans the whole collection for an `$or`, and this runs every poll."""
        until = now + timedelta(seconds=lease)
        claimed: list[Any] = []
        for due, oldest_first in (({"status": "pending", "due_at": {"$lte": now}}, "due_at"),
                                  ({"status": "sending", "lease_until": {"$lt": now}},
                                   "lease_until")):
            if len(claimed) >= limit:
                break
            ids = [d["_id"] async for d in self.db.deliveries.find(due, {"_id": 1}).sort(
                oldest_first, ASCENDING).limit(limit - len(claimed))]
            if ids:
                await self.db.deliveries.update_many(
                    {"_id": {"$in": ids}, **due},
                    {"$set": {"status": "sending", "owner": owner, "lease_until": until}})
                claimed += ids
        if not claimed:
            return []
        return await self.db.deliveries.find(
            {"_id": {"$in": claimed}, "owner": owner, "status": "sending"}).to_list(None)

    async def delivered(self, docs: list[dict[str, Any]], owner: str, now: datetime) -> None:
        async def work(uow: UnitOfWork) -> None:
            deliveries = await self._claimed(uow, docs, owner)
            for d in docs:
                if d["_id"] in deliveries:
                    fact = NotificationDelivered(**_notice(d), delivered_at=now)
                    uow.emit(fact, traceparent=d.get("traceparent"))
                    await self.outcome(uow, fact)
                    BUSINESS.labels("notifications_delivered").inc()

        await self.transaction(work)

    async def failed(self, docs: list[dict[str, Any]], owner: str, now: datetime, error: str,
                     max_attempts: int, next_due: datetime) -> list[str]:
        """Record a failed attempt (NotificationRetrying); the last one makes the delivery
        dead (the delivery dead letters) and announces NotificationFailed. Returns the ids
        that died."""
        died: list[str] = []

        async def work(uow: UnitOfWork) -> None:
            died.clear()
            deliveries = await self._claimed(uow, docs, owner)
            for d in docs:
                if d["_id"] not in deliveries:
                    continue
                attempts = d.get("attempts", 0) + 1
                fact: Any
                if attempts >= max_attempts:
                    died.append(d["_id"])
                    fact = NotificationFailed(**_notice(d), attempts=attempts,
                                              last_error=error[:500], failed_at=now)
                    BUSINESS.labels("notifications_failed").inc()
                else:
                    fact = NotificationRetrying(**_notice(d), attempts=attempts,
                                                last_error=error[:500], failed_at=now,
                                                next_attempt_at=next_due)
                uow.emit(fact, traceparent=d.get("traceparent"))
                await self.outcome(uow, fact)

        await self.transaction(work)
        return died

    async def outcome(self, uow: UnitOfWork, f: Any) -> None:
        """What a delivery's outcome changes (as it happens, or replayed from its fact):
        its status, attempts, history and when it is due; the sender's lease ends."""
        done = {"$unset": {"owner": "", "lease_until": ""}}
        if isinstance(f, NotificationDelivered):
            if f.channel == "inbox":
                return  # delivered by its very creation (record)
            upd: dict[str, Any] = {
                "$set": {"status": "delivered", "delivered_at": f.delivered_at,
                         "due_at": None},
                "$inc": {"attempts": 1},
                "$push": {"history": {"at": f.delivered_at, "outcome": "delivered"}}, **done}
        elif isinstance(f, NotificationRetrying | NotificationFailed):
            dead = isinstance(f, NotificationFailed)
            upd = {"$set": {"status": "dead" if dead else "pending", "attempts": f.attempts,
                            "last_error": f.last_error,
                            "due_at": None if dead else f.next_attempt_at},
                   "$push": {"history": {"at": f.failed_at, "outcome": "failed",
                                         "error": f.last_error}}, **done}
        elif isinstance(f, NotificationRequeued):
            upd = {"$set": {"status": "pending", "attempts": 0, "due_at": f.requeued_at},
                   "$push": {"history": {"at": f.requeued_at, "outcome": "replayed"}}}
        else:
            assert isinstance(f, NotificationRead)
            # (an inbox notice: in its fact's inbox document)
            await uow.docs("deliveries").update(inbox_group(f.fact_id), {
                "$addToSet": {"read_by": f.recipient}})
            return
        await uow.docs("deliveries").update(f.notification_id, upd)

    async def _claimed(self, uow: UnitOfWork, docs: list[dict[str, Any]], owner: str
                       ) -> set[str]:
        """Which of these deliveries this dispatcher still holds (its lease may have expired
        and another taken them): read in one query."""
        deliveries = uow.docs("deliveries")
        await deliveries.load(d["_id"] for d in docs)
        return {d["_id"] for d in docs if (x := deliveries.cache[d["_id"]]) is not None
                and x.get("owner") == owner and x.get("status") == "sending"}

    async def orphaned(self, owner: str) -> None:
        """A dead replica's claimed deliveries, due again now (shared.lease.Members reaps
        it: its sessions were ended, so none of its outcomes can still commit)."""
        await self.db.deliveries.update_many(
            {"status": "sending", "owner": owner},
            {"$set": {"status": "pending"}, "$unset": {"owner": "", "lease_until": ""}})

    async def release(self, docs: list[dict[str, Any]], owner: str, due: datetime) -> None:
        """Give back unsent deliveries (an open circuit): not an attempt."""
        await self.db.deliveries.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}, "owner": owner, "status": "sending"},
            {"$set": {"status": "pending", "due_at": due},
             "$unset": {"owner": "", "lease_until": ""}})

    async def replay(self, notification_id: str, now: datetime) -> bool:
        """A dead delivery back in the queue (NotificationRequeued); False if it is not
        dead."""
        async def work(uow: UnitOfWork) -> bool:
            d = await uow.docs("deliveries").get(notification_id)
            if d is None or d.get("status") != "dead":
                return False
            fact = NotificationRequeued(**_notice(d), requeued_at=now)
            uow.emit(fact, traceparent=d.get("traceparent"))
            await self.outcome(uow, fact)
            return True

        done, _ = await self.transaction(work)
        return done

    async def deliveries(self, query: dict[str, Any], cursor: str | None = None,
                         limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """Notifications newest first, a page of rows at a time: `query` names fields of a
        row (`recipient`, `read`, `channel`, `status`, `programme_id`, `fact_type`). The
        documents are paged as every list is (shared.paging); the cursor names the last
        row's document and its place among the document's rows."""
        query = dict(query)
        recipient = query.pop("recipient", None)
        read = query.pop("read", None)
        if recipient is not None:
            query["recipients"] = recipient
            if read is False:
                query["read_by"] = {"$ne": recipient}
        elif read is not None:
            raise ValueError("read marks are per recipient: name the recipient")
        limit = max(1, limit)  # (the routes bound it)
        coll, hidden = self.db.deliveries, {"html": 0, "traceparent": 0}
        rows: list[tuple[dict[str, Any], int, dict[str, Any]]] = []
        after: str | None = None  # the documents after this one
        if cursor:
            try:
                at, last, place = paging.decode(cursor, 3)
            except BadRequest:  # a cursor of an earlier release names a document
                at, last, place = *paging.decode(cursor, 2), 1 << 30
            if not isinstance(place, int) or isinstance(place, bool):
                raise BadRequest("invalid cursor", errors=[
                    {"field": "cursor", "reason": "not a cursor this API returned"}])
            after = paging.encode([at, last])
            d = await coll.find_one({"$and": [query, {"_id": last}]} if query else
                                    {"_id": last}, hidden)
            rows += [(d, i, r) for i, r in rows_of(d, recipient) if i > place] if d else []
        while len(rows) <= limit:
            docs, after = await self.page("deliveries", query, _NEWEST, after,
                                          limit + 1 - len(rows), hidden)
            rows += [(d, i, r) for d in docs for i, r in rows_of(d, recipient)]
            if after is None:
                break
        if len(rows) <= limit:
            return [r for _, _, r in rows], None
        d, i, _ = rows[limit - 1]
        return [r for _, _, r in rows[:limit]], paging.encode([d["created_at"], d["_id"], i])

    async def mark_read(self, notification_id: str, recipient: str,
                        now: datetime | None = None) -> bool:
        """The recipient's inbox notice marked read (once: NotificationRead); False if the
        recipient has no such notice."""
        async def work(uow: UnitOfWork) -> bool:
            rows = [r for d in await uow.docs("deliveries").load_where({"ids": notification_id})
                    for _, r in rows_of(d) if r["_id"] == notification_id]
            if not rows or rows[0]["recipient"] != recipient:
                return False
            if not rows[0]["read"]:
                fact = NotificationRead(**_notice(rows[0]), read_at=now or utcnow())
                uow.emit(fact, traceparent=rows[0].get("traceparent"))
                await self.outcome(uow, fact)
            return True

        done, _ = await self.transaction(work)
        return done


_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]
# what a row never shows: how the document is kept, the dispatcher's lease, the e-mail's HTML
_NOT_SHOWN = ("recipients", "ids", "read_by", "owner", "lease_until", "html")


def rows_of(d: dict[str, Any], recipient: str | None = None
            ) -> list[tuple[int, dict[str, Any]]]:
    """The notifications a delivery document holds, as rows of the log (each with its place
    in the document): a fact's inbox document one per recipient (only `recipient`'s if
    given), any other document itself."""
    shown = {k: v for k, v in d.items() if k not in _NOT_SHOWN}
    if "ids" not in d:
        return [(0, shown)]
    read_by = d.get("read_by") or []
    del shown["_id"]
    return [(i, {"_id": nid, **shown, "recipient": who, "digest": False, "attempts": 1,
                 "due_at": d["created_at"], "read": who in read_by, "history": []})
            for i, (who, nid) in enumerate(zip(d["recipients"], d["ids"], strict=True))
            if recipient is None or who == recipient]


def _notice(d: dict[str, Any]) -> dict[str, Any]:
    """What every fact about a delivery names."""
    return {"notification_id": d["_id"], "fact_id": d["fact_id"], "fact_type": d["fact_type"],
            "programme_id": d.get("programme_id"), "recipient": d["recipient"],
            "channel": d["channel"]}
