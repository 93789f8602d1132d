"""Retention (Store.prune) against the real Mongo server: published outbox documents and
consumed event ids are deleted once older than the settings keep them; an unpublished
event never is; a running service prunes on its own, every retention_sweep_seconds. The
store keeps no TTL index (an earlier release's are dropped at start): the local Mongo
server sweeps a TTL index by decoding every document of its collection, every minute,
under its global lock (a 0.9 s stall at 30,000 documents, measured in docs/benchmarks.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING

from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from shared.settings import ServiceSettings
from shared.store import Store
from tests.integration.conftest import running
from tests.support import eventually, isolated

DAY = timedelta(days=1)


async def old_and_new(store: Store, now: datetime) -> None:
    await store.db.outbox.insert_many([
        {"_id": "sent-long-ago", "shard": 0, "seq": 1, "sent_at": now - 2 * DAY, "count": 1,
         "events": []},
        {"_id": "sent-lately", "shard": 7, "seq": 2, "sent_at": now - DAY / 2, "count": 1,
         "events": []},
        {"_id": "never-sent", "shard": 3, "seq": 3, "sent_at": None, "count": 1, "events": [],
         "created_at": now - 30 * DAY}])
    await store.db.inbox.insert_many(
        [{"_id": f"c:old{i}", "at": now - 15 * DAY} for i in range(5)]
        + [{"_id": "c:recent", "at": now - 13 * DAY}])


async def test_old_published_events_and_old_event_ids_are_pruned_and_nothing_else() -> None:
    store = Store(isolated(ServiceSettings, service_name="retention", outbox_keep_sent_hours=24,
                           inbox_keep_days=14))
    # an earlier release's TTL index: dropped at start, replaced by an ordinary one
    await store.db.inbox.create_index([("at", ASCENDING)], name="at_ttl",
                                      expireAfterSeconds=14 * 86400)
    await store.ensure_indexes()
    for coll in ("inbox", "outbox"):
        assert not [n for n, i in (await store.db[coll].index_information()).items()
                    if "expireAfterSeconds" in i], coll
    assert [("at", 1)] in [i["key"] for i in (await store.db.inbox.index_information()).values()]

    now = datetime.now(UTC)
    await old_and_new(store, now)
    assert await store.prune(now) == {"outbox": 1, "inbox": 5}
    assert {d["_id"] async for d in store.db.outbox.find()} == {"sent-lately", "never-sent"}
    assert {d["_id"] async for d in store.db.inbox.find()} == {"c:recent"}
    assert await store.prune(now) == {"outbox": 0, "inbox": 0}  # idempotent

    # other settings keep less
    shorter = Store(store.settings.model_copy(update={"inbox_keep_days": 12,
                                                      "outbox_keep_sent_hours": 6}))
    assert await shorter.prune(now) == {"outbox": 1, "inbox": 1}
    assert {d["_id"] async for d in store.db.outbox.find()} == {"never-sent"}
    await store.client.drop_database(store.db.name)
    await store.close()
    await shorter.close()


async def test_a_running_service_prunes_on_its_own() -> None:
    settings = isolated(IntakeSettings, retention_sweep_seconds=0.5)
    async with running(build_intake, settings) as (_, rt, _http):
        await old_and_new(rt.store, datetime.now(UTC))

        async def pruned() -> bool:
            return (await rt.store.db.inbox.count_documents({}) == 1
                    and await rt.store.db.outbox.count_documents(
                        {"_id": {"$in": ["sent-long-ago", "sent-lately", "never-sent"]}}) == 2)

        await eventually(pruned)
        assert await rt.store.db.outbox.find_one({"_id": "never-sent"})
