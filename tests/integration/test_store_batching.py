"""The write-batched document view (`UnitOfWork.docs`) against the real Mongo server: one
transaction's reads see its own pending writes; the writes land together at commit, or not
at all; a write that no longer hits its document fails the transaction."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from shared.envelope import utcnow
from shared.errors import Conflict
from shared.settings import ServiceSettings
from shared.store import Store, UnitOfWork
from tests.support import isolated


class Counter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.on: list[tuple[str, object]] = []  # (command, collection)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)
        self.on.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def counted(name: str) -> tuple[Store, Counter]:
    """A store whose client reports every command it sends to the counter."""
    store = Store(isolated(ServiceSettings, service_name=name))
    counter = Counter()
    await store.close()
    store.client = AsyncIOMotorClient(store.settings.mongodb_url, tz_aware=True,
                                      event_listeners=[counter])
    store.db = store.client[store.settings.database]
    return store, counter


async def test_a_batch_reads_its_own_writes_and_writes_once() -> None:
    store, counter = await counted("batching")
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
        assert await store.db.things.find_one({"_id": "t0"}, session=uow.session) == {
            "_id": "t0", "n": 0, "log": []}  # nothing written before the flush

    counter.on.clear()
    await store.transaction(work)
    # (the transaction's session is recorded once in `members`: shared.lease.Members.track)
    writes = [c for c, coll in counter.on if c in ("update", "insert", "delete")
              and coll == "things"]
    assert writes == ["update"]  # 151 updates of 51 documents: one round trip
    got = {d["_id"]: d async for d in store.db.things.find()}
    assert all(got[f"t{i}"]["n"] == 3 and got[f"t{i}"]["log"] == [0, 1, 2] for i in range(50))
    assert got["new"] == {"_id": "new", "n": 7} and "absent" not in got
    await store.client.drop_database(store.db.name)
    await store.close()


async def test_a_write_that_misses_its_document_fails_the_whole_transaction() -> None:
    store = Store(isolated(ServiceSettings, service_name="batching"))
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


async def test_an_event_of_one_key_raises_its_keys_seq_in_one_command_whatever_the_clock(
) -> None:
    """A transaction whose events have one key takes its outbox `seq` with one command on
    `outbox_keys` (not a read and a write), above the key's last even when this replica's
    clock is behind the one that wrote it; events of several keys still read and write the
    keys' documents in one round trip each."""
    from datetime import date

    from shared.contracts.monitoring import ReportOverdue

    def overdue(pid: str) -> ReportOverdue:
        return ReportOverdue(programme_id=pid, kind="annual-financial", year=2027,
                             due=date(2028, 4, 1), detected_at=utcnow(), punos=["IOM", "ILO"])

    store, counter = await counted("seq")

    async def emit(uow: UnitOfWork, *pids: str) -> None:
        for pid in pids:
            uow.emit(overdue(pid))

    seqs = []
    for clock in (time.time_ns, lambda: time.time_ns() - 3600 * 10**9, time.time_ns):
        store.clock_ns = clock  # the second transaction's clock is an hour behind
        counter.on.clear()
        await store.transaction(lambda uow: emit(uow, "jp-one"))
        on_keys = [c for c, coll in counter.on if coll == "outbox_keys"]
        assert on_keys[0] == "findAndModify" and len(on_keys) == (2 if len(seqs) == 1 else 1)
        seqs.append((await store.db.outbox.find_one(sort=[("seq", -1)]))["seq"])
    assert seqs[0] < seqs[1] < seqs[2]  # in commit order, clock or not
    counter.on.clear()
    await store.transaction(lambda uow: emit(uow, "jp-one", "jp-two"))
    assert [c for c, coll in counter.on if coll == "outbox_keys"] == ["find", "update"]
    assert (await store.db.outbox_keys.find_one({"_id": "jp-one"}))["seq"] > seqs[2]
    await store.close()


class Logged:
    """Stands in for a module's structlog logger: what it was asked to log."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append({"level": level, "event": event, **kw})


async def test_a_transaction_that_conflicts_is_retried_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two transactions write one document at once: the second meets a write conflict, waits
    and runs again, so both increments land; the retry is counted and logged
    (`transaction_retried`: attempts, the errors by name, the time waited), which is how an
    operator sees who conflicts with whom."""
    from prometheus_client import REGISTRY

    store = Store(isolated(ServiceSettings, service_name="batching"))
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
        await store.db.things.update_one({"_id": "x"}, {"$inc": {"n": 1}}, session=uow.session)

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
    await store.client.drop_database(store.db.name)
    await store.close()
