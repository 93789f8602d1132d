"""The transactional outbox: a state change and its event commit together; the relay
publishes it; a relay that dies between publishing and marking only republishes, and the
consumer's effect still happens exactly once. Run with both MongoDB drivers."""

from __future__ import annotations

import pytest

from services.intake import service as intake_service
from services.intake.app import IntakeSettings
from services.intake.store import IntakeStore
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from shared import topics
from shared.contracts.intake import (
    CONCEPT_NOTE_EXAMPLE,
    ProgrammeScreened,
    ProgrammeSubmitted,
    SubmitConceptNote,
)
from shared.kafka import make_producer
from shared.outbox import OutboxRelay
from tests.integration.conftest import running
from tests.support import (
    assert_index_scans,
    consumed,
    eventually,
    headers_of,
    isolated,
    notices,
    read_all,
    record_queries,
    unique,
)


class RelayCrashed(Exception):
    pass


class CrashBetweenPublishAndMark(OutboxRelay):
    async def after_publish(self, docs):  # type: ignore[no-untyped-def]
        raise RelayCrashed("killed after publishing, before marking sent")


# as deployed, a published document is deleted (keep 0); kept and marked sent otherwise
@pytest.mark.parametrize(("driver", "keep"), [("motor", 0.0), ("pymongo", 0.0), ("motor", 24.0)])
async def test_relay_restart_between_publish_and_mark_causes_one_effect(driver: str,
                                                                        keep: float) -> None:
    tag = unique()
    settings = isolated(IntakeSettings, tag=tag, outbox_keep_sent_hours=keep)
    store = IntakeStore(settings, driver=driver)
    await store.ensure_indexes()
    note = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)

    outcome = await intake_service.submit(store, settings.rules(), note, "IOM")
    assert outcome.created
    # the state change and its events (submitted, screened) were committed together
    assert await store.db.programmes.count_documents({"_id": outcome.programme_id}) == 1
    assert len(await store.outbox_events(pending=True)) == 2

    producer = make_producer(settings)
    await producer.start()
    try:
        with pytest.raises(RelayCrashed):
            await CrashBetweenPublishAndMark(store, producer).publish_pending()
        assert len(await store.outbox_events(pending=True)) == 2  # not marked

        # the restarted relay publishes again and deletes them (or marks them sent)
        assert await OutboxRelay(store, producer).publish_pending() == 2
        assert len(await store.outbox_events(pending=True)) == 0
        assert await OutboxRelay(store, producer).publish_pending() == 0
        kept = await store.outbox_events()
        if keep:
            assert len(kept) == 2 and all(e["sent_at"] is not None for e in kept)
        else:
            assert kept == [] and await store.db.outbox.count_documents({}) == 0
    finally:
        await producer.stop()

    records = await read_all(settings.topic(topics.PROGRAMMES), min_count=4)
    ids = [headers_of(r)["ce_id"] for r in records]
    assert len(records) == 4 and len(set(ids)) == 2  # each event twice, under its one id
    assert sorted(headers_of(r)["ce_type"] for r in records) == sorted(
        [ProgrammeScreened.TYPE, ProgrammeSubmitted.TYPE] * 2)
    assert {r.key.decode() for r in records} == {outcome.programme_id}

    # downstream, the duplicate causes no second effect: one inbox message per PUNO
    nset = isolated(NotificationsSettings, tag=tag)
    async with running(build_notifications, nset) as (_, runtime, _http):
        async def delivered():  # type: ignore[no-untyped-def]
            return len(await notices(runtime.store, {
                "programme_id": outcome.programme_id, "fact_type": ProgrammeSubmitted.TYPE}))

        assert await eventually(delivered) == 3
        # let any redelivery land, then count again
        topic = nset.topic(topics.PROGRAMMES)

        async def both_consumed() -> bool:
            return consumed(topic, ProgrammeSubmitted.TYPE) >= 2

        await eventually(both_consumed)
        assert await delivered() == 3
    await store.close()


async def test_state_change_and_event_roll_back_together() -> None:
    settings = isolated(IntakeSettings)
    store = IntakeStore(settings)
    await store.ensure_indexes()
    note = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)

    async def fail_after_writing(uow):  # type: ignore[no-untyped-def]
        from services.intake.service import make_submission, screen_at_the_door

        sub = make_submission(note, "IOM", "http")
        reasons = screen_at_the_door(note, settings.rules(), sub.at.date())
        await store.record_submission(uow, sub, reasons)
        raise RuntimeError("crash inside the transaction")

    with pytest.raises(RuntimeError):
        await store.transaction(fail_after_writing)
    assert await store.db.programmes.count_documents({}) == 0
    assert await store.outbox_events() == []
    await store.close()


async def test_outbox_documents_from_before_shards_go_to_shard_0_found_by_index() -> None:
    """At start, a pending outbox document kept before the relay was sharded is given shard
    0 (published in its order there); the look for such documents goes by the relay's
    index, not a scan of the whole outbox (which the local Mongo server would make under
    its global lock at every start)."""
    from typing import Any

    store = IntakeStore(isolated(IntakeSettings))
    try:
        await store.ensure_indexes()
        await store.db.outbox.insert_many([
            {"_id": "old", "seq": 1, "sent_at": None, "count": 0, "events": []},
            {"_id": "new", "shard": 3, "seq": 2, "sent_at": None, "count": 0, "events": []}])
        looks: list[tuple[dict[str, Any], Any]] = []
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, store.db.outbox, ("update_many",), looks)
            await store.ensure_indexes()  # a later start
        assert {d["_id"]: d["shard"] async for d in store.db.outbox.find()} == {
            "old": 0, "new": 3}
        await assert_index_scans(store.db.outbox, looks)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_the_outbox_is_read_by_its_one_index_and_an_earlier_second_one_is_dropped(
        ) -> None:
    """The relay, the backlog gauge, the retention sweep and the tools' listing each find
    their documents by the one outbox index (the local Mongo server scans the whole
    collection otherwise, under its global lock); the second index of an earlier release
    (sent_at, seq), written at every commit and publication for nothing, is dropped."""
    from datetime import UTC, datetime
    from typing import Any

    store = IntakeStore(isolated(IntakeSettings))
    try:
        await store.db.outbox.create_index([("sent_at", 1), ("seq", 1)])
        await store.ensure_indexes()
        keys = [i["key"] for i in (await store.db.outbox.index_information()).values()]
        assert sorted(keys) == sorted([[("_id", 1)],
                                       [("shard", 1), ("sent_at", 1), ("seq", 1)]])
        now = datetime.now(UTC).replace(microsecond=0)  # (the store keeps milliseconds)
        await store.db.outbox.insert_many([
            {"_id": "a", "shard": 5, "seq": 2, "sent_at": None, "count": 2, "events": [],
             "created_at": now},
            {"_id": "b", "shard": 1, "seq": 1, "sent_at": None, "count": 1, "events": [],
             "created_at": now.replace(year=2025)},
            {"_id": "c", "shard": 1, "seq": 3, "sent_at": now, "count": 4, "events": []}])
        looks: list[tuple[dict[str, Any], Any]] = []
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, store.db.outbox, ("find", "delete_many"), looks)
            assert await store.outbox_backlog() == (3, now.replace(year=2025))
            assert await store.outbox_events(pending=True) == []  # (no events in them)
            await store.outbox_events()
            await store.prune(now)
            relay = OutboxRelay(store, None)  # type: ignore[arg-type]
            assert [d["_id"] for d in await relay.pending(1)] == ["b"]
            asked: list[tuple[dict[str, Any], Any]] = []
            distinct = type(store.db.outbox).distinct

            def spy(c: Any, key: str, query: dict[str, Any], **kw: Any) -> Any:
                asked.append((query, kw.get("hint")))
                return distinct(c, key, query, **kw)

            mp.setattr(type(store.db.outbox), "distinct", spy)
            assert sorted(await relay.busy_shards([1, 2, 5])) == [1, 5]
        await assert_index_scans(store.db.outbox, looks)
        # the relay's look for busy shards (a distinct, explained as the server runs it)
        assert len(asked) == 1
        query, hint = asked[0]
        plan = str((await store.db.command({"explain": {
            "distinct": "outbox", "key": "shard", "query": query,
            "hint": dict(hint)}}))["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, plan
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_a_facts_events_share_one_publish_span_and_go_out_in_commit_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay makes one PRODUCER span per group of events that share their trace, topic,
    type and programme (a fact's notices to its recipients), with how many and which events
    it sent; each event carries that span's context (its consumer's span is the child), and
    the events still go out one by one in their commit order."""
    from datetime import UTC, datetime

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.notifications.store import NotificationsStore
    from shared.contracts.notifications import NotificationDelivered, NotificationRead

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    settings = isolated(NotificationsSettings)
    store = NotificationsStore(settings)
    await store.ensure_indexes()
    trace_a = f"00-{'a' * 32}-{'1' * 16}-01"
    trace_b = f"00-{'b' * 32}-{'2' * 16}-01"
    now = datetime(2026, 12, 2, tzinfo=UTC)

    def delivered(pid: str, who: str) -> NotificationDelivered:
        return NotificationDelivered(notification_id=f"n-{pid}-{who}", fact_id=f"f-{pid}",
                                     fact_type=ProgrammeSubmitted.TYPE, programme_id=pid,
                                     recipient=who, channel="inbox", delivered_at=now)

    emitted: list[tuple[str, str]] = []  # (event id, its trace) in commit order

    async def work(uow):  # type: ignore[no-untyped-def]
        emitted.clear()
        for event, tp in ((delivered("jp-1", "IOM"), trace_a), (delivered("jp-1", "ILO"), trace_a),
                          (NotificationRead(notification_id="n-jp-1-IOM", fact_id="f-jp-1",
                                            fact_type=ProgrammeSubmitted.TYPE,
                                            programme_id="jp-1", recipient="IOM",
                                            channel="inbox", read_at=now), trace_a),
                          (delivered("jp-2", "IOM"), trace_b),
                          (delivered("jp-1", "UN-WOMEN"), trace_a)):
            emitted.append((uow.emit(event, traceparent=tp).id, tp))

    await store.transaction(work)
    producer = make_producer(settings)
    await producer.start()
    try:
        exporter.clear()
        assert await OutboxRelay(store, producer).publish_pending() == 5
    finally:
        await producer.stop()
        await store.close()

    spans = {(s.name.split(" ", 1)[1], s.attributes.get("mptf.programme_id")): s
             for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER}
    assert set(spans) == {(NotificationDelivered.TYPE, "jp-1"), (NotificationRead.TYPE, "jp-1"),
                          (NotificationDelivered.TYPE, "jp-2")}
    told = spans[(NotificationDelivered.TYPE, "jp-1")]  # the three recipients: one span
    assert told.attributes["messaging.batch.message_count"] == 3
    assert list(told.attributes["mptf.event_ids"]) == [emitted[i][0] for i in (0, 1, 4)]
    read = spans[(NotificationRead.TYPE, "jp-1")]
    assert read.attributes["mptf.event_id"] == emitted[2][0]
    assert "messaging.batch.message_count" not in read.attributes
    assert spans[(NotificationDelivered.TYPE, "jp-2")].attributes["mptf.event_id"] == emitted[3][0]
    for s in spans.values():  # each in the trace its events were made in
        assert s.attributes["messaging.destination.name"] == topics.NOTIFICATIONS
        assert s.status.status_code == trace.StatusCode.UNSET
    assert told.context.trace_id == read.context.trace_id == int("a" * 32, 16)
    assert told.parent.span_id == int("1" * 16, 16)
    assert spans[(NotificationDelivered.TYPE, "jp-2")].context.trace_id == int("b" * 32, 16)

    records = await read_all(settings.topic(topics.NOTIFICATIONS), min_count=5)
    by_id = {headers_of(r)["ce_id"]: r for r in records}
    assert len(records) == 5 and set(by_id) == {i for i, _ in emitted}
    # one programme's events in one partition, in commit order
    jp1 = [headers_of(r)["ce_id"] for r in sorted(records, key=lambda r: r.offset)
           if r.key == b"jp-1"]
    assert jp1 == [emitted[i][0] for i in (0, 1, 2, 4)]
    # each event carries its group's publish span as its parent
    for (event_id, _), group in zip(emitted, (told, told, read,
                                              spans[(NotificationDelivered.TYPE, "jp-2")], told),
                                    strict=True):
        tp = headers_of(by_id[event_id])["traceparent"]
        assert tp.split("-")[1:3] == [f"{group.context.trace_id:032x}",
                                      f"{group.context.span_id:016x}"]
