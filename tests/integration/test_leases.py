"""Shared work among replicas, against the real store and broker (shared.lease, shared.outbox):

* the outbox's shards are spread over the live replicas, each relayed by one, and each key's
  events reach Kafka in commit order although one replica's clock is an hour behind;
* a replica that lost its lease (another took the shard over) can write nothing under it;
* a replica SIGKILLed inside a store transaction is reaped by another: its server session is
  ended, so what it held is free at once, not after the server's transaction lifetime;
* a replica whose event loop is busy for several heartbeat lifetimes is not reaped (its
  transaction commits), but one whose loop made no progress past member_stall_seconds is;
* a heartbeat whose write lands after its expiry (the loop stalled between reading the clock
  and writing) neither revives a reaped member nor moves a live one's expiry back."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared import topics
from shared.contracts.monitoring import ReportOverdue
from shared.envelope import utcnow
from shared.kafka import make_producer
from shared.lease import Fenced, Leases
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.store import Store
from tests.support import eventually, headers_of, isolated, read_to_end

ROOT = Path(__file__).resolve().parents[2]


def overdue(pid: str, n: int) -> ReportOverdue:
    return ReportOverdue.model_validate({
        "programme_id": pid, "kind": "annual-financial", "year": 2027,
        "due": f"2028-04-{n % 28 + 1:02}", "detected_at": "2028-05-01T00:00:00Z",
        "punos": ["IOM", "ILO"]})


async def replicas(n: int, **kw: object) -> tuple[ServiceSettings, list[Store]]:
    settings = isolated(ServiceSettings, service_name="monitoring", **kw)
    stores = [Store(settings) for _ in range(n)]
    for s in stores:
        await s.ensure_indexes()
    for s in stores:  # each sees the others alive
        await s.members.beat()
    for s in stores:
        await s.members.beat()
    assert all(s.members.live == n for s in stores)
    return settings, stores


async def test_relay_shards_are_shared_and_each_key_keeps_commit_order_under_clock_skew(
) -> None:
    settings, (a, b) = await replicas(2)
    b.clock_ns = lambda: time.time_ns() - 3600 * 10**9  # an hour behind
    keys = [f"jp-skew-{k}" for k in range(6)]
    committed: dict[str, list[str]] = {k: [] for k in keys}
    by_b: set[str] = set()
    for i in range(60):  # each key's facts committed by a, then b, then a... in turn
        store, key = (a, b)[i // len(keys) % 2], keys[i % len(keys)]

        async def emit(uow, key=key, i=i):  # type: ignore[no-untyped-def]
            return uow.emit(overdue(key, i)).id

        event_id, _ = await store.transaction(emit)
        committed[key].append(event_id)
        if store is b:
            by_b.add(event_id)
    pending = await a.db.outbox.find({"sent_at": None}).to_list(None)
    # by its clock, each of b's commits would come an hour before a's earlier ones: the
    # key's sequence lifted every one of them above
    of_b = [d for d in pending if d["events"][0]["id"] in by_b]
    assert len(of_b) == 30 and all(d["seq"] > b.clock_ns() + 10**9 for d in of_b)
    by_key: dict[str, list[int]] = {}
    for d in sorted(pending, key=lambda d: d["seq"]):
        for e in d["events"]:
            by_key.setdefault(e["key"], []).append(committed[e["key"]].index(e["id"]))
    assert all(v == sorted(v) for v in by_key.values())

    producer = make_producer(settings)
    await producer.start()
    try:
        relays = [OutboxRelay(s, producer) for s in (a, b)]
        held = [await r.leases.refresh() for r in relays]
        held = [await r.leases.refresh() for r in relays]  # after both had their turn
        assert set(held[0]).isdisjoint(held[1])
        assert sorted(held[0] + held[1]) == list(range(settings.outbox_shards))
        assert len(held[0]) == len(held[1]) == settings.outbox_shards // 2
        published = 0
        for r, mine in zip(relays, held, strict=True):
            for shard in mine:
                while n := await r.publish_pending(shard):
                    published += n
        assert published == 60
        assert await a.db.outbox.count_documents({"sent_at": None}) == 0
    finally:
        await producer.stop()
    records = await read_to_end(settings.topic(topics.MONITORING))
    seen: dict[str, list[str]] = {}
    for r in records:
        seen.setdefault(r.key.decode(), []).append(headers_of(r)["ce_id"])
    assert seen == committed  # every event once, each key's in commit order
    for s in (a, b):
        await s.close()


async def test_a_relay_reads_the_shards_its_own_commits_wrote_and_finds_others_each_poll(
) -> None:
    """Woken by a commit of its own process, the relay reads the shards that commit wrote,
    without asking which shards have anything pending; another replica's commit, which does
    not wake it, is found by that question, which it asks once a poll interval."""
    from prometheus_client import REGISTRY

    def questions() -> float:  # the relay's query for shards with anything pending
        return REGISTRY.get_sample_value("mptf_store_commands_total", {
            "command": "distinct", "collection": "outbox"}) or 0.0

    settings, (a, b) = await replicas(2, outbox_poll_seconds=6.0)
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(a, producer)  # b relays nothing: a holds every shard
    a.members.live = 1  # (as if b had not been seen)
    try:
        relay.start()
        await eventually(lambda: _is(len(relay.leases.held), settings.outbox_shards))
        await asyncio.sleep(0.5)  # past the relay's first look at every shard
        asked = questions()

        async def emit(uow, pid: str):  # type: ignore[no-untyped-def]
            return uow.emit(overdue(pid, 1)).id

        own, _ = await a.transaction(lambda uow: emit(uow, "jp-own-commit"))
        await eventually(lambda: _is(pending(a), 0))
        # published without the question (its next one is due 6 s after the first)
        assert questions() == asked
        other, _ = await b.transaction(lambda uow: emit(uow, "jp-other-commit"))
        await eventually(lambda: _is(pending(a), 0))
        assert questions() > asked
    finally:
        await relay.stop()
        await producer.stop()
    records = await read_to_end(settings.topic(topics.MONITORING))
    assert sorted(headers_of(r)["ce_id"] for r in records) == sorted([own, other])
    for s in (a, b):
        await s.close()


async def test_a_relay_round_reads_and_deletes_every_busy_shard_at_once() -> None:
    """Woken by a commit whose events went to several shards, the relay publishes them all
    in one round: one read of the outbox and one write of it, not one of each per shard
    (under load a transaction's events span most shards, and each shard's round made the
    next one's events wait); every key's events still reach Kafka in commit order."""
    from prometheus_client import REGISTRY

    from shared.lease import unit_of

    def store_commands(collection: str) -> dict[str, float]:
        return {c: REGISTRY.get_sample_value("mptf_store_commands_total", {
            "command": c, "collection": collection}) or 0.0 for c in ("find", "delete",
                                                                        "update")}

    settings, (a,) = await replicas(1, outbox_poll_seconds=6.0)
    shards: dict[int, str] = {}
    for n in range(200):  # keys in four different shards
        shards.setdefault(unit_of(f"jp-round-{n}", settings.outbox_shards), f"jp-round-{n}")
        if len(shards) == 4:
            break
    keys = list(shards.values())
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(a, producer)
    try:
        relay.start()
        await eventually(lambda: _is(len(relay.leases.held), settings.outbox_shards))
        await asyncio.sleep(0.5)  # past the relay's first look at every shard
        before = store_commands("outbox")

        async def emit(uow):  # type: ignore[no-untyped-def]
            return {k: [uow.emit(overdue(k, i)).id for i in range(3)] for k in keys}

        committed, _ = await a.transaction(emit)
        await eventually(lambda: _is(pending(a), 0))
        await asyncio.sleep(0.3)  # (a second round, if there were one, would come now)
        after = store_commands("outbox")
    finally:
        await relay.stop()
        await producer.stop()
    # (deleted, or marked sent where published documents are kept: a setting)
    done = {c: after[c] - before[c] for c in after}
    assert done["find"] == 1 and done["delete"] + done["update"] == 1, done
    records = await read_to_end(settings.topic(topics.MONITORING))
    seen: dict[str, list[str]] = {}
    for r in records:
        seen.setdefault(r.key.decode(), []).append(headers_of(r)["ce_id"])
    assert seen == committed
    await a.close()


async def test_pending_of_several_shards_is_each_shards_in_order_by_the_index() -> None:
    """The relay's read of several shards at once returns each shard's pending documents in
    `seq` order (a key's events all go to its one shard), shard after shard, found by the
    outbox's index: the local Mongo server would scan the whole outbox for an `$in`."""
    from typing import Any

    from tests.support import assert_index_scans, record_queries

    _, (a,) = await replicas(1)
    try:
        await a.db.outbox.insert_many([
            {"_id": "5a", "shard": 5, "seq": 1, "sent_at": None, "count": 1, "events": []},
            {"_id": "1b", "shard": 1, "seq": 4, "sent_at": None, "count": 1, "events": []},
            {"_id": "1a", "shard": 1, "seq": 2, "sent_at": None, "count": 1, "events": []},
            {"_id": "5b", "shard": 5, "seq": 3, "sent_at": None, "count": 1, "events": []},
            {"_id": "2a", "shard": 2, "seq": 0, "sent_at": None, "count": 1, "events": []},
            {"_id": "1x", "shard": 1, "seq": 1, "sent_at": utcnow(), "count": 1,
             "events": []}])
        relay = OutboxRelay(a, None)  # type: ignore[arg-type]
        looks: list[tuple[dict[str, Any], Any]] = []
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, a.db.outbox, ("find",), looks)
            assert [d["_id"] for d in await relay.pending([5, 1])] == ["1a", "1b", "5a", "5b"]
            assert [d["_id"] for d in await relay.pending({5})] == ["5a", "5b"]
        assert len(looks) == 2 and looks[0][0]["shard"] == {"$in": [1, 5]}
        await assert_index_scans(a.db.outbox, looks)
    finally:
        await a.client.drop_database(a.db.name)
        await a.close()


async def pending(store: Store) -> int:
    return await store.db.outbox.count_documents({"sent_at": None})


async def _is(value: object, expected: object) -> bool:
    if asyncio.iscoroutine(value):
        value = await value
    return value == expected


async def test_a_replica_that_lost_its_lease_cannot_write_under_it() -> None:
    settings, (a, b) = await replicas(2)
    a.members.live = b.members.live = 1  # as if each thought itself alone
    la = Leases(a.members, "work", 4, 30)
    lb = Leases(b.members, "work", 4, 30)
    assert await la.refresh() == [0, 1, 2, 3]
    assert await lb.refresh() == []  # all held, none expired
    # a stalls past its leases; b takes the work over
    # (a second ago: a lease that ran out in the very millisecond b looks is still held, as
    # dates are stored in milliseconds)
    await a.db.leases.update_many({"owner": a.members.owner},
                                  {"$set": {"until": utcnow() - timedelta(seconds=1)}})
    assert await lb.refresh() == [0, 1, 2, 3]

    async def write_under(leases: Leases, value: str):  # type: ignore[no-untyped-def]
        async def work(uow):  # type: ignore[no-untyped-def]
            await uow.db.work.update_one({"_id": "shared"}, {"$set": {"by": value}},
                                         upsert=True, session=uow.session)
            await leases.fence(uow, 2)
        await a.transaction(work) if leases is la else await b.transaction(work)

    with pytest.raises(Fenced):
        await write_under(la, "a")
    assert await a.db.work.find_one({"_id": "shared"}) is None  # nothing of a's committed
    await write_under(lb, "b")
    assert (await a.db.work.find_one({"_id": "shared"}))["by"] == "b"
    tokens = {d["_id"]: d["token"] async for d in a.db.leases.find({"kind": "work"})}
    assert all(t == 2 for t in tokens.values())  # each changed hands once

    # the relay's marking is not fenced: a relay that stalled after reading a round, and
    # lost its shard meanwhile, publishes the round again (the same event ids, which
    # consumers dedupe) and marks it sent (true whoever marks it); it lets the shard go at
    # its next lease refresh
    eid, _ = await a.transaction(lambda uow: asyncio.sleep(0, uow.emit(
        overdue("jp-stalled", 1)).id))
    shard = (await a.db.outbox.find_one({"sent_at": None}))["shard"]
    producer = make_producer(settings)
    await producer.start()
    rb = OutboxRelay(b, producer)

    class Stalled(OutboxRelay):
        async def pending(self, shard: int | None) -> list[dict]:
            docs = await super().pending(shard)
            # the stall: a's leases run out; b takes the shard over and publishes the round
            await a.db.leases.update_many({"owner": a.members.owner}, {"$set": {
                "until": utcnow() - timedelta(seconds=1)}})
            assert shard in await rb.leases.refresh()
            assert await rb.publish_pending(shard) == 1
            return docs

    try:
        ra = Stalled(a, producer)
        await ra.leases.refresh()
        await rb.leases.refresh()
        assert shard in ra.leases.held and shard not in rb.leases.held
        assert await ra.publish_pending(shard) == 1  # again
        assert await a.db.outbox.count_documents({"sent_at": None}) == 0
        assert shard not in await ra.leases.refresh()
        records = await read_to_end(settings.topic(topics.MONITORING))
        assert [headers_of(r)["ce_id"] for r in records
                if r.key == b"jp-stalled"] == [eid, eid]
    finally:
        await producer.stop()
    for s in (a, b):
        await s.close()


DIES_IN_A_TRANSACTION = """
import asyncio, sys
from shared.settings import ServiceSettings
from shared.store import Store

async def main():
    store = Store(ServiceSettings(service_name="monitoring", mongodb_database=sys.argv[1]))
    s = await store.session()
    await store.members.track(s)
    began = s.start_transaction()  # (a coroutine with PyMongo's async driver, not motor's)
    if asyncio.iscoroutine(began):
        await began
    await store.db.work.update_one({"_id": "held"}, {"$set": {"by": "the dead"}},
                                   upsert=True, session=s)
    print("IN-TRANSACTION", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_replica_killed_inside_a_transaction_is_ended_by_another() -> None:
    settings, (b,) = await replicas(1, member_ttl_seconds=2.0, member_beat_seconds=0.5)
    await b.db.work.insert_one({"_id": "held", "by": "nobody"})
    dead = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DIES_IN_A_TRANSACTION, settings.database, cwd=ROOT,
        env=os.environ.copy(), stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(dead.stdout.readline(), 60)  # type: ignore[union-attr]
        assert line.decode().strip() == "IN-TRANSACTION"
        dead.send_signal(signal.SIGKILL)
        await dead.wait()
        killed = time.monotonic()
        member = await b.db.members.find_one({"_id": {"$ne": b.members.owner}})
        assert member and member["sessions"]  # the dead one had recorded its session
        b.members.start()

        async def take(uow):  # type: ignore[no-untyped-def]
            await uow.db.work.update_one({"_id": "held"}, {"$set": {"by": "the living"}},
                                         session=uow.session)

        await b.transaction(take)  # waits on the dead one's write until it is reaped
        took = time.monotonic() - killed
        print(f"\ntakeover after SIGKILL inside a transaction: {took:.1f} s")
        assert (await b.db.work.find_one({"_id": "held"}))["by"] == "the living"

        async def reaped() -> bool:
            # ending the dead one's sessions is the reaper's first step, and what let `take`
            # commit; releasing its work and forgetting it come after (a CI run asserted in
            # between)
            return b.members.reaped == 1

        await eventually(reaped, timeout=10)
        assert await b.db.members.count_documents({}) == 1  # only the living one
        assert await b.db.members.count_documents({"_id": member["_id"]}) == 0
    finally:
        if dead.returncode is None:
            dead.kill()
        await b.members.leave()
        await b.close()


BUSY_IN_A_TRANSACTION = """
import asyncio, sys, time
from shared.settings import ServiceSettings
from shared.store import Store

async def main():
    store = Store(ServiceSettings(service_name="monitoring", mongodb_database=sys.argv[1],
                                  member_ttl_seconds=2.0, member_beat_seconds=0.5,
                                  member_stall_seconds=float(sys.argv[2])))
    store.members.start()
    await asyncio.sleep(1.5)  # its heartbeat document exists
    s = await store.session()
    await store.members.track(s)
    began = s.start_transaction()  # (a coroutine with PyMongo's async driver, not motor's)
    if asyncio.iscoroutine(began):
        await began
    await store.db.work.update_one({"_id": "busy"}, {"$inc": {"n": 1}}, upsert=True,
                                   session=s)
    print("BUSY", flush=True)
    time.sleep(float(sys.argv[3]))  # CPU work: the event loop does not run meanwhile
    try:
        await s.commit_transaction()
        print("COMMITTED", flush=True)
    except Exception as e:
        print("ABORTED", type(e).__name__, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize(("stall", "busy", "outcome", "reaped"), [
    (30.0, 8.0, "COMMITTED", 0),  # busy for 4 TTLs: alive, its transaction commits
    (1.0, 8.0, "ABORTED", 1),  # hung past member_stall_seconds: reaped, its session ended
])
async def test_a_busy_replica_is_not_reaped_but_a_hung_one_is(
        stall: float, busy: float, outcome: str, reaped: int) -> None:
    settings, (b,) = await replicas(1, member_ttl_seconds=2.0, member_beat_seconds=0.5)
    b.members.start()
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BUSY_IN_A_TRANSACTION, settings.database, str(stall), str(busy),
        cwd=ROOT, env=os.environ.copy(), stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(other.stdout.readline(), 60)  # type: ignore[union-attr]
        assert line.decode().strip() == "BUSY"
        line = await asyncio.wait_for(other.stdout.readline(), 60)  # type: ignore[union-attr]
        assert line.decode().split()[0] == outcome, line
        assert b.members.reaped == reaped
        held = await b.db.work.find_one({"_id": "busy"})
        assert (held or {}).get("n") == (1 if outcome == "COMMITTED" else None)
    finally:
        other.kill()
        await other.wait()
        await b.members.leave()
        await b.close()


async def test_a_heartbeat_write_that_lands_late_neither_revives_nor_shortens_a_member(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat reads the clock, then awaits its write: a loop that stalls in between
    (the hung replica above, waking up) sends an expiry already past. It must not bring
    back the document another member reaped meanwhile with that expiry (it would be reaped
    again, its sessions killed a second time), nor move a live document's expiry back."""
    from shared import lease as lease_module

    _, (a, b) = await replicas(2, member_ttl_seconds=2.0, member_beat_seconds=0.5)
    real = lease_module.utcnow
    late = {"reads": 0}

    def stale_once():  # type: ignore[no-untyped-def]
        late["reads"] += 1
        return real() - timedelta(seconds=10) if late["reads"] == 1 else real()

    try:
        mine = {"_id": a.members.owner}
        before = (await a.db.members.find_one(mine))["until"]
        monkeypatch.setattr(lease_module, "utcnow", stale_once)
        await a.members.beat()  # its expiry read 10 s late: the document keeps the later one
        monkeypatch.setattr(lease_module, "utcnow", real)
        assert (await a.db.members.find_one(mine))["until"] >= before

        # a is reaped by b (as if hung past its expiry), then a's late write lands
        await a.db.members.update_one(mine, {"$set": {"until": real() - timedelta(seconds=1)}})
        await b.members.beat()
        assert b.members.reaped == 1
        assert await a.db.members.find_one(mine) is None
        late["reads"] = 0
        monkeypatch.setattr(lease_module, "utcnow", stale_once)
        await a.members.beat()
        monkeypatch.setattr(lease_module, "utcnow", real)
        back = await a.db.members.find_one(mine)
        assert back is not None and back["until"] > real()  # made anew, not expired
        await b.members.beat()
        assert b.members.reaped == 1  # so not reaped a second time
        assert b.members.live == 2
    finally:
        for s in (a, b):
            await s.members.leave()
            await s.close()
