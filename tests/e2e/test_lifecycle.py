"""A Fund year, end to end: the four services as separate processes against the real broker
and Mongo server. Member States pledge and deposit; entity systems submit concept notes over
the inbound topic and people over HTTP; one fails screening; the SC approves, rejects and
defers; one allocation waits in the pipeline until a new deposit; PUNOs are notified.
Programme A then goes through what real programmes go through: a no-cost extension, a
top-up that waits for money, a suspension (no tranche while suspended) and its resumption;
it reports, goes overdue, closes operationally, and closes financially once its unspent
balances above the threshold are received as refunds. Programme F is withdrawn after its
allocation: what was not transferred returns to the Fund, what was is owed back and then
refunded. At the end every service agrees on every programme's state and money, the ledger
balances, every PUNO got exactly one notification per fact, contributors were told without
registering, and one trace follows a programme across all four."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from typer.testing import CliRunner

from mptf_cli import kafka_tools
from mptf_cli.main import app as cli
from shared import kafka_acl, topics
from shared.contracts import REGISTRY
from shared.contracts.funding import SubmitRefund
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from tests.support import (
    FMU,
    OPERATOR,
    TEST_ENTITIES,
    all_pages,
    asyncapi_violations,
    bearer,
    documented_fields_missing,
    event_record,
    eventually,
    free_port,
    headers_of,
    kafka_auth,
    produce,
    read_to_end,
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


async def settled(tag: str) -> None:
    """Every consumer of the deployment has read everything, and nothing waits to be
    published: the live read models hold every fact (twice in a row, a second apart)."""
    from motor.motor_asyncio import AsyncIOMotorClient

    mongo = AsyncIOMotorClient(os.environ["MONGODB_URL"], tz_aware=True)
    quiet = 0

    async def still() -> bool:
        nonlocal quiet
        lag = sum(r["lag"] for r in await kafka_tools.consumer_lag(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"], f"{tag}.mptf-", auth=kafka_auth()))
        pending = [await mongo[f"{tag}_{s}"].outbox.count_documents({"sent_at": None})
                   for s in ("intake", "funding", "monitoring", "notifications")]
        quiet = quiet + 1 if lag == 0 and not any(pending) else 0
        return quiet >= 2

    await eventually(still, timeout=60, every=1)
    mongo.close()


async def retention_passed(tag: str) -> None:
    """What retention removes, removed: every inbound topic's records (the broker's
    DeleteRecords, as retention moves a log's start) and every published outbox document."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
    from motor.motor_asyncio import AsyncIOMotorClient

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    names = [t for t in kafka_acl.topics_of(f"{tag}.", TEST_ENTITIES)
             if topics.inbound_sender(t) is not None]
    # subscribed without a group, a consumer is assigned every partition of its topics
    probe = AIOKafkaConsumer(*names, bootstrap_servers=bootstrap, group_id=None, **kafka_auth())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_auth())
    await probe.start()
    await admin.start()
    try:
        tps = sorted(probe.assignment())
        assert {tp.topic for tp in tps} == set(names)
        end = await probe.end_offsets(tps)
        await admin.delete_records({tp: RecordsToDelete(end[tp]) for tp in tps if end[tp]})
        start = await probe.beginning_offsets(tps)
        assert start == end and sum(end.values()) > 0  # the commands are gone
    finally:
        await admin.close()
        await probe.stop()
    mongo = AsyncIOMotorClient(os.environ["MONGODB_URL"], tz_aware=True)
    for s in ("intake", "funding", "monitoring", "notifications"):
        await mongo[f"{tag}_{s}"].outbox.delete_many({"sent_at": {"$ne": None}})
    mongo.close()


async def read_from_first(topic: str, funder: str, group: str) -> list[tuple[str, str]]:
    """(type, key) of every record of `topic`, read by `funder`'s principal in a new
    consumer group from the first offset, which must be 0: nothing was ever removed."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         group_id=group, auto_offset_reset="earliest",
                         enable_auto_commit=False, **kafka_auth(f"funder-{funder}"))
    await c.start()
    out: list[tuple[int, int, str, str]] = []
    try:
        while not c.assignment():
            await c.getmany(timeout_ms=200)
        parts = list(c.assignment())
        assert set((await c.beginning_offsets(parts)).values()) == {0}
        end = await c.end_offsets(parts)
        while [tp for tp in parts if await c.position(tp) < end[tp]]:
            for recs in (await c.getmany(timeout_ms=500)).values():
                out += [(r.partition, r.offset, headers_of(r)["ce_type"],
                         (r.key or b"").decode()) for r in recs]
    finally:
        await c.stop()
    return [(t, k) for *_, t, k in sorted(out)]  # each key's records in their order


def read_spans(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in folder.glob("*.spans")
            for line in f.read_text().splitlines() if line.strip()]


async def test_a_fund_year_end_to_end(tmp_path: Path) -> None:
    tag = unique("e2e")
    ports = {s: free_port() for s in ("intake", "funding", "monitoring", "notifications")}
    env = {"monitoring": {"MPTF_CLOCK_FIXED": "2028-07-01T00:00:00Z",
                          "MPTF_SCHEDULER_INTERVAL_SECONDS": "1"},
           "funding": {"MPTF_TRANSFER_TRANCHES": '["0.5", "0.5"]'}}
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
                          expect: int = 200, **params: Any) -> Any:
                r = await http.get(url[service] + path, headers=headers, params=params)
                assert r.status_code == expect, (path, r.text)
                if expect != 200:
                    return None
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
            await asyncio.sleep(0.05)
            b_waits = datetime.now(UTC)  # asked again later, as of this moment
            await asyncio.sleep(0.05)

            # a new deposit funds the waiting programme
            dep = await post("funding", "/v1/contributions/c-NOR-2026/deposits", {
                "deposit_id": "aa-2", "amount": "80000", "usd_amount": "80000"})
            assert dep["programmes_funded"] == [pid["B"]]

            # A's life after approval: a no-cost extension, a top-up that waits for money
            ext = await post("funding", f"/v1/programmes/{pid['A']}/extensions", {
                "decision_id": "sc-2-ext", "months": 6, "rationale": "Elections"})
            assert ext["duration_months"] == 12
            r = await http.post(f"{url['funding']}/v1/programmes/{pid['A']}/extensions",
                                headers=FMU, json={"decision_id": "sc-2-ext2", "months": 7})
            assert r.status_code == 409  # 13 months in all: over the Fund's limit of 12
            top = await post("funding", f"/v1/programmes/{pid['A']}/budget-revisions", {
                "decision_id": "sc-2-top", "rationale": "Two more provinces",
                "approved_budget": [{"entity": "IOM", "budget_usd": "320000"}]})
            assert top["programmes_funded"] == []  # 21,400 > the 9,200 available
            dep = await post("funding", "/v1/contributions/c-DEU-2026/deposits", {
                "deposit_id": "aa-3", "amount": "60606.06", "usd_amount": "60606.06"})
            assert dep["programmes_funded"] == [pid["A"]]  # net 60,000: the top-up is paid
            # suspended: no tranche until it resumes
            await post("funding", f"/v1/programmes/{pid['A']}/suspension", {
                "decision_id": "sc-3-sus", "rationale": "Security situation"})
            r = await http.post(f"{url['funding']}/v1/programmes/{pid['A']}/tranches",
                                headers=FMU)
            assert r.status_code == 409 and r.json()["programme_status"] == "suspended"

            async def suspended_everywhere() -> bool:
                i = await get("intake", f"/v1/programmes/{pid['A']}")
                m = await get("monitoring", f"/v1/programmes/{pid['A']}")
                return i["status"] == m["status"] == "suspended"

            await eventually(suspended_everywhere)
            await asyncio.sleep(0.05)
            a_suspended = datetime.now(UTC)
            await asyncio.sleep(0.05)
            await post("funding", f"/v1/programmes/{pid['A']}/resumption", {
                "decision_id": "sc-4-res", "rationale": "Access restored"})
            assert (await post("funding", f"/v1/programmes/{pid['A']}/tranches", {}))[
                "tranche"] == 2

            # F is withdrawn by a PUNO after its allocation and first tranche
            f_note = note("F", [("IOM", "10000"), ("ILO", "10000")], ["PH"])
            pid["F"] = (await post("intake", "/v1/concept-notes", f_note, token("IOM")))[
                "programme_id"]

            async def funding_knows_f() -> bool:
                r = await http.get(f"{url['funding']}/v1/programmes/{pid['F']}/funding",
                                   headers=FMU)
                return r.status_code == 200

            await eventually(funding_knows_f)
            f = await post("funding", "/v1/decisions", {"programme_id": pid["F"],
                           "decision": "approve", "decision_id": "sc-5", "priority": 1})
            assert f["allocated"] is True  # 21,400 of the 38,600 available

            async def intake_sees_funded() -> bool:
                i = await get("intake", f"/v1/programmes/{pid['F']}")
                return i["status"] == "on-going"

            await eventually(intake_sees_funded)
            await post("intake", f"/v1/programmes/{pid['F']}/withdraw",
                       {"reason": "The government withdrew its endorsement"}, token("ILO"),
                       expect=200)

            async def released() -> dict[str, Any] | None:
                d = await get("funding", f"/v1/programmes/{pid['F']}/funding")
                return d if d["status"] == "withdrawn" and d["owed"] else None

            fd = await eventually(released)
            assert fd["owed"] == {"IOM": "5350.00", "ILO": "5350.00"}  # tranche 1, owed back
            assert fd["allocated"] == fd["transferred"]  # the rest went back to the Fund
            await post("funding", f"/v1/programmes/{pid['F']}/refunds", {
                "refund_id": "r-F-IOM", "entity": "IOM", "amount_usd": "5350"})

            # monitoring (as of 2028-07-01) sees both on-going and every report overdue
            async def overdue_both() -> bool:
                views = [await get("monitoring", f"/v1/programmes/{pid[x]}") for x in "AB"]
                return all("report-overdue" in v["risk_flags"] for v in views)

            await eventually(overdue_both, timeout=30)

            # A's PUNOs report; the final reports close it
            reports = [("annual-narrative", 2026, []),
                       ("annual-financial", 2026, [("IOM", "200000"), ("ILO", "100000")]),
                       ("final-narrative", None, []),
                       ("final-financial", None, [("IOM", "120000"), ("ILO", "113000")])]
            for kind, year, spend in reports:
                body = {"report_id": f"A-{kind}", "programme_id": pid["A"], "kind": kind,
                        "year": year, "narrative": "" if spend else "Done.",
                        "beneficiaries": None if spend else {"total": 500},
                        "expenditure": [{"entity": e, "amount_usd": x} for e, x in spend]}
                await post("monitoring", f"/v1/programmes/{pid['A']}/reports", body,
                           token("IOM"))

            # operationally closed; financially only once the refunds due are received
            async def refunds_due() -> dict[str, Any] | None:
                m = await get("monitoring", f"/v1/programmes/{pid['A']}")
                return m["refunds_due"] if m["status"] == "operationally-closed" and m[
                    "refunds_due"] else None

            # IOM: 342,400 transferred (with the top-up), 320,000 spent; ILO 214,000, 213,000
            assert await eventually(refunds_due, timeout=30) == {"IOM": "22400.00",
                                                                  "ILO": "1000.00"}
            # IOM's system reports its refund on its own topic; the FMU books ILO's
            refund = SubmitRefund(programme_id=pid["A"], refund_id="r-A-IOM",
                                  amount_usd=D("22400"))
            await produce(f"{tag}.{topics.inbound_topic(topics.INBOUND_REFUNDS, 'IOM')}",
                          [event_record(refund, source="urn:mptf:entity:IOM", key=pid["A"])])
            await post("funding", f"/v1/programmes/{pid['A']}/refunds", {
                "refund_id": "r-A-ILO", "entity": "ILO", "amount_usd": "1000"})

            async def closed_everywhere() -> bool:
                i = await get("intake", f"/v1/programmes/{pid['A']}")
                f = await get("funding", "/v1/fund")
                return (i["status"] == "financially-closed"
                        and f["with_punos"]["refunds_usd"] == "28750.00")

            await eventually(closed_everywhere, timeout=30)

            # every service that tracks a programme agrees on its status and its money
            expected = {"A": "financially-closed", "B": "on-going", "C": "rejected",
                        "D": "deferred", "E": "screened-ineligible", "F": "withdrawn"}

            async def agreed() -> bool:
                for ref, status in expected.items():
                    i = await get("intake", f"/v1/programmes/{pid[ref]}")
                    m = await get("monitoring", f"/v1/programmes/{pid[ref]}")
                    f = await http.get(f"{url['funding']}/v1/programmes/{pid[ref]}/funding",
                                       headers=FMU)
                    states = {i["status"], m["status"]}
                    if f.status_code == 200:
                        fj = f.json()
                        states.add(fj["status"])
                        money = ("allocated", "transferred", "refunded", "owed")
                        if {k: fj[k] for k in money} != {k: m[k] for k in money}:
                            return False
                    if states != {status}:
                        return False
                return True

            await eventually(agreed)
            # as of earlier moments, every service answers what it said then
            then = {"as_of": a_suspended.isoformat()}
            assert (await get("intake", f"/v1/programmes/{pid['A']}", **then))["status"] == \
                (await get("funding", f"/v1/programmes/{pid['A']}/funding", **then))[
                    "status"] == (await get("monitoring", f"/v1/programmes/{pid['A']}",
                                            **then))["status"] == "suspended"
            assert (await get("monitoring", "/v1/portfolio", **then))["by_status"][
                "suspended"]["programmes"] == 1
            assert [p["programme_id"] for p in await get(
                "funding", "/v1/pipeline", as_of=b_waits.isoformat())] == [pid["B"]]
            assert (await get("intake", f"/v1/programmes/{pid['F']}",
                              as_of=b_waits.isoformat(), expect=404)) is None  # not yet
            fund = await get("funding", "/v1/fund")
            assert fund["journal"]["debits"] == fund["journal"]["credits"]
            # deposits net 1,000,000 + 79,200 + 60,000; allocated A 535,000 + top-up 21,400,
            # B 535,000, F 21,400 of which 10,700 released; refunds 23,400 + 5,350
            assert D(fund["available_usd"]) == D("1139200") - D("1112800") + D("10700") + D(
                "28750")
            assert fund["uses"]["refunds_usd"] == "-28750.00"
            alloc = {x["programme_id"]: x for x in await get("funding", "/v1/allocations")}
            assert set(alloc) == {pid["A"], pid["B"], pid["F"]}
            assert {f["contributor"] for f in alloc[pid["B"]]["funded_by"]} == {"DEU", "NOR"}
            # open data: A's revised budget beside its original; F withdrawn (IATI status 5)
            from xml.etree import ElementTree as ET

            xml = ET.fromstring((await http.get(f"{url['monitoring']}/v1/export/iati")).content)
            acts = {a.findtext("iati-identifier").rsplit("-MIG00", 1)[1].lstrip("-"): a
                    for a in xml.findall("iati-activity")}
            # the Fund's own activity (identifier ...-MIG00) with every pledge and deposit
            assert {t.find("transaction-type").get("code")
                    for t in acts[""].findall("transaction")} == {"13", "1"}
            assert sorted(b.get("type") for b in acts[pid["A"]].findall("budget")) == ["1", "2"]
            assert acts[pid["A"]].find("activity-status").get("code") == "4"
            assert acts[pid["F"]].find("activity-status").get("code") == "5"
            portfolio = await get("monitoring", "/v1/portfolio")
            assert portfolio["by_status"]["financially-closed"]["programmes"] == 1
            assert portfolio["beneficiaries_reached"] == 1000  # 500 in each narrative period

            # every PUNO got exactly one notification per fact
            told_ilo = {"programme.submitted.v1", "programme.screened.v1",
                        "programme.approved.v1", "allocation.made.v1", "funds.transferred.v1",
                        "programme.extended.v1", "budget.revised.v1",
                        "programme.suspended.v1", "programme.resumed.v1",
                        "report.overdue.v1", "programme.operationally-closed.v1",
                        "programme.financially-closed.v1", "funds.refunded.v1"}

            async def notified() -> list[dict[str, Any]]:
                log = await all_pages(http, f"{url['notifications']}/v1/deliveries",
                                      headers=OPERATOR, params={"limit": 1000})
                types = {d["fact_type"].split(".", 2)[2] for d in log
                         if d["programme_id"] == pid["A"] and d["recipient"] == "ILO"}
                return log if types >= told_ilo else []

            log = await eventually(notified, timeout=30)
            await settled(tag)
    finally:
        stop_all(procs)

    # the log is the Fund's memory: once the retention of everything else has passed (the
    # commands on inbound topics gone, published outboxes expired), a funder's new consumer
    # group reads the Fund's facts from the first one, and every service that keeps lifecycle
    # state is rebuilt from the fact topics alone into read models equal to the live ones
    await retention_passed(tag)
    funders = await read_from_first(f"{tag}.{topics.FUNDERS}", "DEU", f"{tag}.funder-DEU.new")
    moved = {"A": {"funds.transferred.v1", "budget.revised.v1", "programme.suspended.v1",
                   "programme.resumed.v1", "funds.refunded.v1"},
             "F": {"funds.transferred.v1", "allocation.released.v1", "funds.refunded.v1"}}
    for p, expected in moved.items():
        seen = [t.split(".", 2)[2] for t, k in funders if k == pid[p]]
        assert seen[0] == "allocation.made.v1" and expected <= set(seen), (p, seen)
    # every fact the year published is what the AsyncAPI document says it is: its payload
    # and headers, as an AsyncAPI validator reading the topics would check them (the
    # document's own examples are checked apart: tests/contract)
    published = [r for t in topics.FACTS for r in await read_to_end(f"{tag}.{t}")]
    assert asyncapi_violations(published) == []
    kinds = {headers_of(r)["ce_type"] for r in published}
    untold = {c.type for c in REGISTRY.values() if not c.inbound} - kinds
    # every fact type the Fund publishes, but those this year's story has no occasion for
    # (every delivery succeeds at once, nobody reads an inbox notice, nothing is cancelled;
    # those are checked where they are told: test_funding_changes, test_notifications)
    assert untold == {f"org.migrationmptf.{t}.v1" for t in (
        "notification.failed", "notification.read", "notification.requeued",
        "notification.retrying", "programme.cancelled")}, sorted(untold)
    # (and the check finds what is wrong: a real record with its programme id a number and
    # its time not a date-time)
    real = next(r for r in published if headers_of(r)["ce_type"].endswith("allocation.made.v1"))
    broken = SimpleNamespace(
        value=json.dumps({**json.loads(real.value), "programme_id": 7}).encode(),
        headers=[(k, b"yesterday" if k == "ce_time" else v) for k, v in real.headers])
    found = asyncapi_violations([broken])
    assert any("payload /programme_id" in v for v in found), found
    assert any("headers /ce_time" in v for v in found), found

    for service in ("intake", "funding", "monitoring", "notifications"):
        out = await asyncio.to_thread(CliRunner().invoke, cli, ["rebuild", service, "--compare"],
                                      env={"MPTF_TOPIC_PREFIX": f"{tag}.", "COLUMNS": "200",
                                           "MPTF_MONGODB_DATABASE": f"{tag}_{service}"})
        assert out.exit_code == 0, out.output
        assert "the same as the live read models" in out.output

    # the OpenAPI examples show the fields the real answers have
    assert len(checked) >= 10, sorted(checked)
    assert {route: diff for route, diff in checked.items() if diff} == {}

    per = Counter((d["fact_id"], d["recipient"], d["channel"]) for d in log)
    assert set(per.values()) == {1}
    overdue = [d for d in log if d["programme_id"] == pid["A"] and d["recipient"] == "ILO"
               and d["fact_type"].endswith("report.overdue.v1")]
    # each of A's four reports was late (the final ones again at the dates the extension
    # moved them to), and each lateness was told once
    assert {d["subject"] for d in overdue} == {d["subject"] for d in overdue[:1]}
    assert len({d["fact_id"] for d in overdue}) == len(overdue) >= 4
    # contributors hear of what their money did without registering first: inbox notices
    deu = {d["fact_type"].split(".", 2)[2] for d in log
           if d["recipient"] == "DEU" and d["programme_id"] in (pid["A"], pid["F"])}
    assert {"allocation.made.v1", "funds.transferred.v1", "funds.refunded.v1",
            "allocation.released.v1", "budget.revised.v1"} <= deu
    assert all(d["channel"] == "inbox" for d in log if d["recipient"] == "DEU")
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
