"""Intake against the real broker and Mongo wire server: notes over HTTP and over the topic
both end as ProgrammeScreened; who may submit, read and withdraw; personal data refused;
other services' facts drive the lifecycle; pagination; bad input answered."""

from __future__ import annotations

import json
from typing import Any

from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from shared import topics
from shared.contracts.funding import ProgrammeApproved
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeScreened, SubmitConceptNote
from tests.integration.conftest import running
from tests.support import (
    FMU,
    ILO,
    IOM,
    UNDP,
    event_record,
    eventually,
    headers_of,
    inbound,
    isolated,
    produce,
    read_all,
)


def note(**changes: Any) -> dict[str, Any]:
    return {**CONCEPT_NOTE_EXAMPLE, **changes}


def screened(records: list[Any]) -> dict[str, dict[str, Any]]:
    return {r.key.decode(): json.loads(r.value) for r in records
            if headers_of(r)["ce_type"] == ProgrammeScreened.TYPE}


async def test_notes_over_http_and_over_the_topic_both_end_screened() -> None:
    settings = isolated(IntakeSettings)
    async with running(build_intake, settings) as (_, _rt, http):
        r = await http.post("/v1/concept-notes", json=note(), headers=IOM)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "screened-eligible" and r.json()["eligible"] is True
        eligible_id = r.json()["programme_id"]

        bad = SubmitConceptNote.model_validate(note(
            entity_reference="ILO-KEN-3", duration_months=48, countries=["XX"],
            markers={"gender": 1, "human_rights": 2, "child_sensitivity": 2}))
        await produce(inbound(settings, topics.INBOUND_CONCEPT_NOTES, "ILO"),
                      [event_record(bad, source="urn:mptf:entity:ILO", key="ILO-KEN-3")])

        facts = screened(await read_all(settings.topic(topics.PROGRAMMES), min_count=4))
        assert facts[eligible_id]["eligible"] is True
        (ineligible_id,) = set(facts) - {eligible_id}
        assert facts[ineligible_id]["eligible"] is False
        assert [x["code"] for x in facts[ineligible_id]["reasons"]] == [
            "duration.over-maximum", "markers.gender-below-minimum",
            "geography.unknown-country"]
        assert facts[eligible_id]["programme"]["total_budget_usd"] == "2200000.00"

        r = await http.get(f"/v1/programmes/{ineligible_id}", headers=ILO)
        assert r.status_code == 200
        doc = r.json()
        assert doc["status"] == "screened-ineligible" and doc["channel"] == "kafka"
        assert [h["status"] for h in doc["history"]] == ["submitted", "screened-ineligible"]
        assert doc["punos"] == ["IOM", "ILO", "UN-WOMEN"] and doc["submitted_by"] == "ILO"


async def test_entities_submit_and_read_only_what_they_take_part_in() -> None:
    async with running(build_intake, isolated(IntakeSettings)) as (_, _rt, http):
        r = await http.post("/v1/concept-notes", json=note(), headers=UNDP)
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        assert "UNDP" in r.json()["detail"]

        pid = (await http.post("/v1/concept-notes", json=note(), headers=IOM)).json()[
            "programme_id"]
        other = note(entity_reference="UNDP-1", punos=[
            {"entity": "UNDP", "convening": True, "budget_usd": "100000"},
            {"entity": "UNICEF", "convening": False, "budget_usd": "100000"}])
        other_id = (await http.post("/v1/concept-notes", json=other, headers=UNDP)).json()[
            "programme_id"]

        assert (await http.get(f"/v1/programmes/{pid}", headers=ILO)).status_code == 200
        # another entity's draft is invisible, exactly like a programme that does not exist
        r = await http.get(f"/v1/programmes/{other_id}", headers=ILO)
        assert r.status_code == 404 and r.json()["code"] == "not-found"
        listed = (await http.get("/v1/programmes", headers=ILO)).json()["items"]
        assert [p["programme_id"] for p in listed] == [pid]
        # the FMU sees both; no token, no answer
        listed = (await http.get("/v1/programmes", headers=FMU)).json()["items"]
        assert {p["programme_id"] for p in listed} == {pid, other_id}
        assert (await http.get("/v1/programmes")).status_code == 401
        assert (await http.post("/v1/concept-notes", json=note(), headers=FMU)).status_code == 403


async def test_duplicate_submissions_are_idempotent_and_reused_references_conflict() -> None:
    async with running(build_intake, isolated(IntakeSettings)) as (_, rt, http):
        first = await http.post("/v1/concept-notes", json=note(), headers=IOM)
        again = await http.post("/v1/concept-notes", json=note(), headers=IOM)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["programme_id"] == again.json()["programme_id"]
        assert again.json()["created"] is False
        r = await http.post("/v1/concept-notes", json=note(title="Changed"), headers=IOM)
        assert r.status_code == 409 and r.json()["programme_id"] == first.json()["programme_id"]
        assert await rt.store.db.programmes.count_documents({}) == 1
        assert len(await rt.store.outbox_events()) == 2  # submitted + screened, once


async def test_personal_data_is_refused_with_every_reason_and_never_stored() -> None:
    settings = isolated(IntakeSettings)
    body = note(summary="Support for Mr. Okafor, passport no. A1234567", duration_months=40)
    async with running(build_intake, settings) as (_, rt, http):
        r = await http.post("/v1/concept-notes", json=body, headers=IOM)
        assert r.status_code == 422 and r.json()["code"] == "personal-data"
        errs = [(e["field"], e["code"]) for e in r.json()["errors"]]
        assert errs == [("summary", "personal-data"), ("summary", "personal-data"),
                        ("duration_months", "duration.over-maximum")]
        assert "Okafor" not in r.text and "A1234567" not in r.text

        bad = SubmitConceptNote.model_validate({**body, "entity_reference": "PII-2"})
        await produce(inbound(settings, topics.INBOUND_CONCEPT_NOTES),
                      [event_record(bad, key="PII-2")])
        (dead,) = await read_all(settings.topic(topics.INBOUND_CONCEPT_NOTES) + ".dlq",
                                 min_count=1)
        assert headers_of(dead)["dlq_reason"] == "personal-data"
        assert headers_of(dead)["dlq_redacted"] == "personal-data"
        assert b"Okafor" not in dead.value and b"A1234567" not in dead.value
        assert json.loads(dead.value)["title"] == body["title"]  # the rest is kept
        assert await rt.store.db.programmes.count_documents({}) == 0


async def test_withdrawal_by_a_puno_then_refused_once_withdrawn() -> None:
    settings = isolated(IntakeSettings)
    async with running(build_intake, settings) as (_, _rt, http):
        pid = (await http.post("/v1/concept-notes", json=note(), headers=IOM)).json()[
            "programme_id"]
        r = await http.post(f"/v1/programmes/{pid}/withdraw", json={"reason": "x"},
                            headers=UNDP)
        assert r.status_code == 404  # not a PUNO: nothing to see
        r = await http.post(f"/v1/programmes/{pid}/withdraw", json={"reason": "Merged"},
                            headers=ILO)
        assert r.status_code == 200 and r.json()["previous_status"] == "screened-eligible"
        r = await http.post(f"/v1/programmes/{pid}/withdraw", json={"reason": "again"},
                            headers=IOM)
        assert r.status_code == 409 and r.json()["code"] == "illegal-transition"
        assert r.json()["allowed"] == []
        facts = await read_all(settings.topic(topics.PROGRAMMES), min_count=3)
        kinds = [headers_of(f)["ce_type"].split(".")[-2] for f in facts]
        assert kinds == ["submitted", "screened", "withdrawn"]
        assert json.loads(facts[-1].value)["withdrawn_by"] == "ILO"


async def test_funding_facts_move_the_read_model_and_illegal_ones_are_dead_lettered() -> None:
    settings = isolated(IntakeSettings)
    async with running(build_intake, settings) as (_, _rt, http):
        ok = (await http.post("/v1/concept-notes", json=note(), headers=IOM)).json()
        bad = (await http.post("/v1/concept-notes", json=note(
            entity_reference="R-2", duration_months=99), headers=IOM)).json()
        assert bad["status"] == "screened-ineligible"

        def approval(pid: str) -> ProgrammeApproved:
            return ProgrammeApproved.model_validate({
                "programme_id": pid, "decision_id": "sc-1", "priority": 1,
                "approved_budget": [{"entity": "IOM", "budget_usd": "1"}],
                "total_budget_usd": "1", "decided_at": "2026-11-23T10:00:00Z"})

        await produce(settings.topic(topics.FUNDING), [
            event_record(approval(ok["programme_id"]), source="/mptf/funding",
                         key=ok["programme_id"]),
            event_record(approval(bad["programme_id"]), source="/mptf/funding",
                         key=bad["programme_id"])])

        async def approved() -> bool:
            r = await http.get(f"/v1/programmes/{ok['programme_id']}", headers=FMU)
            return r.json()["status"] == "approved"

        await eventually(approved)
        doc = (await http.get(f"/v1/programmes/{ok['programme_id']}", headers=FMU)).json()
        assert doc["history"][-1]["fact"] == ProgrammeApproved.TYPE
        assert doc["gateway_status"] == "Pipeline"
        (dead,) = await read_all(settings.topic(topics.FUNDING) + ".dlq", min_count=1)
        assert headers_of(dead)["dlq_reason"] == "illegal-transition"
        assert dead.key.decode() == bad["programme_id"]
        r = await http.get(f"/v1/programmes/{bad['programme_id']}", headers=FMU)
        assert r.json()["status"] == "screened-ineligible"


async def test_listing_filters_and_cursor_pagination() -> None:
    async with running(build_intake, isolated(IntakeSettings)) as (_, _rt, http):
        ids = []
        for i in range(5):
            countries = ["PH"] if i % 2 else ["MX"]
            r = await http.post("/v1/concept-notes", json=note(
                entity_reference=f"R-{i}", countries=countries), headers=IOM)
            ids.append(r.json()["programme_id"])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = await http.get("/v1/programmes", params=params, headers=FMU)
            page = r.json()
            seen += [p["programme_id"] for p in page["items"]]
            cursor = page["next_cursor"]
            # the next page named in headers too, as on every list route (shared.paging)
            assert r.headers.get("x-next-cursor") == cursor
            if not cursor:
                assert "link" not in r.headers
                break
            assert r.headers["link"].endswith('>; rel="next"')
            assert f"cursor={cursor}" in r.headers["link"]
        assert seen == list(reversed(ids))  # newest first, each once
        ph = (await http.get("/v1/programmes", params={"country": "ph"}, headers=FMU)).json()
        assert {p["programme_id"] for p in ph["items"]} == {ids[1], ids[3]}
        for params in ({"objective": 17}, {"thematic_area": 1}, {"puno": "un-women"},
                       {"status": "screened-eligible"}):
            got = (await http.get("/v1/programmes", params=params, headers=FMU)).json()
            assert len(got["items"]) == 5, params
        for params in ({"objective": 5}, {"thematic_area": 4}, {"puno": "WFP"},
                       {"status": "approved"}):
            got = (await http.get("/v1/programmes", params=params, headers=FMU)).json()
            assert got["items"] == [], params
        r = await http.get("/v1/programmes", params={"cursor": "garbage"}, headers=FMU)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cursor"


async def test_bad_http_input_gets_problem_json() -> None:
    async with running(build_intake, isolated(IntakeSettings)) as (_, _rt, http):
        r = await http.post("/v1/concept-notes", content=b"{oops", headers={
            **IOM, "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "malformed-body"
        r = await http.post("/v1/concept-notes", json=note(budget="x", title=""), headers=IOM)
        assert r.status_code == 422
        assert {e["field"] for e in r.json()["errors"]} == {"budget", "title"}
        r = await http.post("/v1/concept-notes", content=b"x" * 300_000,
                            headers={**IOM, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "payload-too-large"
        r = await http.get("/v1/programmes/nope", headers=IOM)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await http.get("/v1/programmes", headers={"authorization": "Bearer forged"})
        assert r.status_code == 401


async def test_two_concurrent_changes_of_one_programme_cannot_both_apply() -> None:
    """Two PUNOs withdraw the same programme at once: both read `screened-eligible`, both
    may withdraw it. The two transactions write the same document, so the later one
    conflicts, retries, reads the other's result and is refused by the lifecycle. One
    withdrawal is recorded, and one fact published."""
    import asyncio
    from datetime import UTC, datetime

    from services.intake import service as intake_service
    from services.intake.store import IntakeStore
    from shared.errors import IllegalTransition

    settings = isolated(IntakeSettings)
    store = IntakeStore(settings)
    await store.ensure_indexes()
    note = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)
    pid = (await intake_service.submit(store, settings.rules(), note, "IOM")).programme_id
    both_read = asyncio.Barrier(2)
    now = datetime.now(UTC)

    def change(by: str):  # type: ignore[no-untyped-def]
        first = True

        async def work(uow):  # type: ignore[no-untyped-def]
            nonlocal first
            await uow.docs("programmes").get(pid)  # the snapshot: screened-eligible
            if first:  # the first attempt of each waits until both have read
                first = False
                await both_read.wait()
            return await store.withdraw(uow, pid, by, f"withdrawn by {by}", now)

        return store.transaction(work)

    results = await asyncio.gather(change("IOM"), change("ILO"), return_exceptions=True)
    applied = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(applied) == 1 and applied[0][0] == "screened-eligible", results
    assert len(refused) == 1 and isinstance(refused[0], IllegalTransition), results
    doc = await store.get(pid)
    assert [h["status"] for h in doc["history"]] == [
        "submitted", "screened-eligible", "withdrawn"]
    assert doc["status"] == "withdrawn"
    withdrawals = [e for e in await store.outbox_events() if e["type"].endswith("withdrawn.v1")]
    assert len(withdrawals) == 1
    await store.client.drop_database(store.db.name)
    await store.close()
