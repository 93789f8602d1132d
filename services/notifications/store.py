"""Notifications' MongoDB adapter: programme views, deliveries (the delivery log), inbox."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.notifications.domain import Notice
from shared.contracts.notifications import NotificationDelivered
from shared.envelope import utcnow
from shared.store import Store, UnitOfWork


class NotificationsStore(Store):
    async def indexes(self) -> None:
        await self.db.deliveries.create_index([("recipient", ASCENDING), ("at", DESCENDING)])
        await self.db.deliveries.create_index([("programme_id", ASCENDING)])

    async def remember_programme(self, uow: UnitOfWork, view: dict[str, Any]) -> None:
        await self.db.programmes.replace_one({"_id": view["_id"]}, view, upsert=True,
                                             session=uow.session)

    async def deliver_inbox(self, uow: UnitOfWork, notices: list[Notice],
                            traceparent: str | None) -> int:
        """Inbox delivery is a write in our own store: it is delivered when committed."""
        if not notices:
            return 0
        ids = [n.id for n in notices]
        have = {d["_id"] async for d in self.db.deliveries.find(
            {"_id": {"$in": ids}}, {"_id": 1}, session=uow.session)}
        now = utcnow()
        fresh = [n for n in notices if n.id not in have]
        if fresh:
            await self.db.deliveries.insert_many([{
                "_id": n.id, "fact_id": n.fact_id, "fact_type": n.fact_type,
                "programme_id": n.programme_id, "recipient": n.recipient, "channel": n.channel,
                "subject": n.subject, "body": n.body, "status": "delivered", "attempts": 1,
                "at": now, "read": False} for n in fresh], session=uow.session)
        for n in fresh:
            uow.emit(NotificationDelivered(
                notification_id=n.id, fact_id=n.fact_id, fact_type=n.fact_type,
                programme_id=n.programme_id, recipient=n.recipient, channel=n.channel,
                delivered_at=now), traceparent=traceparent)
        return len(fresh)

    async def deliveries(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return await self.db.deliveries.find(query).sort("at", DESCENDING).limit(limit).to_list(
            None)
