"""Funding over HTTP against the real broker and store: roles, funders' own data, bad input
answered with problem+json and nothing changed, the journal as of a moment, tranches and
refunds, and intake's facts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from shared import topics
from shared.contracts.intake import ProgrammeScreened, ProgrammeWithdrawn
from tests.integration.conftest import running
from tests.support import (
    DEU,
    FMU,
    IOM,
    OPERATOR,
    UNDP,
    event_record,
    eventually,
    isolated,
    pledge_and_deposit,
    produce,
)


def screened(pid: str, eligible: bool = True, punos: tuple[str, ...] = ("IOM", "ILO")
             ) -> ProgrammeScreened:
    return ProgrammeScreened.model_validate({
        "programme_id": pid, "eligible": eligible, "screened_at": "2026-11-23T10:00:00Z",
        "reasons": [] if eligible else [{"code": "duration.over-maximum", "message": "x"}],
        "programme": {"title": pid, "submitted_by": punos[0], "countries": ["MX", "CL"],
                      "punos": [{"entity": e, "convening": i == 0, "budget_usd": "100000"}
                                for i, e in enumerate(punos)],
                      "total_budget_usd": str(100000 * len(punos)), "gcm_objectives": [5],
                      "primary_thematic_area": 4, "duration_months": 24}})


async def setup(http: Any, rt: Any, settings: FundingSettings, *facts: Any) -> None:
    await produce(settings.topic(topics.PROGRAMMES), [
        event_record(f, source="/mptf/intake", key=f.programme_id) for f in facts])

    async def known() -> bool:
        return await rt.store.db.programmes.count_documents({}) == len(facts)

    await eventually(known)


async def test_funders_see_their_own_data_and_entities_cannot_decide() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-a"), screened("jp-b", punos=("UNDP", "UNICEF")))
        await pledge_and_deposit(http, "c-NOR", "NOR", "300000")
        r = await http.post("/v1/decisions", headers=IOM, json={
            "programme_id": "jp-a", "decision": "approve", "decision_id": "sc-1",
            "priority": 1})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert (await http.post("/v1/decisions", headers=FMU, json={
            "programme_id": "jp-a", "decision": "approve", "decision_id": "sc-1",
            "priority": 1})).json()["allocated"] is True  # funded by Norway's deposit
        await pledge_and_deposit(http, "c-DEU", "DEU", "500000")
        assert (await http.post("/v1/decisions", headers=FMU, json={
            "programme_id": "jp-b", "decision": "approve", "decision_id": "sc-1",
            "priority": 2})).json()["allocated"] is True  # Norway's rest, then Germany's

        mine = (await http.get("/v1/contributions", headers=DEU)).json()
        assert [c["contribution_id"] for c in mine] == ["c-DEU"]
        funded = (await http.get("/v1/allocations", headers=DEU)).json()
        assert [a["programme_id"] for a in funded] == ["jp-b"]
        shares = {f["contributor"]: f["usd"] for f in funded[0]["funded_by"]}
        # jp-a took 214,000 of Norway's 297,000 net; jp-b took Norway's last 83,000
        assert shares == {"NOR": "83000.00", "DEU": "131000.00"}
        r = await http.get("/v1/programmes/jp-a/funding", headers=DEU)
        assert r.status_code == 404  # not funded by Germany: not Germany's to see
        assert (await http.get("/v1/programmes/jp-a/funding", headers=IOM)).status_code == 200
        assert (await http.get("/v1/programmes/jp-a/funding", headers=UNDP)).status_code == 404
        assert (await http.get("/v1/contributions", headers=IOM)).status_code == 403
        assert (await http.get("/v1/allocations", headers=UNDP)).json()[0][
            "programme_id"] == "jp-b"


async def test_refunded_money_funds_the_next_programme_in_its_contributors_names() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-a"), screened("jp-b"))
        await pledge_and_deposit(http, "c-NOR", "NOR", "150000")  # 148,500 net
        await pledge_and_deposit(http, "c-DEU", "DEU", "100000")  # 99,000 net
        for i, pid in enumerate(("jp-a", "jp-b"), 1):
            await http.post("/v1/decisions", headers=FMU, json={
                "programme_id": pid, "decision": "approve", "decision_id": "sc", "priority": i})
        # jp-a took Norway's 148,500 and 65,500 of Germany's; jp-b waits for 214,000
        assert [p["programme_id"] for p in (await http.get(
            "/v1/pipeline", headers=FMU)).json()] == ["jp-b"]
        for rid, who, usd in (("r-1", "IOM", "107000.00"), ("r-2", "ILO", "73500.00")):
            r = await http.post("/v1/programmes/jp-a/refunds", headers=FMU, json={
                "refund_id": rid, "entity": who, "amount_usd": usd})
            assert r.status_code == 201, r.text
        assert (await http.get("/v1/pipeline", headers=FMU)).json() == []  # funded now

        funded = (await http.get("/v1/allocations", headers=DEU)).json()
        assert sorted(a["programme_id"] for a in funded) == ["jp-a", "jp-b"]
        b = next(a for a in funded if a["programme_id"] == "jp-b")
        shares: dict[str, D] = {}
        for f in b["funded_by"]:
            shares[f["contribution_id"]] = shares.get(f["contribution_id"], D(0)) + D(f["usd"])
        # Germany's last 33,500, then the refunds split as jp-a was funded (148.5 : 65.5):
        # 107,000 -> 74,250 + 32,750; 73,500 -> 51,003.51 + 22,496.49 (the odd cent to Norway)
        assert shares == {"c-DEU": D("33500") + D("32750") + D("22496.49"),
                          "c-NOR": D("74250") + D("51003.51")}
        assert sum(shares.values()) == D("214000")
        fund = (await http.get("/v1/fund", headers=OPERATOR)).json()
        assert fund["available_usd"] == "0.00"
        left = [x["remaining"].to_decimal() async for x in rt.store.db.sources.find()]
        assert sum(left) == 0  # every source drawn: the sources still sum to the balance


async def test_bad_input_is_answered_and_changes_nothing() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-ok"), screened("jp-no", eligible=False))
        await pledge_and_deposit(http, "c-1", "ESP", "1000000")
        before = (await rt.store.fund(), len(await rt.store.outbox_events()))

        async def expect(status: int, method: str, url: str, body: Any) -> dict[str, Any]:
            r = await http.request(method, url, headers=FMU, json=body)
            assert r.status_code == status, (url, body, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            return r.json()

        approve = {"programme_id": "jp-ok", "decision": "approve", "decision_id": "sc",
                   "priority": 1}
        await expect(404, "POST", "/v1/decisions", {**approve, "programme_id": "jp-unknown"})
        await expect(409, "POST", "/v1/decisions", {**approve, "programme_id": "jp-no"})
        e = await expect(422, "POST", "/v1/decisions", {**approve, "approved_budget": [
            {"entity": "IOM", "budget_usd": "2000000"},
            {"entity": "ILO", "budget_usd": "1000000.01"}]})
        assert "ceiling" in e["errors"][0]["reason"]
        await expect(422, "POST", "/v1/decisions", {**approve, "approved_budget": [
            {"entity": "IOM", "budget_usd": "100"}, {"entity": "WFP", "budget_usd": "100"}]})
        await expect(422, "POST", "/v1/decisions", {**approve, "priority": None})
        await expect(422, "POST", "/v1/decisions", {**approve, "decision": "reject",
                                                    "priority": None})  # no rationale
        for amount in ("-5", "NaN", "Infinity", "1e400", 0.1 + 0.2, "12.345"):
            await expect(422, "POST", "/v1/contributions/c-1/deposits",
                         {"deposit_id": "x", "amount": amount, "usd_amount": "1"})
        e = await expect(422, "POST", "/v1/contributions", {
            "contribution_id": "c-2", "contributor": "FRA", "contributor_name": "France",
            "currency": "XYZ", "amount": "10", "year": 2026})
        assert e["errors"][0]["field"] == "currency"
        await expect(409, "POST", "/v1/contributions/c-1/deposits",
                     {"deposit_id": "big", "amount": "1", "usd_amount": "1"})  # pledge spent
        await expect(404, "POST", "/v1/contributions/c-none/deposits",
                     {"deposit_id": "x", "amount": "1", "usd_amount": "1"})
        assert (await rt.store.fund(), len(await rt.store.outbox_events())) == before

        r = await http.post("/v1/decisions", headers=FMU, json=approve)
        assert r.status_code == 201
        e = await expect(409, "POST", "/v1/decisions", approve)  # a duplicate decision
        # it was approved and allocated at once: the SC cannot decide on it again
        assert e["code"] == "illegal-transition" and e["programme_status"] == "on-going"
        assert "decide" not in e["allowed"] and "suspend" in e["allowed"]
        await expect(409, "POST", "/v1/programmes/jp-ok/refunds",
                     {"refund_id": "r1", "entity": "IOM", "amount_usd": "999999"})
        r = await http.get("/v1/fund", params={"as_of": "2026-01-01T00:00:00"}, headers=FMU)
        assert r.status_code == 400


async def test_tranches_refunds_and_the_fund_as_of_a_moment() -> None:
    s = isolated(FundingSettings, transfer_tranches=[D("0.5"), D("0.5")])
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-t"), screened("jp-w"))
        await pledge_and_deposit(http, "c-GBR", "GBR", "250000")
        r = await http.post("/v1/decisions", headers=FMU, json={
            "programme_id": "jp-t", "decision": "approve", "decision_id": "sc", "priority": 1})
        assert r.json()["allocated"] is True
        await asyncio.sleep(0.05)
        moment = datetime.now(UTC)
        await asyncio.sleep(0.05)
        assert (await http.post("/v1/programmes/jp-t/tranches", headers=FMU)).json()[
            "tranche"] == 2
        r = await http.post("/v1/programmes/jp-t/tranches", headers=FMU)
        assert r.status_code == 409
        r = await http.post("/v1/programmes/jp-t/refunds", headers=FMU, json={
            "refund_id": "r-1", "entity": "IOM", "amount_usd": "250.00"})
        assert r.status_code == 201
        r = await http.post("/v1/programmes/jp-t/refunds", headers=FMU, json={
            "refund_id": "r-1", "entity": "IOM", "amount_usd": "250.00"})
        assert r.status_code == 200 and r.json()["status"] == "already-booked"

        now = (await http.get("/v1/fund", headers=OPERATOR)).json()
        assert now["with_punos"] == {"transfers_usd": "214000.00", "refunds_usd": "250.00",
                                     "net_funded_usd": "213750.00"}
        assert now["by_puno"]["IOM"]["net_funded"] == "106750.00"
        assert now["by_country"]["MX"]["allocated"] == "214000.00"
        assert now["by_thematic_area"]["4"]["transferred"] == "214000.00"
        assert now["targets"]["2024"]["target_usd"] == "25000000.00"
        then = (await http.get("/v1/fund", params={"as_of": moment.isoformat()},
                               headers=OPERATOR)).json()
        assert then["with_punos"]["transfers_usd"] == "107000.00"  # only the first tranche
        assert then["uses"]["refunds_usd"] == "0.00"
        assert then["available_usd"] == str(D("247500.00") - D("214000.00"))

        # a withdrawn programme leaves the pipeline
        assert (await http.post("/v1/decisions", headers=FMU, json={
            "programme_id": "jp-w", "decision": "approve", "decision_id": "sc",
            "priority": 2})).json()["allocated"] is False
        w = ProgrammeWithdrawn(programme_id="jp-w", withdrawn_by="IOM", reason="x",
                               previous_status="approved", withdrawn_at=datetime.now(UTC))
        await produce(s.topic(topics.PROGRAMMES), [event_record(w, source="/mptf/intake",
                                                                key="jp-w")])

        async def gone() -> bool:
            return (await http.get("/v1/pipeline", headers=FMU)).json() == []

        await eventually(gone)


async def test_a_meeting_decides_many_at_once_and_funds_the_pipeline_once() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, *(screened(f"jp-m{i}") for i in range(1, 5)),
                    screened("jp-m5", eligible=False))
        await pledge_and_deposit(http, "c-NLD", "NLD", "500000")  # 495,000 net: two fit
        decisions = [{"programme_id": f"jp-m{i}", "decision": "approve", "decision_id": "sc7",
                      "priority": i} for i in (1, 2, 3)] + [
            {"programme_id": "jp-m4", "decision": "reject", "decision_id": "sc7",
             "rationale": "outside the Fund's thematic priorities"},
            {"programme_id": "jp-m5", "decision": "approve", "decision_id": "sc7",
             "priority": 4},
            {"programme_id": "jp-nobody", "decision": "defer", "decision_id": "sc7",
             "rationale": "later"}]
        r = await http.post("/v1/meetings", headers=FMU,
                            json={"meeting_id": "sc7", "decisions": decisions})
        assert r.status_code == 201, r.text
        body = r.json()
        got = {x["programme_id"]: (x["status"], x["allocated"], x.get("problem", {}).get(
            "status")) for x in body["results"]}
        assert got == {"jp-m1": ("approved", True, None), "jp-m2": ("approved", True, None),
                       "jp-m3": ("approved", False, None), "jp-m4": ("rejected", False, None),
                       "jp-m5": ("refused", False, 409), "jp-nobody": ("refused", False, 404)}
        assert body["programmes_funded"] == ["jp-m1", "jp-m2"]
        fund = (await http.get("/v1/fund", headers=OPERATOR)).json()
        assert fund["available_usd"] == "67000.00"  # 495,000 - 2 x 214,000
        assert [p["programme_id"] for p in (await http.get(
            "/v1/pipeline", headers=FMU)).json()] == ["jp-m3"]
        facts = [e["type"].rsplit(".", 2)[-2] for e in await rt.store.outbox_events()
                 if e["topic"] == topics.FUNDING]  # (some are on mptf.funders as well)
        assert facts.count("approved") == 3 and facts.count("rejected") == 1
        assert facts.count("made") == 2 and facts.count("transferred") == 4

        # the same meeting again: every decision is refused, nothing changes
        again = await http.post("/v1/meetings", headers=FMU,
                                json={"meeting_id": "sc7", "decisions": decisions})
        assert {x["status"] for x in again.json()["results"]} == {"refused"}
        assert (await http.get("/v1/fund", headers=OPERATOR)).json() == fund

        # a meeting that names a programme twice is not a meeting: 422, nothing decided
        r = await http.post("/v1/meetings", headers=FMU, json={
            "meeting_id": "sc8", "decisions": [decisions[2], decisions[2]]})
        assert r.status_code == 422 and r.headers["content-type"].startswith(
            "application/problem+json")
        r = await http.post("/v1/meetings", headers=IOM, json={
            "meeting_id": "sc9", "decisions": decisions[:1]})
        assert r.status_code == 403
