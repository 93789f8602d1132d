"""The secured broker: every client authenticates, each principal does only its part
(shared.kafka_acl), a record's claimed sender must be the authenticated one, and funders see
only what every funder may see."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.intake.domain import programme_id
from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from tests.integration.conftest import running
from tests.integration.test_funding_api import screened, setup
from tests.support import (
    FMU,
    event_record,
    headers_of,
    inbound,
    isolated,
    kafka_auth,
    pledge_and_deposit,
    produce,
    read_all,
    unique,
)

BOOTSTRAP = lambda: os.environ["KAFKA_BOOTSTRAP_SERVERS"]  # noqa: E731


async def write(user: str | None, topic: str) -> str:
    """What happens when `user` (None: no credentials) writes one record to `topic`."""
    p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP(), enable_idempotence=True,
                         request_timeout_ms=5000, **(kafka_auth(user) if user else {}))
    try:
        await p.start()
        await p.send_and_wait(topic, b"{}", key=b"k")
        return "ok"
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
        return "denied"  # the latter: a principal with no WRITE anywhere cannot even start
    except KafkaConnectionError:
        return "unauthenticated"
    finally:
        await p.stop()


async def read(user: str, topic: str, group: str | None = None) -> str:
    c = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP(), group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         request_timeout_ms=5000, **kafka_auth(user))
    try:
        await c.start()
        await c.getmany(timeout_ms=1000)
        return "ok"
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
        return "denied"
    finally:
        await c.stop()


async def test_no_anonymous_client_and_no_wrong_password() -> None:
    tag = unique("sec")
    s = isolated(IntakeSettings, tag=tag)
    topic = inbound(s, topics.INBOUND_CONCEPT_NOTES, "IOM")
    assert await write(None, topic) == "unauthenticated"
    p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP(), request_timeout_ms=5000,
                         security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                         sasl_plain_username="entity-IOM", sasl_plain_password="guessed")
    with pytest.raises(KafkaConnectionError):
        await p.start()
    await p.stop()


@pytest.mark.parametrize(("user", "topic", "expected"), [
    ("entity-IOM", f"{topics.INBOUND_CONCEPT_NOTES}.IOM", "ok"),
    ("entity-IOM", f"{topics.INBOUND_PROGRESS_REPORTS}.IOM", "ok"),
    ("entity-IOM", f"{topics.INBOUND_CONCEPT_NOTES}.ILO", "denied"),  # another's topic
    ("entity-IOM", f"{topics.INBOUND_CONCEPT_NOTES}.dlq", "denied"),
    ("entity-IOM", topics.FUNDING, "denied"),
    ("entity-IOM", topics.PROGRAMMES, "denied"),
    ("svc-intake", topics.PROGRAMMES, "ok"),
    ("svc-intake", topics.FUNDING, "denied"),  # only funding writes mptf.funding
    ("svc-monitoring", topics.FUNDING, "denied"),
    ("svc-funding", topics.FUNDING, "ok"),
    ("svc-funding", topics.FUNDERS, "ok"),
    ("svc-notifications", topics.FUNDERS, "denied"),
    ("funder-DEU", topics.FUNDERS, "denied"),  # funders read, never write
    ("operator", topics.FUNDING, "denied"),
])
async def test_each_principal_writes_only_its_own_topics(user: str, topic: str,
                                                         expected: str) -> None:
    tag = unique("sec")
    isolated(IntakeSettings, tag=tag)  # provisions the tag's topics and ACLs
    assert await write(user, f"{tag}.{topic}") == expected


@pytest.mark.parametrize(("user", "topic", "group", "expected"), [
    ("funder-DEU", topics.FUNDERS, None, "ok"),
    ("funder-DEU", topics.FUNDERS, "funder-DEU.dashboard", "ok"),
    ("funder-DEU", topics.FUNDERS, "funder-NOR.dashboard", "denied"),  # another's group
    ("funder-DEU", topics.FUNDING, None, "denied"),  # other donors' contributions
    ("funder-DEU", topics.PROGRAMMES, None, "denied"),
    ("entity-IOM", topics.PROGRAMMES, None, "denied"),
    ("svc-funding", topics.PROGRAMMES, None, "ok"),
    ("svc-funding", f"{topics.INBOUND_CONCEPT_NOTES}.IOM", None, "denied"),
    ("svc-intake", f"{topics.INBOUND_CONCEPT_NOTES}.IOM", None, "ok"),
    ("svc-intake", topics.PROGRAMMES, "mptf-funding.programme-facts", "denied"),
    ("operator", topics.FUNDING, None, "ok"),
])
async def test_each_principal_reads_only_what_it_may(user: str, topic: str, group: str | None,
                                                     expected: str) -> None:
    tag = unique("sec")
    isolated(IntakeSettings, tag=tag)
    assert await read(user, f"{tag}.{topic}", f"{tag}.{group}" if group else None) == expected


async def test_a_record_claiming_another_sender_than_its_topic_is_refused() -> None:
    """IOM's system, authenticated as IOM, sends a note on its own topic that claims to come
    from ILO, the note's other PUNO: dead-lettered as forbidden, nothing stored; the same
    note sent by ILO on ILO's own topic is accepted."""
    s = isolated(IntakeSettings)
    note = SubmitConceptNote.model_validate({
        **CONCEPT_NOTE_EXAMPLE, "entity_reference": "ILO-FORGED-1",
        "punos": [{"entity": "ILO", "convening": True, "budget_usd": "100000"},
                  {"entity": "IOM", "budget_usd": "50000"}]})
    async with running(build_intake, s) as (_, rt, _http):
        await produce(inbound(s, topics.INBOUND_CONCEPT_NOTES, "IOM"),
                      [event_record(note, source="urn:mptf:entity:ILO", key="ILO-FORGED-1")])
        (dead,) = await read_all(s.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq", min_count=1)
        assert headers_of(dead)["dlq_reason"] == "forbidden"
        assert "IOM's own topic" in headers_of(dead)["dlq_detail"]
        assert dead.value == note.model_dump_json().encode()  # the original bytes
        assert await rt.store.db.programmes.count_documents({}) == 0

        await produce(inbound(s, topics.INBOUND_CONCEPT_NOTES, "ILO"),
                      [event_record(note, source="urn:mptf:entity:ILO", key="ILO-FORGED-1")])
        facts = await read_all(s.topic(topics.PROGRAMMES), min_count=2)
        assert {json.loads(f.value)["programme_id"] for f in facts} == {
            programme_id("ILO", "ILO-FORGED-1")}
        assert await rt.store.db.programmes.count_documents({}) == 1


async def test_funders_topic_carries_what_every_funder_may_see_and_no_contributions() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-fund"))
        await pledge_and_deposit(http, "c-NOR", "NOR", "300000")
        r = await http.post("/v1/decisions", headers=FMU, json={
            "programme_id": "jp-fund", "decision": "approve", "decision_id": "sc-1",
            "priority": 1})
        assert r.json()["allocated"] is True
        seen: list[Any] = []
        c = AIOKafkaConsumer(s.topic(topics.FUNDERS), bootstrap_servers=BOOTSTRAP(),
                             group_id=f"{s.topic_prefix}funder-DEU.feed",
                             auto_offset_reset="earliest", **kafka_auth("funder-DEU"))
        await c.start()
        try:
            while len(seen) < 3:  # the allocation and the first tranche to each PUNO
                for recs in (await c.getmany(timeout_ms=15000)).values():
                    seen += recs
                if not seen:
                    break
        finally:
            await c.stop()
    types = [headers_of(r)["ce_type"] for r in seen]
    assert "org.migrationmptf.allocation.made.v1" in types
    assert "org.migrationmptf.funds.transferred.v1" in types
    assert not [t for t in types if ".contribution." in t]  # no donor's contribution
    allocation = next(json.loads(r.value) for r in seen
                      if headers_of(r)["ce_type"].endswith("allocation.made.v1"))
    assert allocation["funded_by"] == [{"contribution_id": "c-NOR", "contributor": "NOR",
                                        "usd": "214000.00"}]
    funding_facts = await read_all(s.topic(topics.FUNDING), min_count=len(seen) + 3)
    ids = {headers_of(r)["ce_id"] for r in funding_facts}
    assert {headers_of(r)["ce_id"] for r in seen} <= ids  # the same events, the same ids
