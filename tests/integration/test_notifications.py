"""Notifications against the real broker and Mongo wire server, a real local HTTP receiver
and a real SMTP server: every PUNO of an approved programme gets exactly one signed webhook
and one e-mail; a receiver that fails three times then recovers gets it on the retry; a dead
receiver ends in the dead letters without delaying the others; a redelivered fact sends
nothing twice."""

from __future__ import annotations

import asyncio
import email
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request, Response
from motor.motor_asyncio import AsyncIOMotorClient

from examples.webhook_receiver import verify
from services.notifications import service as notifications
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from services.notifications.store import NotificationsStore
from shared import rebuild, topics
from shared.consumer import Incoming
from shared.contracts import contract_for
from shared.contracts.funding import ProgrammeApproved
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted
from shared.contracts.notifications import (
    NotificationFailed,
    NotificationRead,
    NotificationRequeued,
    NotificationRetrying,
)
from shared.envelope import Envelope
from tests.integration.conftest import running
from tests.support import (
    DEU,
    IOM,
    OPERATOR,
    UNDP,
    asyncapi_violations,
    bearer,
    commands_started,
    event_record,
    eventually,
    free_port,
    headers_of,
    isolated,
    kafka_auth,
    notices,
    produce,
    read_to_end,
)

PUNOS = ["IOM", "ILO", "UNDP", "UNICEF"]


def incoming(topic: str, event: Any, offset: int = 0, event_id: str | None = None) -> Incoming:
    """A fact as the consumer hands it to notifications' handler (no broker in between)."""
    env = Envelope(source="/mptf/test", type=contract_for(event).type,
                   subject=event.programme_id, **({"id": event_id} if event_id else {}))
    return Incoming(SimpleNamespace(topic=topic, partition=0, offset=offset), env,  # type: ignore[arg-type]
                    event)


class Receiver:
    """A real HTTP server on loopback: /ok always answers 200, /flaky fails three times
    first, /dead hangs past the sender's timeout."""

    def __init__(self) -> None:
        self.hits: dict[str, list[tuple[dict[str, str], bytes, float]]] = defaultdict(list)
        self.ok: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dead_recovers = False
        app = FastAPI()

        @app.post("/{mode}/{who}")
        async def hook(mode: str, who: str, request: Request) -> Response:
            body = await request.body()
            self.hits[who].append((dict(request.headers), body, asyncio.get_running_loop()
                                   .time()))
            if mode == "flaky" and len(self.hits[who]) <= 3:
                return Response(status_code=503)
            if mode == "dead" and not self.dead_recovers:
                await asyncio.sleep(5)
                return Response(status_code=500)
            self.ok[who].append({"headers": dict(request.headers), "body": body})
            return Response(b'{"status": "ok"}', media_type="application/json")

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))

    def url(self, mode: str, who: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/{who}"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@asynccontextmanager
async def receivers() -> AsyncIterator[tuple[Receiver, Mailbox, int]]:
    rx, box = Receiver(), Mailbox()
    task = asyncio.create_task(rx.server.serve())

    async def started() -> bool:
        return rx.server.started

    await eventually(started, every=0.02)
    smtp_port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        yield rx, box, smtp_port
    finally:
        smtp.stop()
        rx.server.should_exit = True
        await task


async def rebuilt_alike(s: NotificationsSettings, store: NotificationsStore) -> None:
    """Once everything is sent and a notice read, notifications rebuilt from the log alone
    (its own facts say every outcome, retry, requeue and read mark; the directory is carried
    over as configuration) has the same delivery log, document by document."""
    async def quiet() -> bool:
        busy = await store.db.deliveries.count_documents({"status": {"$in": [
            "pending", "sending"]}})
        return not busy and not await store.outbox_events(pending=True)

    await eventually(quiet, timeout=30)
    inbox = (await notices(store, {"recipient": "IOM", "channel": "inbox"}))[0]
    assert await store.mark_read(inbox["_id"], "IOM")
    await eventually(quiet)
    plan = notifications.REBUILD
    facts_, _ = await rebuild.read_log(os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                                       [s.topic(t) for t in plan.topics], kafka_auth())
    fresh = NotificationsStore(s.model_copy(update={
        "mongodb_database": f"{s.database}_rebuilt"}))
    try:
        await rebuild.carry(store.db, fresh.db, plan.carried)
        report = await rebuild.replay(fresh, plan, facts_)
        assert not report.refused, report.refused
        assert await rebuild.compare(store.db, fresh.db, plan) == []
        rows = await notices(fresh)
        assert [r["_id"] for r in rows if r["read"]] == [inbox["_id"]]
        assert len(rows) == len(await notices(store))
        assert all(r["status"] == "delivered" for r in rows)
    finally:
        await fresh.client.drop_database(fresh.db.name)
        await fresh.close()


def facts(pid: str) -> tuple[Any, Any]:
    note = {**CONCEPT_NOTE_EXAMPLE, "punos": [
        {"entity": e, "convening": i == 0, "budget_usd": "100000"} for i, e in enumerate(PUNOS)]}
    submitted = ProgrammeSubmitted.model_validate({
        "programme_id": pid, "submitted_by": "IOM", "entity_reference": "R", "channel": "http",
        "submitted_at": "2026-11-23T10:00:00Z", "note": note})
    approved = ProgrammeApproved.model_validate({
        "programme_id": pid, "decision_id": "sc-7", "priority": 1,
        "approved_budget": [{"entity": e, "budget_usd": "100000"} for e in PUNOS],
        "total_budget_usd": "400000", "decided_at": "2026-11-23T11:00:00Z"})
    return submitted, approved


async def test_webhooks_and_email_to_every_puno_with_retries_and_dead_letters() -> None:
    async with receivers() as (rx, box, smtp_port):
        s = isolated(NotificationsSettings, allow_private_webhooks=True, smtp_port=smtp_port,
                     backoff_base_seconds=0.05, backoff_cap_seconds=0.2, max_attempts=4,
                     send_timeout_seconds=0.5, breaker_threshold=10,
                     dispatcher_poll_seconds=0.05)
        async with running(build_notifications, s) as (_app, rt, http):
            secrets = {}
            modes = {"IOM": "ok", "ILO": "flaky", "UNDP": "ok", "UNICEF": "dead"}
            for who, mode in modes.items():
                r = await http.put(f"/v1/directory/{who}", headers=OPERATOR, json={
                    "webhook_url": rx.url(mode, who), "email": f"mptf@{who.lower()}.org",
                    "event_types": [ProgrammeApproved.TYPE]})
                assert r.status_code == 200, r.text
                secrets[who] = r.json()["webhook_secret"]

            submitted, approved = facts("jp-n1")
            approved_record = event_record(approved, source="/mptf/funding", key="jp-n1",
                                           event_id="evt-approved-1")
            await produce(s.topic(topics.PROGRAMMES), [
                event_record(submitted, source="/mptf/intake", key="jp-n1")])
            await produce(s.topic(topics.FUNDING), [approved_record])

            async def states() -> list[tuple]:
                return [(d["recipient"], d["channel"], d["status"], d.get("last_error"))
                        async for d in rt.store.db.deliveries.find({
                            "fact_type": ProgrammeApproved.TYPE, "channel": {"$ne": "inbox"}})]

            async def settled() -> bool:
                return sum(1 for x in await states() if x[2] in ("delivered", "dead")) == 8

            try:
                await eventually(settled, timeout=30)
            except AssertionError as e:
                every = [(d["recipient"], d["channel"], d["fact_type"][-12:], d["status"])
                         for d in await notices(rt.store)]
                parked = await rt.store.db.parked.find().to_list(None)
                raise AssertionError(f"deliveries did not settle: {every} {parked}") from e
            # the redelivered fact (same event id) creates and sends nothing new
            await produce(s.topic(topics.FUNDING), [approved_record])
            await asyncio.sleep(1.5)
            log = (await http.get("/v1/deliveries", headers=OPERATOR, params={
                "fact_type": ProgrammeApproved.TYPE, "limit": 100})).json()
            dead = (await http.get("/v1/deliveries", headers=OPERATOR,
                                   params={"status": "dead"})).json()

            # the dead receiver can be replayed once it recovers
            rx.dead_recovers = True
            r = await http.post(f"/v1/deliveries/{dead[0]['notification_id']}/replay",
                                headers=OPERATOR)
            assert r.status_code == 200

            async def replayed() -> bool:
                return len(rx.ok["UNICEF"]) == 1

            await eventually(replayed)
            outcomes = {NotificationFailed.TYPE, NotificationRetrying.TYPE,
                        NotificationRequeued.TYPE}

            async def every_outcome() -> list[Any]:
                published = await read_to_end(s.topic(topics.NOTIFICATIONS))
                return published if outcomes <= {headers_of(f)["ce_type"]
                                                 for f in published} else []

            fails = await eventually(every_outcome)
            # only an e-mail's notice keeps the HTML it is sent with (the inbox and the
            # log never show it)
            html = {(who, d["channel"]): "html" in d
                    async for d in rt.store.db.deliveries.find(
                        {"programme_id": "jp-n1", "fact_type": ProgrammeApproved.TYPE})
                    for who in d["recipients"]}
            assert len(html) == 13 and all(has == (ch == "email")
                                           for (_, ch), has in html.items())
            await rebuilt_alike(s, rt.store)

    by = {(d["recipient"], d["channel"]): d for d in log}
    # 4 PUNOs x inbox, webhook, e-mail, and the RC office's inbox: once each
    assert sorted(by) == sorted([(w, c) for w in PUNOS for c in ("inbox", "webhook", "email")]
                                + [("RCO-PH", "inbox")])
    for who in ("IOM", "ILO", "UNDP"):
        assert len(rx.ok[who]) == 1
        hit = rx.ok[who][0]
        # Standard Webhooks: an off-the-shelf verifier accepts it with the right secret only
        assert secrets[who].startswith("whsec_")
        assert verify(secrets[who], hit["headers"], hit["body"])
        assert not verify(secrets["IOM" if who != "IOM" else "ILO"], hit["headers"],
                          hit["body"])
        # the signature covers the delivery id: another id does not verify
        assert not verify(secrets[who], {**hit["headers"], "webhook-id": "forged"},
                          hit["body"])
        assert hit["headers"]["webhook-id"] == hit["headers"]["x-mptf-notification-id"]
        payload = json.loads(hit["body"])
        assert payload["programme_id"] == "jp-n1" and "Approved" in payload["subject"]
        # the body carries the fact's own data, not only words
        assert payload["data"] == approved.model_dump(mode="json")
        assert payload["data"]["approved_budget"][0] == {"entity": "IOM",
                                                         "budget_usd": "100000.00"}
        assert hit["headers"]["x-mptf-notification-id"] == by[(who, "webhook")][
            "notification_id"]
        assert by[(who, "webhook")]["status"] == "delivered"
    assert len(rx.hits["ILO"]) == 4 and by[("ILO", "webhook")]["attempts"] == 4
    assert by[("UNICEF", "webhook")]["status"] == "dead"
    assert [d["recipient"] for d in dead] == ["UNICEF"] and dead[0]["attempts"] == 4
    # the dead receiver did not delay the others: they were delivered before its first
    # attempt had even timed out
    first_dead = datetime.fromisoformat(by[("UNICEF", "webhook")]["history"][0]["at"])
    for who in ("IOM", "UNDP"):
        assert datetime.fromisoformat(by[(who, "webhook")]["delivered_at"]) < first_dead
    mails = [m for m in box.messages if "Approved" in m["Subject"]]
    assert sorted(m["To"] for m in mails) == sorted(f"mptf@{w.lower()}.org" for w in PUNOS)
    assert all(m.is_multipart() and "jp-n1" in m.get_payload()[0].get_payload()
               and m.get_payload()[1].get_content_type() == "text/html"
               and "jp-n1" in m.get_payload()[1].get_payload() for m in mails)
    failed = [json.loads(f.value) for f in fails
              if headers_of(f)["ce_type"] == NotificationFailed.TYPE]
    assert [(f["recipient"], f["channel"], f["attempts"]) for f in failed] == [
        ("UNICEF", "webhook", 4)]
    # the failures' facts (retrying, failed, requeued), as the AsyncAPI document says them (the
    # year end to end has none)
    assert asyncapi_violations(fails) == []


async def test_inbox_is_private_and_can_be_marked_read() -> None:
    s = isolated(NotificationsSettings)
    async with running(build_notifications, s) as (_app, rt, http):
        submitted, approved = facts("jp-n2")
        await produce(s.topic(topics.PROGRAMMES), [event_record(submitted, source="/mptf/intake",
                                                                key="jp-n2")])
        await produce(s.topic(topics.FUNDING), [event_record(approved, source="/mptf/funding",
                                                             key="jp-n2")])

        async def two() -> list[dict[str, Any]]:
            r = await http.get("/v1/inbox", headers=UNDP)
            return r.json() if len(r.json()) == 2 else []

        inbox = await eventually(two)
        assert {m["recipient"] for m in inbox} == {"UNDP"}
        mid = inbox[0]["notification_id"]
        r = await http.post(f"/v1/inbox/{mid}/read", headers=IOM)
        assert r.status_code == 404  # not IOM's message
        r = await http.post(f"/v1/inbox/{mid}/read", headers=UNDP)
        assert r.status_code == 200
        unread = (await http.get("/v1/inbox", params={"unread": "true"},
                                 headers=UNDP)).json()
        assert [m["notification_id"] for m in unread] == [inbox[1]["notification_id"]]
        # the reading is a fact of its own, as the AsyncAPI document says it

        async def told() -> list[Any]:
            published = await read_to_end(s.topic(topics.NOTIFICATIONS))
            return published if [f for f in published if headers_of(f)["ce_type"] ==
                                 NotificationRead.TYPE] else []

        published = await eventually(told)
        (read,) = [json.loads(f.value) for f in published
                   if headers_of(f)["ce_type"] == NotificationRead.TYPE]
        assert (read["notification_id"], read["recipient"]) == (mid, "UNDP")
        assert asyncapi_violations(published) == []
        # the RC office reads its own notices with a role of its own, and no one else's
        rco = (await http.get("/v1/inbox", headers=bearer("dev-rco-ph"))).json()
        assert rco and {m["recipient"] for m in rco} == {"RCO-PH"}
        assert all(m["recipient"] != "RCO-PH" for m in (await http.get(
            "/v1/inbox", headers=UNDP)).json())
        # a funder registers its own webhook, not another's; private addresses are refused
        r = await http.put("/v1/directory/NOR", headers=DEU, json={"email": "a@b.org"})
        assert r.status_code == 403
        r = await http.put("/v1/directory/DEU", headers=DEU,
                           json={"webhook_url": "http://127.0.0.1:9/x"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "webhook_url"
        r = await http.put("/v1/directory/DEU", headers=DEU,
                           json={"webhook_url": "https://hooks.bmz.de/mptf"})
        assert r.status_code == 200 and len(r.json()["webhook_secret"]) > 20
        assert await rt.store.db.directory.count_documents({"_id": "DEU"}) == 1


async def test_a_fact_seen_again_after_its_inbox_record_expired_makes_no_notice_twice() -> None:
    """A batch's notices are inserted without looking them up (the inbox has not seen their
    facts). A fact that comes again after its inbox record expired fails that insert on the
    unique id of its inbox document; its batch then runs again, looking each notice up: no
    notice and no NotificationDelivered twice, and the batch's other facts are notified."""
    store = NotificationsStore(isolated(NotificationsSettings))
    try:
        await store.ensure_indexes()
        await store.seed_directory()
        assert "fact_id_1" not in await store.db.deliveries.index_information()
        submitted, approved = facts("jp-n3")
        first = [incoming(topics.PROGRAMMES, submitted, 0), incoming(topics.FUNDING, approved, 0)]
        assert await notifications.handle_facts(store, first, digest_hour=6) == []
        made = len(await notices(store))
        told = len(await store.outbox_events())
        assert made == told > 0  # one NotificationDelivered per inbox notice
        of_approval = len(await notices(store, {"fact_id": first[1].id}))
        assert of_approval >= len(PUNOS)
        # (its inbox notices are one document)
        assert await store.db.deliveries.count_documents({"fact_id": first[1].id}) == 1

        # the approval's inbox record expires; it comes again, with a new programme's fact
        assert (await store.db.inbox.delete_many({"ids": f"{notifications.FACTS_CONSUMER}:"
                                                        f"{first[1].id}"})).deleted_count
        again = Incoming(first[1].record, first[1].envelope, approved)
        other, _ = facts("jp-n4")
        fresh = incoming(topics.PROGRAMMES, other, 1)
        assert await notifications.handle_facts(store, [again, fresh], digest_hour=6) == []
        new = len(await notices(store, {"fact_id": fresh.id}))
        assert new > 0
        assert len(await notices(store)) == made + new
        assert len(await store.outbox_events()) == told + new
        assert len(await notices(store, {"fact_id": first[1].id})) == of_approval
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_a_batch_reads_the_directory_entries_of_programmes_it_recalls_beside_its_programmes(
        ) -> None:
    """Whom a batch's facts address is known before its programmes are read where the process
    recalls them (or a submission in the batch names them): those directory entries are read
    outside the transaction, beside its programmes' read, not after it inside. Only a
    guess: a contact changed a moment before is seen all the same, and a process that
    recalls nothing (a restart, another replica) reads them in the transaction and makes the
    same notices."""
    settings = isolated(NotificationsSettings)
    finds = commands_started(settings.database, ("find",))

    def reads() -> set[tuple[str, bool]]:
        """The collections read since the last clear, each with whether in a transaction."""
        return {(c["find"], "autocommit" in c) for c in finds}

    async def approval_notices(pid: str) -> set[tuple[str, str]]:
        return {(n["recipient"], n["channel"]) for n in await notices(store)
                if n["fact_type"] == ProgrammeApproved.TYPE and n["programme_id"] == pid}

    store = NotificationsStore(settings)
    other = NotificationsStore(settings)  # another replica, or this one restarted
    try:
        await store.ensure_indexes()
        await store.seed_directory()
        sub_a, approved_a = facts("jp-g1")
        sub_b, approved_b = facts("jp-g2")
        # the submissions name their PUNOs: read beside the programmes, outside
        finds.clear()
        assert await notifications.handle_facts(store, [
            incoming(topics.PROGRAMMES, sub_a), incoming(topics.PROGRAMMES, sub_b)],
            digest_hour=6) == []
        assert ("directory", False) in reads() and ("directory", True) not in reads()
        assert ("programmes", True) in reads()
        assert store.recent.get("jp-g1") is not None

        # UNDP registers a webhook; then the approval: its addressees guessed from the
        # programme as this process recalls it, their entries (UNDP's new one) read outside
        await store.put_contact("UNDP", {"webhook_url": "https://undp.example/hook"})
        finds.clear()
        assert await notifications.handle_facts(store, [
            incoming(topics.FUNDING, approved_a)], digest_hour=6) == []
        assert ("directory", False) in reads() and ("directory", True) not in reads()
        made_a = await approval_notices("jp-g1")
        assert ("UNDP", "webhook") in made_a and ("IOM", "webhook") not in made_a
        assert {r for r, ch in made_a if ch == "inbox"} >= set(PUNOS)

        # a replica that recalls nothing reads the entries in the transaction, as always:
        # the same notices for the other programme
        finds.clear()
        assert other.recent.get("jp-g2") is None
        assert await notifications.handle_facts(other, [
            incoming(topics.FUNDING, approved_b)], digest_hour=6) == []
        assert ("directory", True) in reads() and ("directory", False) not in reads()
        assert await approval_notices("jp-g2") == made_a
        assert other.recent.get("jp-g2") is not None  # (recalled from now on)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
        await other.close()


async def test_facts_parked_for_a_batchs_submissions_are_read_in_one_query_and_made_new(
        ) -> None:
    """A pipeline running behind reads a programme's money facts before its submission (on
    another topic): they are parked. A batch of submissions then reads the parked facts of
    all its programmes in one query, and makes their notices without looking each up (a
    parked fact has made none), where it made a round trip for each programme and each
    fact; the notices are the same. A parked fact that had made its notices after all
    (never, but if) fails the insert on its unique id, and the batch runs again carefully:
    no notice twice."""

    def approvals(rows: list[dict[str, Any]], fact_id: str | None = None) -> list[str]:
        return sorted(r["recipient"] for r in rows if r["fact_type"] == ProgrammeApproved.TYPE
                      and fact_id in (None, r["fact_id"]))

    settings = isolated(NotificationsSettings)
    finds = commands_started(settings.database, ("find",))
    store = NotificationsStore(settings)
    try:
        await store.ensure_indexes()
        await store.seed_directory()
        pids = ["jp-k1", "jp-k2", "jp-k3"]
        made = {pid: facts(pid) for pid in pids}
        approved = {pid: incoming(topics.FUNDING, made[pid][1]) for pid in pids}
        # the approvals first: nobody to address yet, so parked
        assert await notifications.handle_facts(store, list(approved.values()),
                                                digest_hour=6) == []
        assert await store.db.parked.count_documents({}) == 3
        assert await notices(store) == []

        # the submissions (and one of a programme with nothing parked, and a second approval
        # of jp-k3 parked in the batch before its submission): one query for the parked
        # facts of all three, none for deliveries
        later = incoming(topics.FUNDING, made["jp-k3"][1])
        batch = [incoming(topics.PROGRAMMES, made[pid][0]) for pid in pids[:2]] + [
            incoming(topics.PROGRAMMES, facts("jp-k4")[0]), later,
            incoming(topics.PROGRAMMES, made["jp-k3"][0])]
        finds.clear()
        assert await notifications.handle_facts(store, batch, digest_hour=6) == []
        assert [c["filter"] for c in finds if c["find"] == "parked"
                and "programme_id" in c["filter"]] == [{"programme_id": {"$in": pids}}]
        assert not [c for c in finds if c["find"] == "deliveries"]
        assert await store.db.parked.count_documents({}) == 0
        rows = await notices(store)
        assert len({r["_id"] for r in rows}) == len(rows)
        told = approvals(rows, approved["jp-k1"].id)  # (the PUNOs and the RC office)
        assert set(told) > set(PUNOS)
        for fact in (*approved.values(), later):
            assert approvals(rows, fact.id) == told

        # a parked fact whose notices exist (its document put back by hand) makes none again
        fact = approved["jp-k1"]
        await store.db.parked.insert_one({
            "_id": fact.id, "type": ProgrammeApproved.TYPE, "programme_id": "jp-k1",
            "data": made["jp-k1"][1].model_dump(mode="json"), "traceparent": None,
            "at": datetime(2026, 11, 23, 11)})
        await store.db.programmes.update_one({"_id": "jp-k1"}, {"$set": {"parked": 1}})
        again = incoming(topics.PROGRAMMES, made["jp-k1"][0])  # (a new fact id)
        assert await notifications.handle_facts(store, [again], digest_hour=6) == []
        after = await notices(store)
        assert approvals(after) == approvals(rows)
        assert [r for r in after if r["fact_id"] == again.id]  # the submission's own
        assert await store.db.parked.count_documents({}) == 0
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


def test_recent_programmes_are_bounded_and_forget_the_oldest_first() -> None:
    from services.notifications.domain import Programme
    from services.notifications.store import Recent

    recent = Recent(size=3)
    for i in range(4):
        recent.put(Programme(f"jp-{i}", "t", ("IOM", "ILO"), "IOM", ("PH",)))
    recent.put(Programme("jp-1", "t2", ("IOM", "ILO"), "IOM", ("PH",)))  # (read again)
    recent.put(Programme("jp-4", "t", ("IOM", "ILO"), "IOM", ("PH",)))
    assert recent.get("jp-0") is None and recent.get("jp-2") is None
    assert [recent.get(p) is not None for p in ("jp-1", "jp-3", "jp-4")] == [True] * 3
    assert recent.get("jp-1").title == "t2"  # type: ignore[union-attr]
    assert recent.get(None) is None


async def test_the_directory_is_seeded_in_one_command_and_a_restart_keeps_its_contacts() -> None:
    """Every member of the Network and the FMU gets an inbox-only entry, in one command; a
    second start (or two replicas starting together) keeps the contact points registered
    meanwhile and adds nothing twice."""
    from prometheus_client import REGISTRY

    from shared.reference import NETWORK_MEMBERS

    def directory_commands() -> float:
        return sum(s.value for m in REGISTRY.collect() if m.name == "mptf_store_commands"
                   for s in m.samples if s.name == "mptf_store_commands_total"
                   and s.labels.get("collection") == "directory")

    settings = isolated(NotificationsSettings)
    store, other = NotificationsStore(settings), NotificationsStore(settings)
    try:
        await store.ensure_indexes()
        before = directory_commands()
        await asyncio.gather(store.seed_directory(), other.seed_directory())  # two replicas
        assert directory_commands() - before == 2
        entries = {d["_id"]: d for d in await store.directory()}
        assert set(entries) == {*NETWORK_MEMBERS, "FMU"}
        for code in entries:
            contact = await store.contact(code)
            assert contact is not None and contact.mode == "immediate"
            assert contact.webhook_url is None and contact.email is None
        assert entries["FMU"]["kind"] == "fmu" and entries["IOM"]["kind"] == "entity"
        await store.put_contact("IOM", {"email": "mptf@iom.example.org", "mode": "digest"})
        await store.seed_directory()  # a restart
        again = {d["_id"]: d for d in await store.directory()}
        assert set(again) == set(entries)
        assert again["IOM"]["email"] == "mptf@iom.example.org"
        assert again["IOM"]["mode"] == "digest"
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
        await other.close()


async def test_a_batch_reads_the_directory_entries_of_everyone_it_addresses_in_one_query() -> None:
    """Three programmes in three countries submitted and approved in one batch: the PUNOs,
    the three RC offices and the FMU are read from the directory in one query, not one per
    programme as each fact found new recipients."""
    from prometheus_client import REGISTRY

    def directory_reads() -> float:
        return REGISTRY.get_sample_value("mptf_store_commands_total", {
            "command": "find", "collection": "directory"}) or 0.0

    store = NotificationsStore(isolated(NotificationsSettings))
    try:
        await store.ensure_indexes()
        await store.seed_directory()
        batch = []
        for n, country in enumerate(("PH", "KE", "BD")):
            submitted, approved = facts(f"jp-d{n}")
            submitted = submitted.model_copy(update={"note": submitted.note.model_copy(
                update={"countries": [country]})})
            for event in (submitted, approved):
                batch.append(incoming("t", event, len(batch)))
        before = directory_reads()
        assert await notifications.handle_facts(store, batch, digest_hour=6) == []
        assert directory_reads() - before == 1
        told = {r["recipient"] for r in await notices(store)}
        assert {"RCO-PH", "RCO-KE", "RCO-BD", *PUNOS} <= told
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_inbox_notices_leave_the_dispatcher_asleep_and_a_webhook_notice_wakes_it() -> None:
    """Inbox notices are delivered by their very writing: a batch of them does not wake the
    dispatcher (which would only query its queue for nothing). A webhook notice wakes it at
    once, long before its next poll (a minute here)."""
    from prometheus_client import REGISTRY

    def queue_reads() -> float:
        return REGISTRY.get_sample_value("mptf_store_commands_total", {
            "command": "find", "collection": "deliveries"}) or 0.0

    async with receivers() as (rx, _box, smtp_port):
        s = isolated(NotificationsSettings, allow_private_webhooks=True, smtp_port=smtp_port,
                     dispatcher_poll_seconds=60)
        async with running(build_notifications, s) as (_app, _rt, http):
            r = await http.put("/v1/directory/IOM", headers=OPERATOR, json={
                "webhook_url": rx.url("ok", "IOM"), "event_types": [ProgrammeApproved.TYPE]})
            assert r.status_code == 200, r.text
            await asyncio.sleep(1)  # past the dispatcher's first look at its queue
            reads = queue_reads()
            submitted, approved = facts("jp-wake")
            await produce(s.topic(topics.PROGRAMMES), [
                event_record(submitted, source="/mptf/intake", key="jp-wake")])

            # read with a client of the test's own: the store's client counts its `find`s
            client = AsyncIOMotorClient(s.mongodb_url)
            raw = client[s.database].deliveries

            async def inbox_notices() -> int:
                return sum([len(d["recipients"]) async for d in raw.find(
                    {"programme_id": "jp-wake"})])

            assert await eventually(inbox_notices) == len(PUNOS)
            assert queue_reads() == reads
            await produce(s.topic(topics.FUNDING), [
                event_record(approved, source="/mptf/funding", key="jp-wake")])

            async def sent() -> int:
                return len(rx.ok["IOM"])

            assert await eventually(sent) == 1
            assert queue_reads() > reads
            client.close()


async def test_a_facts_inbox_notices_are_one_document_read_as_rows_and_earlier_ones_moved_in(
) -> None:
    """A fact's inbox notices are kept in one document, and the log and the inbox read one
    row per notification out of it: a page may end inside a fact's notices, and the next
    starts after its last row (no row twice, none skipped, newest first). Inbox notices of
    an earlier release (a document each, with a `read` flag) are moved into their fact's
    document at start, ids and read marks kept, so a fact notified before the upgrade and
    seen again after its inbox record expired makes no notice twice."""
    from datetime import UTC

    from services.notifications.domain import Notice

    store = NotificationsStore(isolated(NotificationsSettings))
    try:
        # an earlier release's notices of an old fact: one document per recipient
        old_submitted, _ = facts("jp-old")
        then = datetime(2026, 11, 1, tzinfo=UTC)
        legacy = {who: Notice("evt-old", ProgrammeSubmitted.TYPE, "jp-old", who, "inbox",
                              "Concept note received", "words").id for who in PUNOS}
        await store.db.deliveries.insert_many([{
            "_id": nid, "fact_id": "evt-old", "fact_type": ProgrammeSubmitted.TYPE,
            "programme_id": "jp-old", "recipient": who, "channel": "inbox",
            "subject": "Concept note received", "text": "words", "status": "delivered",
            "digest": False, "attempts": 1, "created_at": then, "due_at": then,
            "delivered_at": then, "read": who == "ILO", "traceparent": None, "history": []}
            for who, nid in legacy.items()])
        await store.ensure_indexes()
        await store.ensure_indexes()  # (a second start finds them moved)
        await store.seed_directory()
        assert await store.db.deliveries.count_documents({"fact_id": "evt-old"}) == 1
        submitted, approved = facts("jp-new")
        assert await notifications.handle_facts(store, [
            incoming("t", submitted, 0), incoming("t", approved, 1)], digest_hour=6) == []
        rows = await notices(store)
        # 4 PUNOs told of the submission and of the approval, the RC office of the
        # approval; and the 4 of the old fact, newest first
        assert len(rows) == 13 and len({r["_id"] for r in rows}) == 13
        assert [r["created_at"] for r in rows] == sorted(
            (r["created_at"] for r in rows), reverse=True)
        assert {r["_id"]: r["read"] for r in rows if r["fact_id"] == "evt-old"} == {
            nid: who == "ILO" for who, nid in legacy.items()}
        assert await store.db.deliveries.count_documents({}) == 3  # one per fact
        for limit in (1, 2, 3, 4, 5):  # pages ending inside a fact's notices
            for query in ({}, {"recipient": "IOM"}, {"channel": "inbox", "status": "delivered"}):
                got, cursor = [], None
                while True:
                    page, cursor = await store.deliveries(query, cursor, limit)
                    assert len(page) <= limit
                    got += page
                    if not cursor:
                        break
                assert got == [r for r in rows if all(
                    r[k] == v for k, v in query.items())], (limit, query)

        from shared import paging
        from shared.errors import BadRequest

        for forged in (["x", "y", "z"], [1, 2, [3]], ["a"]):  # a row's place is a number
            with pytest.raises(BadRequest):
                await store.deliveries({}, paging.encode(forged), 5)

        # read marks: the recipient's own notice only, once each
        mine = next(r for r in rows if r["recipient"] == "UNDP" and r["fact_id"] != "evt-old")
        assert not await store.mark_read(mine["_id"], "IOM")
        assert await store.mark_read(mine["_id"], "UNDP")
        assert await store.mark_read(mine["_id"], "UNDP")
        assert await store.mark_read(legacy["IOM"], "IOM")
        assert not await store.mark_read(legacy["UNICEF"], "IOM")
        read = [e for e in await store.outbox_events() if e["type"].endswith("read.v1")]
        assert sorted(json.loads(e["value"])["notification_id"] for e in read) == sorted(
            [mine["_id"], legacy["IOM"]])
        unread = await notices(store, {"recipient": "UNDP", "read": False})
        assert mine["_id"] not in {r["_id"] for r in unread} and len(unread) == 2
        assert [r["_id"] for r in await notices(store, {"recipient": "ILO", "read": False})
                if r["fact_id"] == "evt-old"] == []

        # the old fact again, after its inbox record expired: nothing new
        before = len(await store.outbox_events())
        assert await notifications.handle_facts(store, [
            incoming("t", old_submitted, 2, "evt-old")], digest_hour=6) == []
        assert len(await notices(store)) == 13
        assert len(await store.outbox_events()) == before
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
