"""The write-batched document view (`UnitOfWork.docs`) against the real Mongo server: one
transaction's reads see its own pending writes; the writes land together at commit, or not
at all; a write that no longer hits its document fails the transaction."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from bson import Decimal128
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from shared.contracts.monitoring import ReportOverdue
from shared.dec128 import d128, dec
from shared.envelope import utcnow
from shared.errors import Conflict
from shared.settings import ServiceSettings
from shared.store import Store, UnitOfWork
from tests.support import commands_started, isolated


class Counter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.on: list[tuple[str, object]] = []  # (command, collection)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)
        if event.command_name == "bulkWrite":  # (client-level: one entry per collection)
            for ns in event.command["nsInfo"]:
                self.on.append(("bulkWrite", ns["ns"].split(".", 1)[1]))
            return
        self.on.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# a transaction's closing writes in one client-level bulk write where the server takes it
# (SecantusDB and MongoDB 8.0 do), or one write per collection
BULK = pytest.mark.parametrize("bulk", ["auto", "off"])


async def counted(name: str, bulk: str = "auto") -> tuple[Store, Counter]:
    """A store whose client reports every command it sends to the counter."""
    store = Store(isolated(ServiceSettings, service_name=name, mongo_client_bulk_write=bulk))
    counter = Counter()
    await store.close()
    store.client = AsyncIOMotorClient(store.settings.mongodb_url, tz_aware=True,
                                      event_listeners=[counter])
    store.db = store.client[store.settings.database]
    return store, counter


@BULK
async def test_a_batch_reads_its_own_writes_and_writes_once(bulk: str) -> None:
    store, counter = await counted("batching", bulk)
    await store.db.things.insert_many([{"_id": f"t{i}", "n": 0, "log": []} for i in range(50)])

    async def work(uow: UnitOfWork) -> None:
        docs = uow.docs("things")
        await docs.load([f"t{i}" for i in range(50)] + ["new"])
        for rnd in range(3):  # three events per document in one batch
            for i in range(50):
                doc = await docs.update(f"t{i}", {"$inc": {"n": 1}, "$push": {"log": rnd}})
                assert doc is not None and doc["n"] == rnd + 1
        assert await docs.update("absent", {"$set": {"x": 1}}) is None
        await docs.update("new", {"$setOnInsert": {"n": 7}}, upsert=True)
        assert (await docs.get("new"))["n"] == 7
        await uow.docs("others").add({"_id": "o1"})  # a few writes to another collection
        assert await store.db.things.find_one({"_id": "t0"}, session=uow.session) == {
            "_id": "t0", "n": 0, "log": []}  # nothing written before the flush

    counter.on.clear()
    await store.transaction(work)
    # (the transaction's session is recorded once in `members`: shared.lease.Members.track)
    def writes(of: str) -> list[str]:
        return [c for c, coll in counter.on
                if c in ("update", "insert", "delete", "bulkWrite") and coll == of]

    # 151 updates of 51 documents: one round trip, by the collection's own command (many);
    # another collection's few with the transaction's other few writes where the server
    # takes client-level bulk writes
    assert writes("things") == ["update"]
    assert writes("others") == (["bulkWrite"] if bulk == "auto" else ["insert"])
    got = {d["_id"]: d async for d in store.db.things.find()}
    assert all(got[f"t{i}"]["n"] == 3 and got[f"t{i}"]["log"] == [0, 1, 2] for i in range(50))
    assert got["new"] == {"_id": "new", "n": 7} and "absent" not in got
    assert await store.db.others.find_one() == {"_id": "o1"}
    await store.client.drop_database(store.db.name)
    await store.close()


@BULK
async def test_a_write_that_misses_its_document_fails_the_whole_transaction(bulk: str) -> None:
    store = Store(isolated(ServiceSettings, service_name="batching",
                           mongo_client_bulk_write=bulk))
    await store.db.things.insert_many([{"_id": "a", "n": 0}, {"_id": "b", "n": 0}])

    async def work(uow: UnitOfWork) -> None:
        docs = uow.docs("things")
        await docs.load(["a", "b"])
        await docs.update("a", {"$inc": {"n": 1}})
        await docs.update("b", {"$inc": {"n": 1}})
        # the cache believes b exists; another writer (here: this test) removed it
        await store.db.things.delete_one({"_id": "b"}, session=uow.session)

    with pytest.raises(Conflict, match="1 of 2 writes applied"):
        await store.transaction(work)
    assert await store.db.things.find_one({"_id": "a"}) == {"_id": "a", "n": 0}  # rolled back
    await store.client.drop_database(store.db.name)
    await store.close()


class Ledger(Store):
    guarded: ClassVar[dict[str, tuple[str, ...]]] = {"accounts": ("balance",)}


@BULK
async def test_a_guarded_balance_is_written_only_if_the_store_still_holds_what_was_read(
        bulk: str) -> None:
    store = Ledger(isolated(ServiceSettings, service_name="batching",
                            mongo_client_bulk_write=bulk))
    await store.db.accounts.insert_many([{"_id": "a", "balance": d128("10.00"), "n": 0},
                                         {"_id": "b", "balance": d128("5.00"), "n": 0}])

    async def spend(uow: UnitOfWork) -> None:
        docs = uow.docs("accounts")
        await docs.load(["a"])
        await docs.update("a", {"$inc": {"balance": d128("-3.00"), "n": 1}})
        assert [d["_id"] async for d in docs.iter_where({"balance": {"$gt": d128("6")}})
                ] == ["a"]  # a query sees it
        # written mid-transaction, then a second change: its guard is the balance this
        # transaction wrote, not the one it read first
        await docs.flush()
        await docs.update("a", {"$inc": {"balance": d128("-2.00")}})

    await store.transaction(spend)
    a = await store.db.accounts.find_one({"_id": "a"})
    assert (dec(a["balance"]), a["n"]) == (Decimal("5.00"), 1)

    async def raced(uow: UnitOfWork) -> None:
        docs = uow.docs("accounts")
        await docs.load(["b"])
        await docs.update("b", {"$inc": {"balance": d128("-5.00")}})
        # another writer spent from b after this transaction read it (here: this test, in
        # the transaction's session, which the server does not count as a conflict)
        await store.db.accounts.update_one({"_id": "b"}, {"$inc": {"balance": d128("-1")}},
                                           session=uow.session)

    with pytest.raises(Conflict, match="writes applied"):
        await store.transaction(raced)
    b = await store.db.accounts.find_one({"_id": "b"})
    assert dec(b["balance"]) == Decimal("5.00")  # neither write: the transaction rolled back
    await store.client.drop_database(store.db.name)
    await store.close()


async def test_each_store_command_is_counted_and_timed_by_command_and_collection() -> None:
    """mptf_store_commands_total and mptf_store_command_seconds_total, as the service's own
    client records them: a cursor's later batches (getMore) are its collection's too."""
    from prometheus_client import REGISTRY

    def value(name: str, command: str, collection: str) -> float:
        return REGISTRY.get_sample_value(name, {"command": command,
                                                "collection": collection}) or 0.0

    store = Store(isolated(ServiceSettings, service_name="metered"))
    await store.db.gauged.insert_many([{"_id": i} for i in range(250)])
    before = {(c, n): value(f"mptf_store_{n}_total", c, "gauged")
              for c in ("find", "getMore") for n in ("commands", "command_seconds")}
    got = [d async for d in store.db.gauged.find({}, batch_size=100)]
    assert len(got) == 250
    assert value("mptf_store_commands_total", "find", "gauged") - before[
        "find", "commands"] == 1
    assert value("mptf_store_commands_total", "getMore", "gauged") - before[
        "getMore", "commands"] == 2
    for c in ("find", "getMore"):  # each round trip took some time, and it was added
        assert value("mptf_store_command_seconds_total", c, "gauged") > before[
            c, "command_seconds"]
    await store.client.drop_database(store.db.name)
    await store.close()


@BULK
async def test_an_event_of_one_key_raises_its_keys_seq_in_one_command_whatever_the_clock(
        bulk: str) -> None:
    """A transaction's outbox `seq` is above its keys' last, even when this replica's clock
    is behind the one that wrote it. With client-level bulk writes, the keys' documents are
    written with the transaction's other writes in one command, without a read (each raised
    to the clock only if below it), and a transaction whose clock is behind runs again
    reading them first. Else, a transaction whose events have one key takes its `seq` with
    one command (not a read and a write), and events of several keys read and write the
    keys' documents in one round trip each."""
    def overdue(pid: str) -> ReportOverdue:
        return ReportOverdue(programme_id=pid, kind="annual-financial", year=2027,
                             due=date(2028, 4, 1), detected_at=utcnow(), punos=["IOM", "ILO"])

    store, counter = await counted("seq", bulk)

    async def emit(uow: UnitOfWork, *pids: str) -> None:
        for pid in pids:
            uow.emit(overdue(pid))

    seqs = []
    for clock in (time.time_ns, lambda: time.time_ns() - 3600 * 10**9, time.time_ns):
        store.clock_ns = clock  # the second transaction's clock is an hour behind
        counter.on.clear()
        counter.commands.clear()
        await store.transaction(lambda uow: emit(uow, "jp-one"))
        on_keys = [c for c, coll in counter.on if coll == "outbox_keys"]
        if bulk == "off":
            assert on_keys == (["findAndModify", "update"] if len(seqs) == 1
                               else ["findAndModify"])
        elif len(seqs) == 1:  # behind: the bulk write fails on the key, and a rerun reads
            assert on_keys == ["bulkWrite", "findAndModify", "update"]
        else:
            assert on_keys == ["bulkWrite"]
            assert counter.commands.count("bulkWrite") == 1  # the outbox in it too
            assert [c for c, coll in counter.on if coll == "outbox"] == ["bulkWrite"]
        seqs.append((await store.db.outbox.find_one(sort=[("seq", -1)]))["seq"])
    assert seqs[0] < seqs[1] < seqs[2]  # in commit order, clock or not
    assert await store.db.outbox.count_documents({}) == 3  # (the aborted attempt left none)
    counter.on.clear()
    await store.transaction(lambda uow: emit(uow, "jp-one", "jp-two"))
    assert [c for c, coll in counter.on if coll == "outbox_keys"] == (
        ["find", "update"] if bulk == "off" else ["bulkWrite"])
    assert (await store.db.outbox_keys.find_one({"_id": "jp-one"}))["seq"] > seqs[2]
    # many keys (their counters by their own command), one of them ahead of the clock
    ahead = time.time_ns() + 3600 * 10**9
    await store.db.outbox_keys.update_one({"_id": "jp-k7"}, {"$set": {"seq": ahead}},
                                          upsert=True)
    await store.transaction(lambda uow: emit(uow, *(f"jp-k{i}" for i in range(12))))
    last = await store.db.outbox.find_one(sort=[("seq", -1)])
    assert last["seq"] > ahead and {e["key"] for e in last["events"]} >= {"jp-k7"}
    assert (await store.db.outbox_keys.find_one({"_id": "jp-k7"}))["seq"] == last["seq"]
    assert await store.db.outbox.count_documents({"seq": {"$gt": ahead}}) >= 1
    await store.close()


class Logged:
    """Stands in for a module's structlog logger: what it was asked to log."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append({"level": level, "event": event, **kw})


@pytest.mark.parametrize("closing", [False, True])
async def test_a_transaction_that_conflicts_is_retried_and_says_so(
        monkeypatch: pytest.MonkeyPatch, closing: bool) -> None:
    """Two transactions write one document at once: the second meets a write conflict, waits
    and runs again, so both increments land; the retry is counted and logged
    (`transaction_retried`: attempts, the errors by name, the time waited), which is how an
    operator sees who conflicts with whom. `closing`: the second writes in its closing
    client-level bulk write, whose conflict keeps its TransientTransactionError label (the
    bulk write's own exception does not carry it)."""
    from prometheus_client import REGISTRY

    store, counter = await counted("batching")
    await store.db.things.insert_one({"_id": "x", "n": 0})
    first_wrote, second_failed = asyncio.Event(), asyncio.Event()
    second_attempts = 0

    async def first(uow: UnitOfWork) -> None:
        await store.db.things.update_one({"_id": "x"}, {"$inc": {"n": 1}}, session=uow.session)
        first_wrote.set()
        await second_failed.wait()  # holds its write until the other has run into it

    async def second(uow: UnitOfWork) -> None:
        nonlocal second_attempts
        second_attempts += 1
        if second_attempts > 1:
            second_failed.set()
        if closing:
            await uow.docs("things").update("x", {"$inc": {"n": 1}})  # written at the end
        else:
            await store.db.things.update_one({"_id": "x"}, {"$inc": {"n": 1}},
                                             session=uow.session)

    def retries() -> float:
        return REGISTRY.get_sample_value("mptf_transaction_retries_total") or 0.0

    logs = Logged()
    monkeypatch.setattr("shared.store.log", logs)
    before = retries()
    one = asyncio.create_task(store.transaction(first))
    await first_wrote.wait()
    await store.transaction(second)
    await one
    assert (await store.db.things.find_one({"_id": "x"}))["n"] == 2
    assert second_attempts >= 2 and retries() - before == second_attempts - 1
    lines = [e for e in logs.lines if e["event"] == "transaction_retried"]
    assert len(lines) == 1, lines
    assert lines[0]["attempts"] == second_attempts
    assert lines[0]["errors"][0] == "WriteConflict"
    assert "second" in lines[0]["work"] and lines[0]["waited_ms"] > 0
    assert lines[0]["level"] == "warning"
    assert ("bulkWrite" in counter.commands) == closing
    await store.client.drop_database(store.db.name)
    await store.close()


async def test_an_attempt_that_writes_before_any_read_in_a_used_session_still_commits() -> None:
    """A transaction retried in its session whose next attempt only writes: its first
    statement carries the session's read concern, which SecantusDB refuses on a client-level
    bulk write; that attempt writes per collection instead, and commits."""
    from pymongo.errors import OperationFailure

    store, counter = await counted("batching")
    await store.db.things.insert_one({"_id": "x", "n": 0})
    attempts = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:  # a read, then a transient failure: the session has run
            await store.db.things.find_one({"_id": "x"}, session=uow.session)
            raise OperationFailure("injected", 112, {
                "errorLabels": ["TransientTransactionError"], "codeName": "WriteConflict"})
        await uow.docs("things").add({"_id": "y", "n": 1})
        await uow.mark_seen("c", ["e-1"])
        uow.emit(ReportOverdue(programme_id="jp-w", kind="annual-financial", year=2027,
                               due=date(2028, 4, 1), detected_at=utcnow(), punos=["IOM"]))

    await store.ensure_indexes()
    store.inbox_batched = True
    counter.on.clear()
    await store.transaction(work)
    assert attempts == 2
    assert await store.db.things.find_one({"_id": "y"}) == {"_id": "y", "n": 1}
    assert await store.db.inbox.count_documents({"ids": "c:e-1"}) == 1
    assert len(await store.outbox_events()) == 1
    assert "bulkWrite" not in counter.commands  # (per collection: insert, update, insert)
    assert ("insert", "things") in counter.on and ("insert", "outbox") in counter.on
    await store.client.drop_database(store.db.name)
    await store.close()


@pytest.mark.parametrize("asked", [None, "true", "false"])
async def test_writes_outside_a_transaction_are_not_retryable_writes_unless_the_url_asks(
        asked: str | None) -> None:
    """The service's own client sends a write outside a transaction without a transaction
    number (no retryable-write record for the server to keep and search at every later one:
    see shared.store.retry_writes), unless MONGODB_URL says retryWrites=true."""
    base = isolated(ServiceSettings, service_name="retries")
    url = base.mongodb_url
    if asked is not None:
        url += ("&" if "?" in url else "/?") + f"retryWrites={asked}"
    settings = base.model_copy(update={"mongodb_url": url})
    sent = commands_started(settings.database, ("update", "delete"))
    store = Store(settings)
    try:
        assert store.client.options.retry_writes is (asked == "true")
        await store.db.things.update_one({"_id": 1}, {"$set": {"n": 1}}, upsert=True)
        await store.db.things.delete_one({"_id": 1})
        assert len(sent) == 2
        assert all(("txnNumber" in c) is (asked == "true") for c in sent), sent
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


QUERIES: list[tuple[dict[str, Any], list[tuple[str, int]] | None]] = [
    ({"pipeline": "waiting"}, [("priority", 1), ("approved_at", 1), ("_id", 1)]),
    ({"topup_waiting": True, "pipeline": {"$ne": "waiting"}}, None),
    ({"amount": {"$gt": Decimal128("0")}}, [("at", 1), ("_id", 1)]),
    ({"priority": {"$in": [1, 3]}, "amount": {"$lte": 50}}, [("amount", 1), ("_id", 1)]),
    ({"pipeline": None}, [("approved_at", 1), ("_id", 1)]),
    ({"pipeline": {"$nin": ["allocated"]}, "priority": {"$gte": 2}}, [("_id", 1)]),
]


def _thing(rnd: random.Random, i: int) -> dict[str, Any]:
    base = datetime(2026, 12, 1, tzinfo=UTC)
    doc: dict[str, Any] = {
        "_id": f"t{i:03}", "priority": rnd.choice([1, 2, 3]),
        # a few in one millisecond: the store keeps milliseconds, the cache microseconds
        "approved_at": base + timedelta(milliseconds=rnd.randrange(5),
                                        microseconds=rnd.randrange(1000)),
        "at": base + timedelta(seconds=rnd.randrange(20)),
        "amount": Decimal128(str(rnd.choice([0, 10, 50, "50.00", 75.5, 200]))),
        "pipeline": rnd.choice(["waiting", "allocated", None])}
    if doc["pipeline"] is None and rnd.random() < 0.5:
        del doc["pipeline"]  # missing, not null: the same to a query
    if rnd.random() < 0.5:
        doc["topup_waiting"] = rnd.random() < 0.5
    return doc


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_query_sees_the_transactions_pending_writes_without_writing_them_first(
        seed: int) -> None:
    """Queries over documents this transaction changed, added and deleted answer as the
    server answers them once the changes are written, in the same order, and no write
    reaches the server before the transaction's closing one."""
    rnd = random.Random(seed)
    store, counter = await counted("pending")
    await store.db.things.insert_many([_thing(rnd, i) for i in range(40)])
    answers: dict[int, list[str]] = {}

    async def work(uow: UnitOfWork) -> None:
        docs = uow.docs("things")
        await docs.load(f"t{i:03}" for i in range(40))
        for i in rnd.sample(range(40), 15):
            fresh = _thing(rnd, i)
            await docs.update(f"t{i:03}", {"$set": {k: v for k, v in fresh.items()
                                                    if k != "_id"}})
        for i in rnd.sample(range(40), 5):
            await docs.delete(f"t{i:03}")
        for i in range(40, 50):
            await docs.add(_thing(rnd, i))
        counter.on.clear()
        for n, (query, sort) in enumerate(QUERIES):
            answers[n] = [d["_id"] async for d in docs.iter_where(query, sort)]
        assert [c for c, _ in counter.on] == ["find"] * len(QUERIES)  # nothing written
        # the truth: the changes written, the same queries asked of the server
        await docs.flush()
        for n, (query, sort) in enumerate(QUERIES):
            cursor = store.db.things.find(query, session=uow.session)
            truth = [d["_id"] async for d in (cursor.sort(sort) if sort else cursor)]
            assert (answers[n] if sort else sorted(answers[n])) == (
                truth if sort else sorted(truth)), (query, sort)

    await store.transaction(work)
    assert all(answers.values())  # every query found something
    await store.client.drop_database(store.db.name)
    await store.close()


async def test_a_query_the_cache_cannot_decide_writes_the_pending_documents_first() -> None:
    store, counter = await counted("pending")
    await store.db.things.insert_many([{"_id": "a", "tags": ["x"]}, {"_id": "b", "tags": []}])

    async def work(uow: UnitOfWork) -> None:
        docs = uow.docs("things")
        await docs.load(["a", "b"])
        await docs.update("b", {"$push": {"tags": "x"}})
        counter.on.clear()
        assert [d["_id"] async for d in docs.iter_where({"tags": "x"}, [("_id", 1)])] == [
            "a", "b"]  # an array's elements: the server's rule
        assert [c for c, _ in counter.on] == ["update", "find"]

    await store.transaction(work)
    await store.client.drop_database(store.db.name)
    await store.close()


async def test_a_document_upserted_and_deleted_in_one_transaction_is_never_written() -> None:
    """(What a notification parked and unparked in one batch does, the query between them
    answered from the cache.)"""
    store, counter = await counted("pending")

    async def work(uow: UnitOfWork) -> None:
        docs = uow.docs("parked")
        await docs.update("f1", {"$setOnInsert": {"programme_id": "p1"}}, upsert=True)
        found = await docs.load_where({"programme_id": "p1"})
        assert [d["_id"] for d in found] == ["f1"]
        await docs.delete("f1")
        assert await docs.get("f1") is None

    counter.on.clear()
    await store.transaction(work)
    assert not [c for c, coll in counter.on if coll == "parked" and c != "find"]
    assert await store.db.parked.count_documents({}) == 0
    await store.client.drop_database(store.db.name)
    await store.close()
