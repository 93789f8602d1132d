"""Retention against the real Mongo server: published outbox documents and consumed event
ids go once they are older than the settings keep them; unpublished events never go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.settings import ServiceSettings
from shared.store import Store
from tests.support import isolated

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_old_published_events_and_old_event_ids_are_pruned_and_nothing_else() -> None:
    store = Store(isolated(ServiceSettings, service_name="retention", outbox_keep_sent_hours=24,
                           inbox_keep_days=14))
    await store.ensure_indexes()
    day = timedelta(days=1)
    await store.db.outbox.insert_many([
        {"_id": "sent-long-ago", "seq": 1, "sent_at": NOW - 2 * day, "count": 1, "events": []},
        {"_id": "sent-lately", "seq": 2, "sent_at": NOW - day / 2, "count": 1, "events": []},
        {"_id": "never-sent", "seq": 3, "sent_at": None, "count": 1, "events": [],
         "created_at": NOW - 30 * day}])
    await store.db.inbox.insert_many(
        [{"_id": f"c:old{i}", "at": NOW - 15 * day} for i in range(5)]
        + [{"_id": "c:recent", "at": NOW - 13 * day}])

    assert await store.prune(NOW, chunk=2) == {"outbox": 1, "inbox": 5}  # chunks of two
    assert {d["_id"] async for d in store.db.outbox.find()} == {"sent-lately", "never-sent"}
    assert {d["_id"] async for d in store.db.inbox.find()} == {"c:recent"}
    assert await store.prune(NOW) == {"outbox": 0, "inbox": 0}
    await store.client.drop_database(store.db.name)
    await store.close()
