"""50 concurrent, conflicting approvals against a balance that covers only some of them,
through two funding processes in one consumer group: exactly the covered ones are allocated,
the rest wait in the pipeline, then a deposit funds the next in rank order."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from pathlib import Path

import httpx

from shared import topics
from shared.contracts.funding import AllocationMade
from shared.contracts.intake import ProgrammeScreened
from tests.support import (
    FMU,
    event_record,
    eventually,
    free_port,
    headers_of,
    produce,
    read_all,
    start_service,
    stop_all,
    unique,
    wait_ready,
)

N = 50
COST = D("107000.00")  # 2 PUNOs x 50,000 + 7% support cost


def screened(i: int) -> ProgrammeScreened:
    return ProgrammeScreened.model_validate({
        "programme_id": f"jp-{i:03}", "eligible": True,
        "screened_at": "2026-11-23T10:00:00Z",
        "programme": {"title": f"Programme {i}", "submitted_by": "IOM", "countries": ["PH"],
                      "punos": [{"entity": "IOM", "convening": True, "budget_usd": "50000"},
                                {"entity": "ILO", "budget_usd": "50000"}],
                      "total_budget_usd": "100000", "gcm_objectives": [1],
                      "primary_thematic_area": 1, "duration_months": 24}})


async def test_concurrent_approvals_across_two_instances_never_over_allocate(
        tmp_path: Path) -> None:
    tag = unique()
    ports = [free_port(), free_port()]
    procs = [start_service("funding", tag, p, tmp_path) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            for p in ports:
                await wait_ready(http, p)
            await produce(f"{tag}.{topics.PROGRAMMES}", [
                event_record(screened(i), source="/mptf/intake", key=f"jp-{i:03}")
                for i in range(N)])

            async def all_known() -> bool:  # the two instances share the group's partitions
                rs = await asyncio.gather(*(
                    http.get(f"{urls[i % 2]}/v1/programmes/jp-{i:03}/funding", headers=FMU)
                    for i in range(N)))
                return all(r.status_code == 200 for r in rs)

            await eventually(all_known, timeout=30)

            r = await http.post(f"{urls[0]}/v1/contributions", headers=FMU, json={
                "contribution_id": "c-DEU-1", "contributor": "DEU",
                "contributor_name": "Germany", "currency": "USD", "amount": "5000000",
                "year": 2026})
            assert r.status_code == 201, r.text
            r = await http.post(f"{urls[1]}/v1/contributions/c-DEU-1/deposits", headers=FMU,
                                json={"deposit_id": "d1", "amount": "1010101.01",
                                      "usd_amount": "1010101.01"})
            assert r.json()["net_usd"] == "1000000.00"  # covers 9 programmes, not 10

            # 50 approvals at once, alternating between the two instances; priority = rank
            order = list(range(N))
            rs = await asyncio.gather(*(
                http.post(f"{urls[i % 2]}/v1/decisions", headers=FMU, json={
                    "programme_id": f"jp-{i:03}", "decision": "approve",
                    "decision_id": "sc-2026-11", "priority": i + 1})
                for i in order))
            assert [r.status_code for r in rs] == [201] * N, [r.text for r in rs if
                                                              r.status_code != 201][:3]
            allocated_now = sorted(r.json()["programme_id"] for r in rs if r.json()["allocated"])
            assert len(allocated_now) == 9

            fund = (await http.get(f"{urls[0]}/v1/fund", headers=FMU)).json()
            assert D(fund["available_usd"]) == D("1000000.00") - 9 * COST == D("37000.00")
            assert D(fund["allocated_usd"]) == 9 * COST
            allocations = (await http.get(f"{urls[1]}/v1/allocations", headers=FMU)).json()
            assert sorted(a["programme_id"] for a in allocations) == allocated_now
            pipeline = (await http.get(f"{urls[1]}/v1/pipeline", headers=FMU)).json()
            assert len(pipeline) == N - 9
            assert [p["priority"] for p in pipeline] == sorted(p["priority"] for p in pipeline)

            # a deposit that makes 214,000 available funds exactly the next two, in rank order
            r = await http.post(f"{urls[0]}/v1/contributions/c-DEU-1/deposits", headers=FMU,
                                json={"deposit_id": "d2", "amount": "178787.88",
                                      "usd_amount": "178787.88"})
            assert r.json()["net_usd"] == "177000.00"
            assert r.json()["programmes_funded"] == [pipeline[0]["programme_id"],
                                                     pipeline[1]["programme_id"]]
            fund = (await http.get(f"{urls[1]}/v1/fund", headers=FMU)).json()
            assert D(fund["available_usd"]) == D("0.00")
            assert fund["journal"]["debits"] == fund["journal"]["credits"]
            assert D(fund["with_punos"]["transfers_usd"]) == 11 * COST

        # both instances relayed; each allocation appears once (consumers dedupe by id anyway)
        facts = await read_all(f"{tag}.{topics.FUNDING}", min_count=11 + 22 + N)
        made = [json.loads(f.value)["programme_id"] for f in facts
                if headers_of(f)["ce_type"] == AllocationMade.TYPE]
        assert sorted(set(made)) == sorted([*allocated_now, pipeline[0]["programme_id"],
                                            pipeline[1]["programme_id"]])
        ids = [headers_of(f)["ce_id"] for f in facts
               if headers_of(f)["ce_type"] == AllocationMade.TYPE]
        assert len(set(ids)) == 11
    finally:
        stop_all(procs)
