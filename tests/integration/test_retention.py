"""Retention by the store's own TTL indexes, against the real Mongo server: published outbox
documents and consumed event ids expire once older than the settings keep them; an
unpublished event never does; a service started with other settings replaces the lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.settings import ServiceSettings
from shared.store import Store
from tests.support import eventually, isolated


async def test_old_published_events_and_old_event_ids_expire_and_nothing_else() -> None:
    store = Store(isolated(ServiceSettings, service_name="retention", outbox_keep_sent_hours=24,
                           inbox_keep_days=14))
    await store.ensure_indexes()
    now, day = datetime.now(UTC), timedelta(days=1)  # the server's clock decides
    await store.db.outbox.insert_many([
        {"_id": "sent-long-ago", "seq": 1, "sent_at": now - 2 * day, "count": 1, "events": []},
        {"_id": "sent-lately", "seq": 2, "sent_at": now - day / 2, "count": 1, "events": []},
        {"_id": "never-sent", "seq": 3, "sent_at": None, "count": 1, "events": [],
         "created_at": now - 30 * day}])
    await store.db.inbox.insert_many(
        [{"_id": f"c:old{i}", "at": now - 15 * day} for i in range(5)]
        + [{"_id": "c:recent", "at": now - 13 * day}])

    async def expired() -> bool:  # the server sweeps TTL indexes every 60 s (mongod too)
        return (await store.db.outbox.count_documents({}) == 2
                and await store.db.inbox.count_documents({}) == 1)

    await eventually(expired, timeout=100, every=0.5)
    assert {d["_id"] async for d in store.db.outbox.find()} == {"sent-lately", "never-sent"}
    assert {d["_id"] async for d in store.db.inbox.find()} == {"c:recent"}
    info = await store.db.inbox.index_information()
    assert info["at_ttl"]["expireAfterSeconds"] == 14 * 86400

    # a service started with another retention replaces the index's lifetime
    shorter = Store(store.settings.model_copy(update={"inbox_keep_days": 12}))
    await shorter.ensure_indexes()
    info = await store.db.inbox.index_information()
    assert [i.get("expireAfterSeconds") for i in info.values()
            if i["key"] == [("at", 1)]] == [12 * 86400]
    await store.client.drop_database(store.db.name)
    await store.close()
    await shorter.close()
