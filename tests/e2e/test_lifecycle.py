"""A Fund year, end to end: the four services as separate processes against the real broker
and Mongo server. Member States pledge and deposit; entity systems submit concept notes over
the inbound topic and people over HTTP; one fails screening; the SC approves, rejects and
defers; one allocation waits in the pipeline until a new deposit; PUNOs are notified;
programmes report, go overdue, and one closes operationally and financially with its unspent
balance refunded. At the end every service agrees, the ledger balances, every PUNO got
exactly one notification per fact, and one trace follows a programme across all four."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx

from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from tests.support import (
    FMU,
    OPERATOR,
    bearer,
    documented_fields_missing,
    event_record,
    eventually,
    free_port,
    produce,
    start_service,
    stop_all,
    unique,
    wait_ready,
)


def token(entity: str) -> dict[str, str]:
    return bearer(f"dev-{entity.lower()}")


def note(ref: str, punos: list[tuple[str, str]], countries: list[str], **kw: Any
         ) -> dict[str, Any]:
    return {**CONCEPT_NOTE_EXAMPLE, "entity_reference": ref, "title": f"Programme {ref}",
            "countries": countries, "duration_months": 6,
            "punos": [{"entity": e, "convening": i == 0, "budget_usd": b}
                      for i, (e, b) in enumerate(punos)], **kw}


def read_spans(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in folder.glob("*.spans")
            for line in f.read_text().splitlines() if line.strip()]


async def test_a_fund_year_end_to_end(tmp_path: Path) -> None:
    tag = unique("e2e")
    ports = {s: free_port() for s in ("intake", "funding", "monitoring", "notifications")}
    env = {"monitoring": {"MPTF_CLOCK_FIXED": "2028-07-01T00:00:00Z",
                          "MPTF_SCHEDULER_INTERVAL_SECONDS": "1"}}
    procs = [start_service(s, tag, p, tmp_path, **env.get(s, {})) for s, p in ports.items()]
    url = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for p in ports.values():
                await wait_ready(http, p)

            docs = {s: (await http.get(f"{u}/openapi.json")).json() for s, u in url.items()}
            checked: dict[str, list[str]] = {}  # route -> fields the docs and answers disagree on

            def documented(service: str, method: str, path: str, r: httpx.Response) -> None:
                diff = documented_fields_missing(docs[service], method, path, r.status_code,
                                                 r.json())
                if diff is not None:
                    checked[f"{service} {method} {path.split('/jp-')[0]}"] = diff

            async def get(service: str, path: str, headers: dict[str, str] = FMU,
                          **params: Any) -> Any:
                r = await http.get(url[service] + path, headers=headers, params=params)
                assert r.status_code == 200, (path, r.text)
                documented(service, "GET", path, r)
                return r.json()

            async def post(service: str, path: str, body: Any, headers: dict[str, str] = FMU,
                           expect: int = 201) -> Any:
                r = await http.post(url[service] + path, headers=headers, json=body)
                assert r.status_code == expect, (path, r.text)
                documented(service, "POST", path, r)
                return r.json()

            # Member States pledge and deposit
            for cid, who, amount in (("c-DEU-2026", "DEU", "5000000"),
                                     ("c-NOR-2026", "NOR", "1000000")):
                await post("funding", "/v1/contributions", {
                    "contribution_id": cid, "contributor": who, "contributor_name": who,
                    "currency": "USD", "amount": amount, "year": 2026})
            dep = await post("funding", "/v1/contributions/c-DEU-2026/deposits", {
                "deposit_id": "aa-1", "amount": "1010101.01", "usd_amount": "1010101.01"})
            assert dep["net_usd"] == "1000000.00"

            # concept notes: people over HTTP, entity systems over the inbound topic
            pid: dict[str, str] = {}
            for ref, who, punos, countries, extra in (
                    ("A", "IOM", [("IOM", "300000"), ("ILO", "200000")], ["PH"], {}),
                    ("C", "ILO", [("ILO", "100000"), ("IOM", "100000")], ["KE"], {}),
                    ("E", "IOM", [("IOM", "100000"), ("UNDP", "100000")], ["MA"],
                     {"duration_months": 48})):
                r = await post("intake", "/v1/concept-notes", note(ref, punos, countries,
                                                                   **extra), token(who))
                pid[ref] = r["programme_id"]
            assert r["status"] == "screened-ineligible"
            for ref, who, punos, countries in (
                    ("B", "UNDP", [("UNDP", "400000"), ("UNICEF", "100000")], ["MX"]),
                    ("D", "UNICEF", [("UNICEF", "150000"), ("UNHCR", "150000")], ["TJ"])):
                n = SubmitConceptNote.model_validate(note(ref, punos, countries))
                # each entity system on its own topic, as itself
                await produce(f"{tag}.{topics.inbound_topic(topics.INBOUND_CONCEPT_NOTES, who)}",
                              [event_record(n, source=f"urn:mptf:entity:{who}", key=ref)])

            async def listed() -> dict[str, str]:
                items = (await get("intake", "/v1/programmes"))["items"]
                return {i["entity_reference"]: i["programme_id"] for i in items
                        } if len(items) == 5 else {}

            pid.update(await eventually(listed))

            async def funding_knows() -> bool:
                rs = [await http.get(f"{url['funding']}/v1/programmes/{pid[x]}/funding",
                                     headers=FMU) for x in "ABCD"]
                return all(r.status_code == 200 for r in rs)

            await eventually(funding_knows)

            # the Steering Committee decides
            a = await post("funding", "/v1/decisions", {"programme_id": pid["A"],
                           "decision": "approve", "decision_id": "sc-1", "priority": 1})
            b = await post("funding", "/v1/decisions", {"programme_id": pid["B"],
                           "decision": "approve", "decision_id": "sc-1", "priority": 2})
            assert (a["allocated"], b["allocated"]) == (True, False)  # 465,000 < 535,000
            await post("funding", "/v1/decisions", {"programme_id": pid["C"],
                       "decision": "reject", "decision_id": "sc-1", "rationale": "Overlap"})
            await post("funding", "/v1/decisions", {"programme_id": pid["D"],
                       "decision": "defer", "decision_id": "sc-1", "rationale": "Consult"})
            r = await http.post(f"{url['funding']}/v1/decisions", headers=FMU, json={
                "programme_id": pid["E"], "decision": "approve", "decision_id": "sc-1",
                "priority": 3})
            assert r.status_code == 409  # screened ineligible: not for the SC
            assert [p["programme_id"] for p in await get("funding", "/v1/pipeline")] == [
                pid["B"]]

            # a new deposit funds the waiting programme
            dep = await post("funding", "/v1/contributions/c-NOR-2026/deposits", {
                "deposit_id": "aa-2", "amount": "80000", "usd_amount": "80000"})
            assert dep["programmes_funded"] == [pid["B"]]

            # monitoring (as of 2028-07-01) sees both on-going and every report overdue
            async def overdue_both() -> bool:
                views = [await get("monitoring", f"/v1/programmes/{pid[x]}") for x in "AB"]
                return all("report-overdue" in v["risk_flags"] for v in views)

            await eventually(overdue_both, timeout=30)

            # A's PUNOs report; the final reports close it
            reports = [("annual-narrative", 2026, []),
                       ("annual-financial", 2026, [("IOM", "200000"), ("ILO", "100000")]),
                       ("final-narrative", None, []),
                       ("final-financial", None, [("IOM", "100000"), ("ILO", "113000")])]
            for kind, year, spend in reports:
                body = {"report_id": f"A-{kind}", "programme_id": pid["A"], "kind": kind,
                        "year": year, "narrative": "" if spend else "Done.",
                        "beneficiaries": None if spend else {"total": 500},
                        "expenditure": [{"entity": e, "amount_usd": x} for e, x in spend]}
                await post("monitoring", f"/v1/programmes/{pid['A']}/reports", body,
                           token("IOM"))

            async def closed_everywhere() -> bool:
                i = await get("intake", f"/v1/programmes/{pid['A']}")
                f = await get("funding", "/v1/fund")
                return (i["status"] == "financially-closed"
                        and f["with_punos"]["refunds_usd"] == "22000.00")

            await eventually(closed_everywhere, timeout=30)

            # every service that tracks a programme agrees on its status
            expected = {"A": "financially-closed", "B": "on-going", "C": "rejected",
                        "D": "deferred", "E": "screened-ineligible"}

            async def agreed() -> bool:
                for ref, status in expected.items():
                    i = await get("intake", f"/v1/programmes/{pid[ref]}")
                    m = await get("monitoring", f"/v1/programmes/{pid[ref]}")
                    if (i["status"], m["status"]) != (status, status):
                        return False
                return True

            await eventually(agreed)
            fund = await get("funding", "/v1/fund")
            assert fund["journal"]["debits"] == fund["journal"]["credits"]
            # 1,000,000 + 79,200 - 2 x 535,000 + 22,000 refunded
            assert D(fund["available_usd"]) == D("31200.00")
            assert fund["uses"]["refunds_usd"] == "-22000.00"
            alloc = {x["programme_id"]: x for x in await get("funding", "/v1/allocations")}
            assert set(alloc) == {pid["A"], pid["B"]}
            assert {f["contributor"] for f in alloc[pid["B"]]["funded_by"]} == {"DEU", "NOR"}
            portfolio = await get("monitoring", "/v1/portfolio")
            assert portfolio["by_status"]["financially-closed"]["programmes"] == 1
            assert portfolio["beneficiaries_reached"] == 1000  # 500 in each narrative period

            # every PUNO got exactly one notification per fact
            told_ilo = {"programme.submitted.v1", "programme.screened.v1",
                        "programme.approved.v1", "allocation.made.v1", "funds.transferred.v1",
                        "report.overdue.v1", "programme.operationally-closed.v1",
                        "programme.financially-closed.v1", "funds.refunded.v1"}

            async def notified() -> list[dict[str, Any]]:
                log = await get("notifications", "/v1/deliveries", OPERATOR, limit=1000)
                types = {d["fact_type"].split(".", 2)[2] for d in log
                         if d["programme_id"] == pid["A"] and d["recipient"] == "ILO"}
                return log if types >= told_ilo else []

            log = await eventually(notified, timeout=30)
    finally:
        stop_all(procs)

    # the OpenAPI examples show the fields the real answers have
    assert len(checked) >= 10, sorted(checked)
    assert {route: diff for route, diff in checked.items() if diff} == {}

    per = Counter((d["fact_id"], d["recipient"], d["channel"]) for d in log)
    assert set(per.values()) == {1}
    overdue = [d for d in log if d["programme_id"] == pid["A"] and d["recipient"] == "ILO"
               and d["fact_type"].endswith("report.overdue.v1")]
    assert len(overdue) == 4  # each of A's four reports was late once, and told once
    for fact_id in {d["fact_id"] for d in log if d["programme_id"] == pid["A"]
                    and d["fact_type"].endswith("approved.v1")}:
        told = {d["recipient"] for d in log if d["fact_id"] == fact_id}
        assert told >= {"IOM", "ILO", "RCO-PH"}
    assert all(d["status"] == "delivered" for d in log)

    # one trace follows programme A across all four services
    spans = read_spans(tmp_path)
    mine = [s for s in spans if s["attributes"].get("mptf.programme_id") == pid["A"]]
    by_trace: dict[str, set[str]] = {}
    for s in mine:
        by_trace.setdefault(s["trace_id"], set()).add(s["service"])
    full = [t for t, services in by_trace.items() if services == {
        "mptf-intake", "mptf-funding", "mptf-monitoring", "mptf-notifications"}]
    assert full, by_trace
    names = {s["name"] for s in spans if s["trace_id"] == full[0]}
    assert {"publish org.migrationmptf.programme.screened.v1",
            "publish org.migrationmptf.programme.approved.v1",
            "publish org.migrationmptf.allocation.made.v1",
            "consume org.migrationmptf.allocation.made.v1"} <= names
