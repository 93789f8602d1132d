"""Funding's paths after approval against the real broker and store: a withdrawal after the
allocation gives back what was not transferred (and the next waiting programme is funded)
and leaves the rest owed; a PUNO's system reports its refund on its own topic, booked when
received, and one it cannot owe is dead-lettered with why; a suspension stops tranches
until the resumption; a cancellation; the facts each path publishes."""

from __future__ import annotations

import json
from decimal import Decimal as D

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from shared import topics
from shared.contracts.funding import SubmitRefund
from shared.contracts.intake import ProgrammeWithdrawn
from tests.integration.conftest import running
from tests.integration.test_funding_api import screened, setup
from tests.support import (
    FMU,
    asyncapi_violations,
    event_record,
    eventually,
    headers_of,
    inbound,
    isolated,
    pledge_and_deposit,
    produce,
    read_all,
)


async def test_withdrawal_after_allocation_refunds_and_suspension() -> None:
    s = isolated(FundingSettings, transfer_tranches=[D("0.5"), D("0.5")])
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-w"), screened("jp-next"), screened("jp-s"))
        await pledge_and_deposit(http, "c-NOR", "NOR", "540404.04")  # 535,000 net
        for pid, prio in (("jp-w", 1), ("jp-s", 2), ("jp-next", 3)):
            r = await http.post("/v1/decisions", headers=FMU, json={
                "programme_id": pid, "decision": "approve", "decision_id": f"sc-{pid}",
                "priority": prio})
            assert r.status_code == 201
        # 214,000 each: jp-w and jp-s are allocated, jp-next waits (107,000 left)
        assert [p["programme_id"] for p in (await http.get(
            "/v1/pipeline", headers=FMU)).json()] == ["jp-next"]

        # a PUNO withdrew jp-w after its allocation and first tranche (107,000 each half)
        withdrawn = ProgrammeWithdrawn(programme_id="jp-w", withdrawn_by="ILO", reason="x",
                                       previous_status="approved",
                                       withdrawn_at="2026-11-28T10:00:00Z")
        await produce(s.topic(topics.PROGRAMMES), [event_record(withdrawn, source="/mptf/intake",
                                                                key="jp-w")])

        async def released() -> dict | None:
            d = (await http.get("/v1/programmes/jp-w/funding", headers=FMU)).json()
            return d if d["status"] == "withdrawn" else None

        d = await eventually(released)
        assert d["owed"] == {"IOM": "53500.00", "ILO": "53500.00"}  # tranche 1: owed back
        assert d["allocated"] == d["transferred"]
        # the 107,000 not transferred came back and funded the waiting programme
        assert (await http.get("/v1/pipeline", headers=FMU)).json() == []
        fund = (await http.get("/v1/fund", headers=FMU)).json()
        assert fund["available_usd"] == "0.00"  # 535,000 - 3 x 214,000 + 107,000

        # IOM's system reports its refund on its own topic; one it cannot owe is refused
        good = SubmitRefund(programme_id="jp-w", refund_id="aa-r-1", amount_usd=D("53500"))
        too_much = SubmitRefund(programme_id="jp-w", refund_id="aa-r-2", amount_usd=D("1"))
        await produce(inbound(s, topics.INBOUND_REFUNDS, "IOM"), [
            event_record(good, source="urn:mptf:entity:IOM", key="jp-w"),
            event_record(good, source="urn:mptf:entity:IOM", key="jp-w"),  # again: once
            event_record(too_much, source="urn:mptf:entity:IOM", key="jp-w")])
        (dead,) = await read_all(s.topic(topics.INBOUND_REFUNDS) + ".dlq", min_count=1)
        assert headers_of(dead)["dlq_reason"] == "conflict"
        d = (await http.get("/v1/programmes/jp-w/funding", headers=FMU)).json()
        assert d["owed"] == {"IOM": "0.00", "ILO": "53500.00"}
        assert d["refunded"] == {"IOM": "53500.00"}

        # suspended: no tranche until it resumes; a repeated decision changes nothing
        body = {"decision_id": "sc-sus", "rationale": "Security"}
        assert (await http.post("/v1/programmes/jp-s/suspension", headers=FMU,
                                json=body)).status_code == 201
        assert (await http.post("/v1/programmes/jp-s/suspension", headers=FMU,
                                json=body)).status_code == 200
        r = await http.post("/v1/programmes/jp-s/tranches", headers=FMU)
        assert r.status_code == 409 and r.json()["programme_status"] == "suspended"
        r = await http.post("/v1/programmes/jp-s/resumption", headers=FMU,
                            json={"decision_id": "sc-res", "rationale": "Access restored"})
        assert r.json()["status"] == "on-going"
        assert (await http.post("/v1/programmes/jp-s/tranches", headers=FMU)).status_code == 201
        # cancelled after both tranches: nothing left to release, everything owed back
        r = await http.post("/v1/programmes/jp-s/cancellation", headers=FMU,
                            json={"decision_id": "sc-can", "rationale": "Endorsement withdrawn"})
        assert r.status_code == 201 and r.json()["status"] == "cancelled"
        d = (await http.get("/v1/programmes/jp-s/funding", headers=FMU)).json()
        assert d["owed"] == {"IOM": "107000.00", "ILO": "107000.00"}
        r = await http.post("/v1/programmes/jp-s/suspension", headers=FMU,
                            json={"decision_id": "sc-late", "rationale": "x"})
        assert r.status_code == 409 and r.json()["code"] == "illegal-transition"

        facts = await read_all(s.topic(topics.FUNDING), min_count=14)
    kinds = [headers_of(f)["ce_type"].split(".", 2)[2] for f in facts]
    assert kinds.count("allocation.released.v1") == 2
    assert kinds.count("funds.refunded.v1") == 1
    assert [kinds.count(k) for k in ("programme.suspended.v1", "programme.resumed.v1",
                                     "programme.cancelled.v1")] == [1, 1, 1]
    # each as the AsyncAPI document says (the year end to end has no cancellation)
    assert asyncapi_violations(facts) == []
    (rel_w,) = [json.loads(f.value) for f in facts if json.loads(f.value).get(
        "release_id") == "rel-jp-w-withdrawn"]
    assert (rel_w["released_usd"], rel_w["owed_usd"]) == ("107000.00", "107000.00")
    assert sum(D(x["usd"]) for x in rel_w["funded_by"]) == D("107000")
