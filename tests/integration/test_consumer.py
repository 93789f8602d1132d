"""The idempotent consumer and dead-letter routing, against the real broker and store."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from typing import Any

import pytest

from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from services.notifications.store import NotificationsStore
from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted, SubmitConceptNote
from shared.envelope import Envelope
from tests.integration.conftest import running
from tests.support import (
    ILO,
    assert_index_scans,
    consumed,
    event_record,
    eventually,
    headers_of,
    isolated,
    kafka_auth,
    notices,
    produce,
    read_all,
    record_queries,
    writer_of,
)
from tests.support import inbound as inbound_topic
from tests.wire import NOT_UTF8_ESCAPED, NotUtf8Name

NOTE = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)


def submitted(pid: str) -> ProgrammeSubmitted:
    return ProgrammeSubmitted(programme_id=pid, submitted_by="IOM",
                              entity_reference=f"ref-{pid}", channel="kafka",
                              submitted_at="2026-11-23T10:00:00Z", note=NOTE)


async def test_redelivered_event_causes_no_second_effect() -> None:
    settings = isolated(NotificationsSettings)
    topic = settings.topic(topics.PROGRAMMES)
    fact = submitted("jp-redelivered")
    record = event_record(fact, source="/mptf/intake", event_id="evt-1", key="jp-redelivered")
    async with running(build_notifications, settings) as (_, runtime, http):
        await produce(topic, [record, record])  # a duplicate in the same batch
        await eventually(lambda: _n(runtime, "jp-redelivered", 3))
        await produce(topic, [record])  # and a redelivery after the effect committed
        await eventually(lambda: _at_least(consumed(topic, ProgrammeSubmitted.TYPE), 3))
        assert len(await notices(runtime.store, {"programme_id": "jp-redelivered"})) == 3
        # (one per PUNO, not per delivery)
        r = await http.get("/v1/inbox", headers=ILO)
        assert r.status_code == 200
        assert [m["programme_id"] for m in r.json()] == ["jp-redelivered"]


async def test_a_consumed_batch_is_handled_on_the_event_loop_without_a_worker_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """FastStream resolves a handler's context parameters through fast_depends, which runs a
    plain resolver in a worker thread: a thread's round trip for every batch. Our handler
    takes none, so a batch is handled without one (counted at fast_depends' one way into
    the thread pool)."""
    import fast_depends.utils

    threaded: list[str] = []
    original = fast_depends.utils.run_in_threadpool

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(getattr(func, "__qualname__", repr(func)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(fast_depends.utils, "run_in_threadpool", counted)
    settings = isolated(NotificationsSettings)
    topic = settings.topic(topics.PROGRAMMES)
    async with running(build_notifications, settings) as (_, runtime, _http):
        for n in range(3):  # three batches, one after another
            pid = f"jp-nothread-{n}"
            await produce(topic, [event_record(submitted(pid), source="/mptf/intake", key=pid)])
            await eventually(lambda pid=pid: _n(runtime, pid, 3))
    assert threaded == []


async def test_an_event_id_reused_for_other_content_is_dead_lettered_as_a_conflict() -> None:
    """A producer that sets one id for a whole run: the first record is applied, the others
    (other content, the same id) are dead-lettered as conflicts, not dropped as redeliveries;
    a true redelivery (the same content) is still skipped silently."""
    settings = isolated(IntakeSettings)
    topic = inbound_topic(settings, topics.INBOUND_CONCEPT_NOTES, "IOM")
    first = NOTE.model_copy(update={"entity_reference": "ONE-ID-1"})
    other = NOTE.model_copy(update={"entity_reference": "ONE-ID-2"})
    async with running(build_intake, settings) as (_, rt, _http):
        # one key: one partition, so the first record is consumed first (records with
        # different keys may be consumed in either order)
        await produce(topic, [event_record(first, event_id="run-1", key="ONE-ID"),
                              event_record(other, event_id="run-1", key="ONE-ID")])
        (dead,) = await read_all(settings.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq",
                                 min_count=1)
        assert headers_of(dead)["dlq_reason"] == "conflict"
        assert json.loads(dead.value)["entity_reference"] == "ONE-ID-2"
        # later, in another batch: the same id with other content again, and a redelivery
        third = NOTE.model_copy(update={"entity_reference": "ONE-ID-3"})
        await produce(topic, [event_record(third, event_id="run-1", key="ONE-ID"),
                              event_record(first, event_id="run-1", key="ONE-ID")])
        dead = await read_all(settings.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq",
                              min_count=2)
        assert sorted(json.loads(d.value)["entity_reference"] for d in dead) == [
            "ONE-ID-2", "ONE-ID-3"]
        refs = [d["entity_reference"] async for d in rt.store.db.programmes.find()]
        assert refs == ["ONE-ID-1"]


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_new_batch_is_applied_without_reading_the_inbox_and_a_redelivery_is_found() -> None:
    """The fast way: a batch of new events makes no inbox query (its ids are inserted, and
    a taken one fails the insert). A record consumed again is found that way: its batch
    runs again reading the inbox first, and the note is stored once."""
    settings = isolated(IntakeSettings)
    topic = inbound_topic(settings, topics.INBOUND_CONCEPT_NOTES, "IOM")
    record = event_record(NOTE.model_copy(update={"entity_reference": "FAST-1"}),
                          event_id="fast-1", key="FAST-1")

    def inbox_reads() -> float:
        return _sample("mptf_store_commands_total", command="find", collection="inbox")

    def runs_again() -> float:
        return _sample("mptf_batches_run_again_total", consumer="intake.concept-notes")

    async def stored() -> int:
        return await rt.store.db.programmes.count_documents({"entity_reference": "FAST-1"})

    async with running(build_intake, settings) as (_, rt, _http):
        reads, again = inbox_reads(), runs_again()
        await produce(topic, [record])
        await eventually(lambda: _at_least(stored(), 1))
        assert inbox_reads() == reads
        assert runs_again() == again
        await produce(topic, [record])  # the same record again: a redelivery
        await eventually(lambda: _at_least(runs_again(), again + 1))
        assert inbox_reads() > reads
        assert await stored() == 1
        assert await rt.store.db.inbox.count_documents(
            {"ids": "intake.concept-notes:fast-1"}) == 1


async def test_concurrent_claims_of_one_event_admit_exactly_one() -> None:
    settings = isolated(NotificationsSettings)
    store = NotificationsStore(settings)
    await store.ensure_indexes()

    async def claim() -> set[str]:
        try:
            got, _ = await store.transaction(lambda uow: uow.claim("c", ["evt-x"]))
            return got
        except Exception:  # a conflicting writer may abort outright: that is a refusal too
            return set()

    results = await asyncio.gather(*(claim() for _ in range(8)))
    assert sum(1 for r in results if r == {"evt-x"}) == 1
    assert await store.db.inbox.count_documents({}) == 1
    await store.close()


async def _n(runtime, pid: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await notices(runtime.store, {"programme_id": pid})) >= n


async def _at_least(v: Any, n: float) -> bool:
    return (await v if inspect.isawaitable(v) else v) >= n


async def test_bad_records_go_to_the_dead_letter_topic_and_the_consumer_keeps_going() -> None:
    settings = isolated(IntakeSettings)
    inbound = inbound_topic(settings, topics.INBOUND_CONCEPT_NOTES, "IOM")
    dlq = settings.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq"
    good = NOTE.model_copy(update={"entity_reference": "good-after-bad"})
    ok_env = Envelope(source="urn:mptf:entity:IOM", type=SubmitConceptNote.TYPE)
    bad = [
        (b"k1", b"{not json", ok_env.headers()),
        (b"k2", json.dumps({"title": 7}).encode(), ok_env.headers()),
        (b"k3", good.model_dump_json().encode(),
         Envelope(source="urn:mptf:entity:IOM", type="org.migrationmptf.concept-note.submit.v9")
         .headers()),
        (b"k4", good.model_dump_json().encode(), [("ce_id", b"\xff\xfe")]),
        (b"k5", good.model_dump_json().encode(),
         Envelope(source="urn:mptf:entity:WFP", type=SubmitConceptNote.TYPE).headers()),
        # invalid, and holding personal data: the dead letter keeps the rest, not the data
        (b"k6", json.dumps({"title": 7, "summary": "Call Rosa on +33 6 12 34 56 78"}).encode(),
         ok_env.headers()),
        # nested past what any message of ours needs (and past what json.loads can decode)
        (b"k7", good.model_dump_json().encode()[:-1] + b', "x": ' + b"[" * 50_000
         + b"]" * 50_000 + b"}", ok_env.headers()),
    ]
    async with running(build_intake, settings):
        await produce(inbound, [*bad, event_record(good, key="good-after-bad")])
        facts = await read_all(settings.topic(topics.PROGRAMMES), min_count=2)
        assert [json.loads(r.value).get("entity_reference") for r in facts] == [
            "good-after-bad", None]  # ProgrammeSubmitted, then ProgrammeScreened
        dead = await read_all(dlq, min_count=7)
    reasons = {r.key: headers_of(r)["dlq_reason"] for r in dead}
    assert reasons == {b"k1": "malformed-json", b"k2": "invalid", b"k3": "unknown-type",
                       b"k4": "bad-header", b"k5": "forbidden", b"k6": "invalid",
                       b"k7": "malformed-json"}
    by_key = {r.key: r for r in dead}
    # the original bytes and headers travel with the reason
    assert by_key[b"k1"].value == b"{not json"
    assert ("ce_id", b"\xff\xfe") in by_key[b"k4"].headers
    assert "title" in headers_of(by_key[b"k2"])["dlq_detail"]
    assert headers_of(by_key[b"k1"])["dlq_topic"] == inbound
    assert headers_of(by_key[b"k1"])["dlq_handler"] == "intake.concept-notes"
    assert b"34 56 78" not in by_key[b"k6"].value
    assert json.loads(by_key[b"k6"].value)["title"] == 7
    assert headers_of(by_key[b"k6"])["dlq_redacted"] == "personal-data"
    assert "nested deeper than" in headers_of(by_key[b"k7"])["dlq_detail"]
    assert by_key[b"k7"].value.endswith(b"]" * 50_000 + b"}")  # the original bytes


async def test_a_record_whose_decoding_fails_unexpectedly_is_dead_lettered_not_retried(
) -> None:
    """Decoding does no I/O, so an error in it (one no rule names: here a fault injected
    into the raw check for one record) would fail the record at every delivery: it is
    dead-lettered with the error, and the records after it are consumed."""
    import shared.consumer

    settings = isolated(IntakeSettings)
    inbound = inbound_topic(settings, topics.INBOUND_CONCEPT_NOTES, "IOM")
    dlq = settings.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq"
    checked = shared.consumer.raw_json_safe

    def faulty(value: bytes) -> bool:
        if b"fault-here" in value:
            raise ArithmeticError("injected")
        return checked(value)

    notes = [event_record(NOTE.model_copy(update={"entity_reference": ref}), key="same")
             for ref in ("fault-here", "after-fault")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shared.consumer, "raw_json_safe", faulty)
        async with running(build_intake, settings):
            await produce(inbound, notes)
            facts = await read_all(settings.topic(topics.PROGRAMMES), min_count=2)
            dead = await read_all(dlq, min_count=1)
    assert {json.loads(r.value).get("entity_reference") for r in facts} - {None} == {
        "after-fault"}
    [letter] = dead
    assert headers_of(letter)["dlq_reason"] == "invalid"
    assert "ArithmeticError('injected')" in headers_of(letter)["dlq_detail"]
    assert letter.value == notes[0][1]


async def test_batches_compressed_with_every_codec_kafka_defines_are_consumed() -> None:
    """Entity systems choose their producer's compression (librdkafka: compression.type);
    a batch the consumer cannot decompress would stop its partition (aiokafka reads lz4,
    snappy and zstd only with their codecs installed). One note per codec, each from a
    librdkafka producer of its own, as the entity's principal: all are consumed."""
    from confluent_kafka import Producer

    from tests.support import credentials

    settings = isolated(IntakeSettings)
    inbound = inbound_topic(settings, topics.INBOUND_CONCEPT_NOTES, "IOM")
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    for codec in codecs:
        producer = Producer({
            "bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "entity-IOM", "sasl.password": credentials()["entity-IOM"],
            "enable.idempotence": True, "compression.type": codec})
        key, value, headers = event_record(
            NOTE.model_copy(update={"entity_reference": f"codec-{codec}"}), key=codec)
        producer.produce(inbound, value=value, key=key, headers=headers)
        assert await asyncio.to_thread(producer.flush, 30) == 0
    async with running(build_intake, settings):
        facts = await read_all(settings.topic(topics.PROGRAMMES), min_count=2 * len(codecs))
    assert {json.loads(r.value).get("entity_reference") for r in facts} - {None} == {
        f"codec-{c}" for c in codecs}


async def test_a_header_name_that_is_not_utf8_is_dead_lettered_and_its_neighbours_consumed(
) -> None:
    """aiokafka decodes header names strictly while it unpacks a fetched batch: such a
    record stopped the poll at every try (the records before it in the batch not returned,
    FastStream's loop ended). Now it reaches the consumer, is dead-lettered as `bad-header`
    with its value and its name escaped, and the records before and after it in the same
    batch are consumed."""
    import aiokafka.producer.message_accumulator as accumulator
    import aiokafka.producer.producer as producer_module
    from aiokafka import AIOKafkaProducer
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    settings = isolated(IntakeSettings)
    inbound = inbound_topic(settings, topics.INBOUND_CONCEPT_NOTES, "IOM")
    dlq = settings.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq"
    records = [event_record(NOTE.model_copy(update={"entity_reference": f"hdr-{n}"}),
                            key="one-partition") for n in range(3)]
    key, value, headers = records[1]
    records[1] = (key, value, [*headers, (NotUtf8Name("x"), b"1")])
    with pytest.MonkeyPatch.context() as mp:
        for module in (accumulator, producer_module):
            mp.setattr(module, "DefaultRecordBatchBuilder", _DefaultRecordBatchBuilderPy)
        producer = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                                    enable_idempotence=True, linger_ms=100,
                                    **kafka_auth(writer_of(inbound)))
        await producer.start()
        try:  # sent together: one batch, the bad record in its middle
            sent = [await producer.send(inbound, value=v, key=k, headers=h)
                    for k, v, h in records]
            offsets = [(await f).offset for f in sent]
        finally:
            await producer.stop()
    assert offsets == [offsets[0] + n for n in range(3)]
    async with running(build_intake, settings):
        facts = await read_all(settings.topic(topics.PROGRAMMES), min_count=4)
        dead = await read_all(dlq, min_count=1)
    assert sorted({json.loads(r.value).get("entity_reference") for r in facts} - {None}) == [
        "hdr-0", "hdr-2"]
    [letter] = dead
    assert headers_of(letter)["dlq_reason"] == "bad-header"
    assert "not UTF-8" in headers_of(letter)["dlq_detail"]
    assert (NOT_UTF8_ESCAPED, b"1") in letter.headers  # the name's bytes, escaped
    assert letter.value == value


async def test_a_batchs_consumed_ids_are_one_document_and_an_earlier_releases_are_honoured(
) -> None:
    """This release records a batch's consumed ids in one document, each id unique across
    documents. An earlier release kept one document per id and looks only at `_id`: while
    a replica of it is a member (live, or dead and not yet reaped), ids are recorded one
    document per id, unique both ways; once none is left, its records are given `ids` and
    batches' documents are used again. No id is ever taken twice, whichever way."""
    from datetime import timedelta

    from pymongo.errors import DuplicateKeyError, PyMongoError

    from shared.envelope import utcnow
    from shared.store import Store, is_duplicate

    store = Store(isolated(IntakeSettings, service_name="inboxshape"))
    inbox, members = store.db.inbox, store.db.members

    async def mark(ids: list[str], digests: dict[str, str] | None = None) -> None:
        await store.transaction(lambda uow: uow.mark_seen("c", ids, digests))

    async def refused(ids: list[str]) -> bool:
        try:
            await mark(ids)
        except PyMongoError as e:
            return is_duplicate(e)
        return False

    # what the careful reads and the conversion asked the inbox (query, index hint)
    queries: list[tuple[dict[str, Any], Any]] = []

    async def state(ids: list[str]) -> dict[str, str | None]:
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, inbox, ("find",), queries)
            return (await store.transaction(lambda uow: uow.inbox_state("c", ids)))[0]

    try:
        await store.ensure_indexes()
        assert store.inbox_batched  # no replica of an earlier release
        await mark(["a", "b", "c"], {"a": "da", "c": "dc"})
        assert [(d["ids"], d["digests"]) async for d in inbox.find({}, {"_id": 0})] == [
            (["c:a", "c:b", "c:c"], ["da", None, "dc"])]
        assert await state(["a", "b", "x"]) == {"a": "da", "b": None}
        assert await refused(["b", "d"])  # one taken id refuses the whole batch's record
        assert await state(["d"]) == {}

        # a replica of an earlier release joins; it has recorded "old" its way
        now = utcnow()
        await members.insert_one({"_id": "earlier", "until": now + timedelta(minutes=1)})
        await inbox.insert_one({"_id": "c:old", "consumer": "c", "event_id": "old",
                                "at": now, "digest": "dold"})
        await store.members.beat()
        assert store.members.earlier_releases == 1 and not store.inbox_batched
        assert not await store.settle_inbox()  # as a replica starting now sees it
        assert await state(["old", "a"]) == {"old": "dold", "a": "da"}
        assert await refused(["old"])  # against its record's `_id`
        assert await refused(["new", "a"])  # against a batch's `ids`
        await mark(["e", "f"])
        assert [d["ids"] async for d in inbox.find({"_id": {"$in": ["c:e", "c:f"]}})] == [
            ["c:e"], ["c:f"]]
        with pytest.raises(DuplicateKeyError):  # the earlier release's own insert
            await inbox.insert_one({"_id": "c:e", "consumer": "c", "event_id": "e", "at": now})
        # an id it recorded while this release still wrote batches (the window of one
        # heartbeat before its membership is seen): recorded twice, once each way
        await inbox.insert_one({"_id": "c:a", "consumer": "c", "event_id": "a", "at": now})

        # it dies: until it is reaped (its sessions ended) it still counts
        await members.update_one({"_id": "earlier"}, {"$set": {"until": now}})
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, inbox, ("find", "update_many"), queries)
            await store.members.beat()  # reaps it, and its records are given ids
        assert store.members.earlier_releases == 0 and store.inbox_batched
        assert await inbox.count_documents({"event_id": {"$exists": True}}) == 0
        assert [d["ids"] async for d in inbox.find({"_id": "c:old"})] == [["c:old"]]
        for key in ("c:old", "c:a", "c:e"):
            assert await inbox.count_documents({"ids": key}) == 1, key
        assert await state(["old"]) == {"old": "dold"}
        assert await refused(["old", "g"]) and await refused(["f"])
        await mark(["g", "h"])
        assert await inbox.count_documents({"ids": {"$in": ["c:g", "c:h"]}}) == 1
        # every careful read and the conversion went by an index: a collection scan of a
        # large inbox would hold the local server's global lock (an `$or` of the two
        # shapes was one, and so was the earlier records' filter without its index named)
        assert any("event_id" in q for q, _ in queries) and any("ids" in q for q, _ in queries)
        await assert_index_scans(inbox, queries)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


class _Recorder:
    """A subscription's handler that records what it was given (partition, offset) and can
    be made to fail or to hold a batch, standing for a transaction waiting on the store."""

    def __init__(self, *, fail_call: int | None = None, hold_call: int | None = None) -> None:
        self.calls: list[list[tuple[int, int]]] = []
        self.done: list[tuple[int, int]] = []  # what calls that returned were given
        self.fail_call = fail_call  # this call raises a transient error
        self.hold_call = hold_call  # this call waits for `release`
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self.sub: Any = None
        self.read_ahead_during: set[int] = set()  # calls during which records were read ahead

    async def __call__(self, batch: list[Any]) -> None:
        from pymongo.errors import AutoReconnect

        got = [(i.record.partition, i.record.offset) for i in batch]
        self.calls.append(got)
        n = len(self.calls)
        # as a transaction does, wait on the store: records already fetched are read
        # meanwhile (none after the last batch)
        for _ in range(50):
            if self.sub.predecoded is not None or self.sub.ahead:
                self.read_ahead_during.add(n)
                break
            await asyncio.sleep(0.01)
        if n == self.fail_call:
            raise AutoReconnect("the store went away")  # transient: the batch comes again
        if n == self.hold_call:
            self.held.set()
            await self.release.wait()
        self.done += got


async def _ready(value: Any) -> Any:
    return value


async def _equal(value: Any, expected: Any) -> bool:
    return await value == expected


async def _committed(group: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         group_id=group, enable_auto_commit=False, **kafka_auth())
    await c.start()
    try:
        out = {}
        for p in c.partitions_for_topic(topic) or await c._client._wait_on_metadata(topic) or ():
            off = await c.committed(TopicPartition(topic, p))
            if off is not None:
                out[p] = off
        return out
    finally:
        await c.stop()


async def _reading_ahead(rec: _Recorder, n: int):  # type: ignore[no-untyped-def]
    """A runtime whose one subscription (batches of 10) finds `n` records waiting."""
    from shared.runtime import Runtime
    from shared.store import Store

    settings = isolated(NotificationsSettings, consumer_batch_max=10)
    topic = settings.topic(topics.PROGRAMMES)
    await produce(topic, [event_record(submitted(f"jp-ahead-{i}"), source="/mptf/intake",
                                       key=f"jp-ahead-{i % 5}") for i in range(n)])
    runtime = Runtime(settings, Store(settings))
    rec.sub = runtime.subscribe(topics.PROGRAMMES, "ahead", [ProgrammeSubmitted.TYPE], rec)
    return runtime, topic, f"{settings.group_id}.ahead"


def _per_partition(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p, o in pairs:
        out.setdefault(p, []).append(o)
    return out


async def test_records_read_ahead_are_handled_in_order_once_and_given_back_when_a_batch_fails(
) -> None:
    """While a batch's handler waits, the records already fetched are taken and decoded, and
    handed over as the next batch. A batch that fails gives them back with its own: every
    record is then handled by a call that succeeds exactly once, each partition's in offset
    order, and the group's committed offsets end at the end of every partition."""
    rec = _Recorder(fail_call=3)
    runtime, topic, group = await _reading_ahead(rec, 60)
    await runtime.start()
    try:
        await eventually(lambda: _ready(len(rec.done) >= 60), timeout=60)
        await asyncio.sleep(0.5)  # (anything more would come now)
    finally:
        await runtime.stop()
    done = _per_partition(rec.done)
    assert sum(len(v) for v in done.values()) == 60
    assert all(offs == list(range(len(offs))) for offs in done.values()), done
    # the failed call's records were handled again, by a later call, and so were the ones
    # read ahead while it ran (given back, not skipped)
    assert {1, 2, 3} <= rec.read_ahead_during
    assert set(rec.calls[2]) <= set(rec.done)
    assert await _committed(group, topic) == {p: len(offs) for p, offs in done.items()}


async def test_offsets_committed_are_the_batchs_own_not_the_records_read_ahead() -> None:
    """A batch's commit names the record after its own last of each partition: records read
    ahead while it ran are not committed with it, so a process that dies holding them gets
    them again (here: the committed offsets while the third batch is held are exactly the
    first two batches' ends)."""
    rec = _Recorder(hold_call=3)
    runtime, topic, group = await _reading_ahead(rec, 60)
    await runtime.start()
    try:
        await asyncio.wait_for(rec.held.wait(), 60)
        assert 3 in rec.read_ahead_during  # the fourth batch's records, read and decoded
        first_two = _per_partition(rec.calls[0] + rec.calls[1])
        ends = {p: max(o) + 1 for p, o in first_two.items()}
        # (the commits go out on a task of their own: the second batch's lands meanwhile)
        await eventually(lambda: _equal(_committed(group, topic), ends), timeout=10)
        await asyncio.sleep(0.5)
        assert await _committed(group, topic) == ends  # and nothing of the records ahead
        rec.release.set()
        await eventually(lambda: _ready(len(rec.done) >= 60), timeout=60)
    finally:
        rec.release.set()
        await runtime.stop()
    assert await _committed(group, topic) == {
        p: len(offs) for p, offs in _per_partition(rec.done).items()}


async def test_a_subscription_that_replaces_others_starts_where_they_stopped() -> None:
    """One consumer taking over two topics that two subscriptions read apart (its own new
    group) starts from the offsets their groups committed, not from the topics' beginning:
    what they handled is not handed to it again, what was published since is; once its
    group has offsets of its own, nothing is carried over again."""
    from shared.consumer import carry_offsets, group_of
    from shared.runtime import Runtime
    from shared.store import Store

    settings = isolated(NotificationsSettings)
    kinds = (topics.PROGRAMMES, topics.FUNDING)
    seen: dict[str, list[str]] = {"old-a": [], "old-b": [], "facts": []}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        async def handle(batch: list[Any]) -> None:
            seen[name] += [i.event.programme_id for i in batch]
        return handle

    async def publish(tag: str, n: int) -> list[str]:
        pids = []
        for kind in kinds:
            batch = [f"jp-{tag}-{kind.split('.')[-1]}-{i}" for i in range(n)]
            await produce(settings.topic(kind), [event_record(
                submitted(p), source="/mptf/intake", key=p) for p in batch])
            pids += batch
        return pids

    first = await publish("before", 6)
    old = Runtime(settings, Store(settings))
    for kind, name in zip(kinds, ("old-a", "old-b"), strict=True):
        old.subscribe(kind, name, [ProgrammeSubmitted.TYPE], recorder(name))
    await old.start()
    try:
        await eventually(lambda: _ready(len(seen["old-a"]) + len(seen["old-b"]) >= 12),
                         timeout=60)
    finally:
        await old.stop()  # (a clean stop: the offsets of what was handled are committed)
    assert sorted(seen["old-a"] + seen["old-b"]) == sorted(first)
    later = await publish("after", 4)

    new = Runtime(settings, Store(settings))
    merged = new.subscribe(kinds, "facts", [ProgrammeSubmitted.TYPE], recorder("facts"),
                           replaces=("old-a", "old-b"))
    await new.start()
    try:
        await eventually(lambda: _ready(len(seen["facts"]) >= 8), timeout=60)
        await asyncio.sleep(1.0)  # (nothing more comes)
    finally:
        await new.stop()
    assert sorted(seen["facts"]) == sorted(later)  # none of the first twelve again
    for kind in kinds:  # its own offsets now: the ends of both topics
        assert sum((await _committed(group_of(settings, "facts"),
                                     settings.topic(kind))).values()) == 10
    assert await carry_offsets(settings, merged) == {}


async def test_a_subscription_replacing_groups_that_do_not_exist_asks_no_group_its_offsets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a new deployment (or once the replaced groups' offsets have expired) the carry-over
    finds none of the replaced groups among the cluster's groups and asks nothing more: no
    group's offsets (which would have the broker find, and on a new cluster create, the
    group's coordinator), no commit; the new group is not made by it."""
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.consumer import carry_offsets, group_of
    from shared.runtime import Runtime
    from shared.store import Store

    settings = isolated(NotificationsSettings)
    asked: list[str] = []
    fetch = AIOKafkaAdminClient.list_consumer_group_offsets

    async def recorded(self: AIOKafkaAdminClient, group_id: str, *a: Any, **kw: Any) -> Any:
        asked.append(group_id)
        return await fetch(self, group_id, *a, **kw)

    monkeypatch.setattr(AIOKafkaAdminClient, "list_consumer_group_offsets", recorded)
    runtime = Runtime(settings, Store(settings))

    async def handle(batch: list[Any]) -> None:
        return None

    merged = runtime.subscribe((topics.PROGRAMMES, topics.FUNDING), "facts",
                               [ProgrammeSubmitted.TYPE], handle,
                               replaces=("never-a", "never-b"))
    assert await carry_offsets(settings, merged) == {}
    assert asked == []
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                                **settings.kafka_options())
    await admin.start()
    try:
        listed = {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    assert group_of(settings, "facts") not in listed
