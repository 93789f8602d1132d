"""Notifications' MongoDB adapter (its own database): the directory of recipients, what it
remembers of programmes, and deliveries: the delivery log, the inbox and the outgoing queue.

A delivery's `_id` is its notification id (fact, recipient, channel): created once whatever
is redelivered. Webhook and e-mail deliveries are claimed by a dispatcher under a lease; a
lease that expires (a dispatcher killed mid-send) makes the delivery due again, so the
boundary with a remote system is at-least-once and every message carries its notification id
for the receiver to dedupe.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.notifications.domain import FMU, Contact, Notice, Programme, next_digest
from shared.contracts.notifications import NotificationDelivered, NotificationFailed
from shared.metrics import BUSINESS
from shared.reference import NETWORK_MEMBERS
from shared.store import Store, UnitOfWork


def contact_of(d: dict[str, Any] | None) -> Contact | None:
    if d is None:
        return None
    return Contact(d["_id"], d.get("webhook_url"), d.get("webhook_secret"), d.get("email"),
                   tuple(d.get("event_types") or ["*"]), d.get("mode", "immediate"))


class NotificationsStore(Store):
    async def indexes(self) -> None:
        d = self.db.deliveries
        await d.create_index([("recipient", ASCENDING), ("created_at", DESCENDING)])
        await d.create_index([("programme_id", ASCENDING)])
        await d.create_index([("status", ASCENDING), ("due_at", ASCENDING)])
        await d.create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
        await self.db.parked.create_index([("programme_id", ASCENDING)])

    async def seed_directory(self) -> None:
        """The Network's members and the FMU, with no contact points yet (inbox only)."""
        for code, name in {**NETWORK_MEMBERS, FMU: "Fund Management Unit"}.items():
            await self.db.directory.update_one(
                {"_id": code}, {"$setOnInsert": {"name": name, "kind": "fmu" if code == FMU
                                                 else "entity", "event_types": ["*"],
                                                 "mode": "immediate"}}, upsert=True)

    # -- the directory ------------------------------------------------------------------------
    async def contacts(self, uow: UnitOfWork, codes: list[str]) -> dict[str, Contact]:
        return {d["_id"]: c async for d in self.db.directory.find(
            {"_id": {"$in": codes}}, session=uow.session) if (c := contact_of(d))}

    async def contact(self, code: str) -> Contact | None:
        return contact_of(await self.db.directory.find_one({"_id": code}))

    async def put_contact(self, code: str, doc: dict[str, Any]) -> dict[str, Any]:
        await self.db.directory.update_one({"_id": code}, {"$set": doc}, upsert=True)
        return await self.db.directory.find_one({"_id": code})

    async def directory(self) -> list[dict[str, Any]]:
        return await self.db.directory.find().sort("_id", ASCENDING).to_list(None)

    # -- programmes ---------------------------------------------------------------------------
    async def remember_programme(self, uow: UnitOfWork, view: dict[str, Any]) -> None:
        await self.db.programmes.update_one({"_id": view["_id"]}, {"$set": view}, upsert=True,
                                            session=uow.session)

    async def add_contributors(self, uow: UnitOfWork, pid: str, contributors: list[str]
                               ) -> None:
        await self.db.programmes.update_one(
            {"_id": pid}, {"$addToSet": {"contributors": {"$each": contributors}}},
            upsert=True, session=uow.session)

    async def programme(self, uow: UnitOfWork, pid: str | None) -> Programme | None:
        if not pid:
            return None
        d = await self.db.programmes.find_one({"_id": pid}, session=uow.session)
        return Programme.from_doc(d) if d and d.get("punos") else None

    async def park(self, uow: UnitOfWork, fact_id: str, fact_type: str, pid: str,
                   data: dict[str, Any], traceparent: str | None) -> None:
        """Keep a fact until its programme is known. Parking also writes the programme's
        document, so it conflicts with a concurrent remember_programme (which writes the same
        document): one transaction retries and sees the other, and no fact is left parked
        (snapshot isolation alone would let both commit, each blind to the other)."""
        await self.db.programmes.update_one({"_id": pid}, {"$inc": {"parked": 1}},
                                            upsert=True, session=uow.session)
        await self.db.parked.update_one(
            {"_id": fact_id}, {"$setOnInsert": {"type": fact_type, "programme_id": pid,
                                                "data": data, "traceparent": traceparent}},
            upsert=True, session=uow.session)

    async def unpark(self, uow: UnitOfWork, pid: str) -> list[dict[str, Any]]:
        docs = await self.db.parked.find({"programme_id": pid}, session=uow.session).to_list(
            None)
        if docs:
            await self.db.parked.delete_many({"programme_id": pid}, session=uow.session)
        return docs

    # -- deliveries ---------------------------------------------------------------------------
    async def record(self, uow: UnitOfWork, notices: list[Notice], contacts: dict[str, Contact],
                     now: datetime, digest_hour: int, traceparent: str | None) -> int:
        """Create each notice once. Inbox notices are delivered by this very write; webhook
        and e-mail ones wait for the dispatcher (at once, or at the next digest slot)."""
        if not notices:
            return 0
        have = {d["_id"] async for d in self.db.deliveries.find(
            {"_id": {"$in": [n.id for n in notices]}}, {"_id": 1}, session=uow.session)}
        fresh = [n for n in notices if n.id not in have]
        docs = []
        for n in fresh:
            inbox = n.channel == "inbox"
            digest = not inbox and getattr(contacts.get(n.recipient), "mode", "") == "digest"
            docs.append({
                "_id": n.id, "fact_id": n.fact_id, "fact_type": n.fact_type,
                "programme_id": n.programme_id, "recipient": n.recipient, "channel": n.channel,
                "subject": n.subject, "text": n.text(), "html": n.html(),
                "status": "delivered" if inbox else "pending", "digest": digest,
                "attempts": 1 if inbox else 0, "created_at": now,
                "due_at": next_digest(now, digest_hour) if digest else now,
                "delivered_at": now if inbox else None, "read": False,
                "traceparent": traceparent, "history": []})
            if inbox:
                uow.emit(NotificationDelivered(
                    notification_id=n.id, fact_id=n.fact_id, fact_type=n.fact_type,
                    programme_id=n.programme_id, recipient=n.recipient, channel="inbox",
                    delivered_at=now), traceparent=traceparent)
        if docs:
            await self.db.deliveries.insert_many(docs, session=uow.session)
            BUSINESS.labels("notifications_delivered").inc(sum(1 for d in docs
                                                               if d["status"] == "delivered"))
        return len(docs)

    async def claim_due(self, owner: str, now: datetime, limit: int, lease: float
                        ) -> list[dict[str, Any]]:
        due = {"$or": [{"status": "pending", "due_at": {"$lte": now}},
                       {"status": "sending", "lease_until": {"$lt": now}}]}
        ids = [d["_id"] async for d in self.db.deliveries.find(due, {"_id": 1}).sort(
            "due_at", ASCENDING).limit(limit)]
        if not ids:
            return []
        await self.db.deliveries.update_many(
            {"_id": {"$in": ids}, **due},
            {"$set": {"status": "sending", "owner": owner,
                      "lease_until": now + timedelta(seconds=lease)}})
        return await self.db.deliveries.find(
            {"_id": {"$in": ids}, "owner": owner, "status": "sending"}).to_list(None)

    async def delivered(self, docs: list[dict[str, Any]], owner: str, now: datetime) -> None:
        async def work(uow: UnitOfWork) -> None:
            for d in docs:
                res = await self.db.deliveries.update_one(
                    {"_id": d["_id"], "owner": owner, "status": "sending"},
                    {"$set": {"status": "delivered", "delivered_at": now},
                     "$inc": {"attempts": 1},
                     "$push": {"history": {"at": now, "outcome": "delivered"}}},
                    session=uow.session)
                if res.modified_count:
                    uow.emit(NotificationDelivered(
                        notification_id=d["_id"], fact_id=d["fact_id"],
                        fact_type=d["fact_type"], programme_id=d["programme_id"],
                        recipient=d["recipient"], channel=d["channel"], delivered_at=now),
                        traceparent=d.get("traceparent"))
                    BUSINESS.labels("notifications_delivered").inc()

        await self.transaction(work)

    async def failed(self, docs: list[dict[str, Any]], owner: str, now: datetime, error: str,
                     max_attempts: int, next_due: datetime) -> list[str]:
        """Record a failed attempt; the last one makes the delivery dead (the delivery dead
        letters) and announces NotificationFailed. Returns the ids that died."""
        died: list[str] = []

        async def work(uow: UnitOfWork) -> None:
            died.clear()
            for d in docs:
                attempts = d.get("attempts", 0) + 1
                dead = attempts >= max_attempts
                res = await self.db.deliveries.update_one(
                    {"_id": d["_id"], "owner": owner, "status": "sending"},
                    {"$set": {"status": "dead" if dead else "pending", "attempts": attempts,
                              "last_error": error[:500], "due_at": next_due},
                     "$push": {"history": {"at": now, "outcome": "failed",
                                           "error": error[:500]}}}, session=uow.session)
                if res.modified_count and dead:
                    died.append(d["_id"])
                    uow.emit(NotificationFailed(
                        notification_id=d["_id"], fact_id=d["fact_id"],
                        fact_type=d["fact_type"], programme_id=d["programme_id"],
                        recipient=d["recipient"], channel=d["channel"], attempts=attempts,
                        last_error=error[:500], failed_at=now),
                        traceparent=d.get("traceparent"))
                    BUSINESS.labels("notifications_failed").inc()

        await self.transaction(work)
        return died

    async def release(self, docs: list[dict[str, Any]], owner: str, due: datetime) -> None:
        """Give back unsent deliveries (an open circuit): not an attempt."""
        await self.db.deliveries.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}, "owner": owner, "status": "sending"},
            {"$set": {"status": "pending", "due_at": due}})

    async def replay(self, notification_id: str, now: datetime) -> bool:
        res = await self.db.deliveries.update_one(
            {"_id": notification_id, "status": "dead"},
            {"$set": {"status": "pending", "attempts": 0, "due_at": now},
             "$push": {"history": {"at": now, "outcome": "replayed"}}})
        return res.modified_count == 1

    async def deliveries(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return await self.db.deliveries.find(query, {"html": 0, "traceparent": 0}).sort(
            "created_at", DESCENDING).limit(limit).to_list(None)

    async def mark_read(self, notification_id: str, recipient: str) -> bool:
        res = await self.db.deliveries.update_one(
            {"_id": notification_id, "recipient": recipient, "channel": "inbox"},
            {"$set": {"read": True}})
        return res.matched_count == 1
