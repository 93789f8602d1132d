"""Monitoring against the real broker and Mongo wire server: a funded programme reports,
misses a deadline, gets ReportOverdue exactly once across a restart, closes operationally
and financially; bad reports are answered; the IATI export of a seeded portfolio validates
against the IATI 2.03 schema and codelists."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from services.monitoring.app import MonitoringSettings
from services.monitoring.app import build as build_monitoring
from services.monitoring.iati_rules import problems
from services.monitoring.portfolio import portfolio as portfolio_of
from services.monitoring.store import NEVER, MonitoringStore
from shared import topics
from shared.contracts.funding import (
    AllocationMade,
    ContributionDeposited,
    ContributionPledged,
    FundsRefunded,
    FundsTransferred,
    ProgrammeApproved,
)
from shared.contracts.intake import ProgrammeScreened
from shared.contracts.monitoring import (
    REPORT_EXAMPLE,
    ProgrammeFinanciallyClosed,
    ProgrammeOperationallyClosed,
    ReportOverdue,
    SubmitProgressReport,
)
from shared.http import exact
from tests.integration.conftest import running
from tests.support import (
    FMU,
    ILO,
    IOM,
    ROOT,
    UNDP,
    assert_index_scans,
    event_record,
    eventually,
    headers_of,
    inbound,
    isolated,
    produce,
    read_all,
    record_queries,
)


def funded_programme(pid: str, start: str, months: int, countries: list[str] | None = None
                     ) -> list[tuple]:
    """The facts intake and funding publish for a programme funded and started on `start`."""
    screened = ProgrammeScreened.model_validate({
        "programme_id": pid, "eligible": True, "screened_at": "2025-10-01T00:00:00Z",
        "programme": {"title": f"Programme {pid}", "submitted_by": "IOM",
                      "countries": countries if countries is not None else ["TJ"],
                      "region": None if countries is None or countries else "Central Asia",
                      "punos": [{"entity": "IOM", "convening": True, "budget_usd": "100000"},
                                {"entity": "ILO", "budget_usd": "50000"}],
                      "total_budget_usd": "150000", "gcm_objectives": [2, 7, 21],
                      "primary_thematic_area": 2, "duration_months": months}})
    approved = ProgrammeApproved.model_validate({
        "programme_id": pid, "decision_id": "sc", "priority": 1, "decided_at": start,
        "approved_budget": [{"entity": "IOM", "budget_usd": "100000"},
                            {"entity": "ILO", "budget_usd": "50000"}],
        "total_budget_usd": "150000"})
    allocated = AllocationMade.model_validate({
        "programme_id": pid, "allocation_id": f"a-{pid}", "total_usd": "160500",
        "lines": [{"entity": "IOM", "programme_budget_usd": "100000",
                   "support_cost_usd": "7000", "total_usd": "107000"},
                  {"entity": "ILO", "programme_budget_usd": "50000",
                   "support_cost_usd": "3500", "total_usd": "53500"}],
        "funded_by": [{"contribution_id": "c", "contributor": "DEU", "usd": "160500"}],
        "allocated_at": start})
    transfers = [FundsTransferred(programme_id=pid, transfer_id=f"t-{pid}-{e}", entity=e,
                                  tranche=1, amount_usd=a, transferred_at=start)
                 for e, a in (("IOM", "107000"), ("ILO", "53500"))]
    return [("programmes", screened), *[("funding", f) for f in (approved, allocated,
                                                                  *transfers)]]


async def publish(settings: MonitoringSettings, facts: list[tuple]) -> None:
    for topic, fact in facts:
        src = "/mptf/intake" if topic == "programmes" else "/mptf/funding"
        key = getattr(fact, "programme_id", None) or fact.contribution_id
        await produce(settings.topic(f"mptf.{topic}"),
                      [event_record(fact, source=src, key=key)])


async def until_on_going(http: Any, pid: str) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        r = await http.get(f"/v1/programmes/{pid}", headers=FMU)
        if r.status_code == 200 and r.json()["status"] == "on-going" and r.json()["end_date"]:
            return r.json()
        return None

    return await eventually(ready)


def report(pid: str, kind: str, year: int | None, **extra: Any) -> dict[str, Any]:
    body = {**REPORT_EXAMPLE, "report_id": f"{pid}-{kind}-{year}", "programme_id": pid,
            "kind": kind, "year": year}
    if kind.endswith("financial"):
        body.update(narrative="", indicators=[], beneficiaries=None)
    return {**body, **extra}


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


async def test_a_programme_reports_goes_overdue_once_and_closes(tmp_path: Path) -> None:
    # the clock is fixed before each process starts: its scheduler runs once at startup
    settings = isolated(MonitoringSettings, scheduler_interval_seconds=3600,
                        clock_fixed=at("2026-06-01"))
    pid = "jp-tj-1"
    async with running(build_monitoring, settings) as (app, _rt, http):
        await publish(settings, funded_programme(pid, "2026-01-15T00:00:00Z", 12))
        view = await until_on_going(http, pid)
        assert (view["start_date"], view["end_date"]) == ("2026-01-15", "2027-01-14")
        assert [c["kind"] for c in view["calendar"]] == [
            "annual-narrative", "annual-financial", "final-narrative", "final-financial"]
        r = await http.post(f"/v1/programmes/{pid}/reports", headers=IOM,
                            json=report(pid, "annual-narrative", 2026))
        assert r.status_code == 201 and r.json()["on_time"] is True, r.text

        scheduler = app.state.scheduler
        found = await scheduler.run_once(now=at("2027-05-01"))  # the annual financial is late
        assert found[pid] == ["overdue annual-financial:2026", "overdue final-narrative",
                              "at-risk ['low-delivery', 'report-overdue']"]  # nothing spent
        assert await scheduler.run_once(now=at("2027-05-01")) == {}
        assert await scheduler.run_once(now=at("2027-05-02")) == {}

    # a restart: a new process over the same database finds nothing new to announce
    restarted = settings.model_copy(update={"clock_fixed": at("2027-05-03")})
    async with running(build_monitoring, restarted) as (app, _rt, http):
        assert await app.state.scheduler.run_once() == {}
        r = await http.post(f"/v1/programmes/{pid}/reports", headers=ILO, json=report(
            pid, "annual-financial", 2026,
            expenditure=[{"entity": "IOM", "amount_usd": "60000"},
                         {"entity": "ILO", "amount_usd": "30000"}]))
        assert r.status_code == 201 and r.json()["on_time"] is False
        r = await http.post(f"/v1/programmes/{pid}/reports", headers=IOM,
                            json=report(pid, "final-narrative", None))
        assert r.status_code == 201  # after the end date: this closes it operationally
        view = (await http.get(f"/v1/programmes/{pid}", headers=FMU)).json()
        assert view["status"] == "operationally-closed"
        assert await app.state.scheduler.run_once() == {}
        r = await http.post(f"/v1/programmes/{pid}/reports", headers=IOM, json=report(
            pid, "final-financial", None,
            expenditure=[{"entity": "IOM", "amount_usd": "46000"},
                         {"entity": "ILO", "amount_usd": "23400"}]))
        assert r.status_code == 201
        # the unspent balances above the threshold must come back first
        view = (await http.get(f"/v1/programmes/{pid}", headers=FMU)).json()
        assert view["status"] == "operationally-closed"
        assert view["refunds_due"] == {"IOM": "1000.00", "ILO": "100.00"}
        await publish(settings, [("funding", FundsRefunded(
            programme_id=pid, refund_id=f"r-{e}", entity=e, amount_usd=a,
            refunded_at=at("2027-05-04"))) for e, a in (("IOM", "1000"), ("ILO", "100"))])

        async def refunded() -> bool:  # both received (after IOM's, ILO's 100 is waived)
            v = (await http.get(f"/v1/programmes/{pid}", headers=FMU)).json()
            return v["refunds_due"] == {} and len(v["refunded"]) == 2

        await eventually(refunded)
        assert await app.state.scheduler.run_once() == {pid: ["financially-closed"]}
        view = (await http.get(f"/v1/programmes/{pid}", headers=FMU)).json()
        assert view["status"] == "financially-closed"
        assert view["delivery_rate"]["by_puno"] == {"IOM": "1.0000", "ILO": "1.0000"}

        facts = await read_all(settings.topic(topics.MONITORING), min_count=8)
    kinds = [headers_of(f)["ce_type"] for f in facts]
    overdue = [json.loads(f.value) for f in facts if headers_of(f)["ce_type"] ==
               ReportOverdue.TYPE]
    assert sorted((o["kind"], o["year"]) for o in overdue) == [
        ("annual-financial", 2026), ("final-narrative", None)]  # each exactly once
    assert kinds.count(ProgrammeOperationallyClosed.TYPE) == 1
    (closed,) = [json.loads(f.value) for f in facts
                 if headers_of(f)["ce_type"] == ProgrammeFinanciallyClosed.TYPE]
    assert closed["balances"] == [  # refund_usd: what each PUNO refunded, received
        {"entity": "ILO", "transferred_usd": "53500.00", "expenditure_usd": "53400.00",
         "unspent_usd": "0.00", "refund_usd": "100.00"},
        {"entity": "IOM", "transferred_usd": "107000.00", "expenditure_usd": "106000.00",
         "unspent_usd": "0.00", "refund_usd": "1000.00"}]
    assert closed["refund_total_usd"] == "1100.00"


async def test_a_sweep_reads_only_the_programmes_due_a_batch_at_a_time() -> None:
    """The scheduler's sweep reads the programmes whose next check has come (found through
    an index), not every programme under monitoring, and costs round trips per batch of
    them, not per programme: twelve programmes due in batches of five are read with one
    query of programmes and one of overdue records per batch; a thirteenth, started later
    and with nothing due, is not read at all; a sweep with nothing due is one query. Each
    finding is made once, on the day it comes due, in whichever batch it falls. The
    portfolio's counters are raised by every transaction, and read by none of them."""
    from prometheus_client import REGISTRY

    def finds(collection: str) -> float:
        return REGISTRY.get_sample_value("mptf_store_commands_total", {
            "command": "find", "collection": collection}) or 0.0

    settings = isolated(MonitoringSettings, scheduler_interval_seconds=3600, scheduler_batch=5,
                        clock_fixed=at("2026-06-01"))
    pids = [f"jp-sweep-{i:02d}" for i in range(12)]
    later = "jp-sweep-later"
    async with running(build_monitoring, settings) as (app, _rt, http):
        counters_read = finds("portfolio")
        for pid in pids:
            await publish(settings, funded_programme(pid, "2026-01-15T00:00:00Z", 12))
        await publish(settings, funded_programme(later, "2027-02-01T00:00:00Z", 12))
        for pid in [*pids, later]:
            await until_on_going(http, pid)
        scheduler, store = app.state.scheduler, app.state.store

        def looked_at() -> float:  # (the operators' figure of what sweeps cost)
            return REGISTRY.get_sample_value(
                "mptf_scheduler_programmes_looked_at_total") or 0.0

        async def sweep(day: str) -> tuple[dict[str, list[str]], float, float]:
            before = {c: finds(c) for c in ("programmes", "overdue")}
            found = await scheduler.run_once(now=at(day))
            return (found, finds("programmes") - before["programmes"],
                    finds("overdue") - before["overdue"])

        assert await sweep("2026-04-01") == ({}, 1, 0)  # nothing is due: one query
        queries: list[tuple[dict[str, Any], Any]] = []
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, store.db.programmes, ("find",), queries)
            assert sorted(await store.due_ids(at("2027-05-01"))) == pids  # not `later`
        await assert_index_scans(store.db.programmes, queries)
        # every one of the twelve is late now: one query for those due, then two per batch
        looked = looked_at()
        found, programme_finds, overdue_finds = await sweep("2027-05-01")
        assert looked_at() - looked == len(pids)
        assert found == {pid: ["overdue annual-narrative:2026", "overdue annual-financial:2026",
                               "overdue final-narrative",
                               "at-risk ['low-delivery', 'report-overdue']"]
                         for pid in pids}
        assert (programme_finds, overdue_finds) == (1 + 3, 3)
        assert await sweep("2027-05-01") == ({}, 1, 0)  # looked at today: nothing is due
        # the later programme's days come (alone: the twelve are not read)
        assert await sweep("2028-06-30") == ({later: [
            "overdue annual-narrative:2027", "overdue annual-financial:2027",
            "overdue final-narrative", "at-risk ['low-delivery', 'report-overdue']"]}, 1 + 1, 1)
        # the next deadline (the certified final financial report's, 2028-06-30) passes:
        # each is found late once more, the day after it
        found, programme_finds, _ = await sweep("2028-07-01")
        assert found == {pid: ["overdue final-financial"] for pid in pids}
        assert programme_finds == 1 + 3
        assert await sweep("2028-07-01") == ({}, 1, 0)
        facts = await read_all(settings.topic(topics.MONITORING), min_count=5 * len(pids) + 4)
        late = [json.loads(f.value) for f in facts if headers_of(f)["ce_type"] ==
                ReportOverdue.TYPE]
        assert sorted(f["programme_id"] for f in late) == sorted(pids * 4 + [later] * 3)
        # every transaction above changed the portfolio's counters, none read them first
        assert finds("portfolio") == counters_read
        assert (await http.get("/v1/portfolio", headers=FMU)).json()["programmes"] == 13


async def test_programmes_kept_by_an_earlier_release_are_looked_at_once_then_scheduled() -> None:
    """A database from before programmes carried their next check: at start every programme
    without one is due (found through the index: no scan), the next sweep looks at each
    once (a late report is announced, unless its overdue record says it was), and after it
    a programme under monitoring waits for its next day, one not under monitoring for
    nothing."""
    settings = isolated(MonitoringSettings, scheduler_interval_seconds=3600,
                        clock_fixed=at("2026-06-01"))
    async with running(build_monitoring, settings) as (app, _rt, _http):
        store, scheduler = app.state.store, app.state.scheduler

        async def swept_at_start() -> bool:  # (it would look at the programmes below)
            return scheduler.sweeps >= 1

        await eventually(swept_at_start)
        day = at("2026-01-15")
        await store.db.programmes.insert_many([
            {"_id": "jp-old-1", "status": "on-going", "start_date": day,
             "end_date": at("2027-01-14"), "punos": ["IOM"], "risk_flags": []},
            {"_id": "jp-old-2", "status": "on-going", "start_date": day,
             "end_date": at("2027-01-14"), "punos": ["IOM"],
             "risk_flags": ["low-delivery", "report-overdue"]},
            {"_id": "jp-old-3", "status": "approved", "punos": ["IOM"]}])
        # jp-old-2's late annual narrative was announced by the earlier release
        await store.db.overdue.insert_one({"_id": "jp-old-2:annual-narrative:2026:2027-03-31",
                                           "programme_id": "jp-old-2"})
        queries: list[tuple[dict[str, Any], Any]] = []
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, store.db.programmes, ("update_many",), queries)
            await store.ensure_indexes()
        await assert_index_scans(store.db.programmes, queries)
        assert sorted(await store.due_ids(at("2026-06-01"))) == [
            "jp-old-1", "jp-old-2", "jp-old-3"]
        found = await scheduler.run_once(now=at("2027-04-02"))
        assert found == {"jp-old-1": ["overdue annual-narrative:2026", "at-risk "
                                      "['low-delivery', 'no-recent-report', 'report-overdue']"],
                         "jp-old-2": ["at-risk ['no-recent-report']"]}
        assert await store.due_ids(at("2027-04-02")) == []
        docs = {d["_id"]: d async for d in store.db.programmes.find()}
        assert docs["jp-old-3"]["check_at"] == NEVER
        assert docs["jp-old-2"]["overdue_recorded"] == [  # from the earlier release's record
            "jp-old-2:annual-narrative:2026:2027-03-31"]
        # next: the day the no-recent-report flag ends (three months after the end date)
        assert docs["jp-old-1"]["check_at"] == docs["jp-old-2"]["check_at"] == at("2027-04-14")
        assert await scheduler.run_once(now=at("2027-04-13")) == {}


async def test_the_portfolio_lists_exactly_the_programmes_at_risk_found_by_index() -> None:
    """The portfolio's programmes at risk are those with a flag, whatever the others hold
    (no flags, an empty list, none kept yet); they are found through the flags' index, not
    by reading every programme (which the local Mongo server would do under its global
    lock at every request)."""
    store = MonitoringStore(isolated(MonitoringSettings))
    try:
        await store.ensure_indexes()
        await store.db.programmes.insert_many([
            {"_id": "jp-1", "title": "One", "risk_flags": ["low-delivery"]},
            {"_id": "jp-2", "title": "Two", "risk_flags": []},
            {"_id": "jp-3", "title": "Three"},
            {"_id": "jp-4", "title": "Four", "risk_flags": None},
            {"_id": "jp-5", "title": "Five",
             "risk_flags": ["no-recent-report", "report-overdue"]}])
        queries: list[tuple[dict[str, Any], Any]] = []
        with pytest.MonkeyPatch.context() as mp:
            record_queries(mp, store.db.programmes, ("find",), queries)
            view = await store.portfolio()
        assert view["at_risk"] == [
            {"programme_id": "jp-1", "title": "One", "flags": ["low-delivery"]},
            {"programme_id": "jp-5", "title": "Five",
             "flags": ["no-recent-report", "report-overdue"]}]
        await assert_index_scans(store.db.programmes, queries)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_bad_reports_are_answered_and_nothing_is_stored() -> None:
    settings = isolated(MonitoringSettings, clock_fixed=at("2026-11-01"))
    pid = "jp-bad"
    async with running(build_monitoring, settings) as (_app, rt, http):
        await publish(settings, funded_programme(pid, "2026-01-15T00:00:00Z", 30))
        await publish(settings, funded_programme("jp-unfunded", "2026-01-15T00:00:00Z", 30)[:2])
        await until_on_going(http, pid)

        async def approved() -> bool:
            r = await http.get("/v1/programmes/jp-unfunded", headers=FMU)
            return r.status_code == 200 and r.json()["status"] == "approved"

        await eventually(approved)

        async def post(body: dict[str, Any], who: dict[str, str] = IOM,
                       target: str = pid) -> Any:
            return await http.post(f"/v1/programmes/{target}/reports", headers=who, json=body)

        r = await post(report("jp-nope", "annual-narrative", 2026), target="jp-nope")
        assert r.status_code == 404
        r = await post(report("jp-unfunded", "annual-narrative", 2026), target="jp-unfunded")
        assert r.status_code == 409 and "not funded" in r.json()["detail"]
        assert (await post(report(pid, "annual-narrative", 2026), who=UNDP)).status_code == 404
        assert (await post(report(pid, "annual-narrative", 2026), who=FMU)).status_code == 403
        r = await post(report(pid, "annual-narrative", 2031))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "year"
        b = {**REPORT_EXAMPLE["beneficiaries"], "total": 1201}
        r = await post(report(pid, "annual-narrative", 2026, beneficiaries=b))
        assert {e["field"] for e in r.json()["errors"]} == {
            "beneficiaries.by_sex", "beneficiaries.by_age", "beneficiaries.by_migratory_status"}
        r = await post(report(pid, "annual-financial", 2026,
                              expenditure=[{"entity": "IOM", "amount_usd": "107000.01"}]))
        assert r.status_code == 422
        r = await post(report(pid, "annual-financial", 2026,
                              expenditure=[{"entity": "IOM", "amount_usd": "-1"}]))
        assert r.status_code == 422
        r = await post(report(pid, "annual-narrative", 2026,
                              narrative="Ms. Rahimova (born on 03/04/1990) received support"))
        assert r.status_code == 422 and r.json()["code"] == "personal-data"
        assert "Rahimova" not in r.text
        assert await rt.store.db.reports.count_documents({}) == 0

        assert (await post(report(pid, "annual-narrative", 2026))).status_code == 201
        assert (await post(report(pid, "annual-narrative", 2026))).status_code == 200  # replay
        r = await post(report(pid, "annual-narrative", 2026, report_id="other-id"))
        assert r.status_code == 409  # a second report for the same period

        # the inbound topic: an invalid report is dead-lettered with its reason
        bad = SubmitProgressReport.model_validate(report(pid, "annual-narrative", 2027,
                                                         report_id="kafka-1", narrative=""))
        good = SubmitProgressReport.model_validate(report(pid, "annual-narrative", 2027,
                                                          report_id="kafka-2"))
        await produce(inbound(settings, topics.INBOUND_PROGRESS_REPORTS, "IOM"),
                      [event_record(bad, key=pid)])
        await produce(inbound(settings, topics.INBOUND_PROGRESS_REPORTS, "ILO"),
                      [event_record(good, source="urn:mptf:entity:ILO", key=pid)])
        (dead,) = await read_all(settings.topic(topics.INBOUND_PROGRESS_REPORTS) + ".dlq",
                                 min_count=1)
        assert headers_of(dead)["dlq_reason"] == "invalid-input"
        assert "narrative" in headers_of(dead)["dlq_detail"]

        async def accepted() -> bool:
            return await rt.store.db.reports.count_documents({"_id": "kafka-2"}) == 1

        await eventually(accepted)
        # received at the service's clock, as over HTTP (not the wall clock)
        kept = await rt.store.db.reports.find_one({"_id": "kafka-2"})
        assert kept["at"] == at("2026-11-01")


def iati_dir() -> Path:
    out = subprocess.run([str(ROOT / "deploy/local/iati-schemas.sh")], capture_output=True,
                         text=True, check=True, env={**os.environ})
    return Path(out.stdout.strip())


def codes(name: str) -> set[str]:
    """The current IATI codelist `name` (vendored: deploy/iati/codelists, with 15190)."""
    tree = etree.parse(str(ROOT / "deploy" / "iati" / "codelists" / f"{name}.xml"))
    return {c.text for c in tree.iter("code")}


async def test_the_iati_export_of_a_seeded_portfolio_validates() -> None:
    settings = isolated(MonitoringSettings, clock_fixed=at("2026-11-01"))
    async with running(build_monitoring, settings) as (app, _rt, http):
        await publish(settings, funded_programme("jp-a", "2025-02-01T00:00:00Z", 12))
        await publish(settings, funded_programme("jp-b", "2026-03-01T00:00:00Z", 24,
                                                 countries=["ZA", "MZ", "ZW"]))
        await publish(settings, funded_programme("jp-c", "2026-06-01T00:00:00Z", 24,
                                                 countries=[]))
        await publish(settings, funded_programme("jp-p", "2026-06-01T00:00:00Z", 24)[:2])
        await publish(settings, [("funding", ContributionPledged(
            contribution_id="c-NOR", contributor="NOR", contributor_name="Norway",
            currency="USD", amount=D("500000"), year=2025, pledged_at=at("2025-01-10"))),
            ("funding", ContributionDeposited(
                contribution_id="c-NOR", contributor="NOR", currency="USD",
                amount=D("500000"), usd_amount=D("500000"), fee_usd=D("5000"),
                net_usd=D("495000"), year=2025, deposited_at=at("2025-01-20")))])
        for pid in ("jp-a", "jp-b", "jp-c"):
            await until_on_going(http, pid)
        await http.post("/v1/programmes/jp-a/reports", headers=IOM, json=report(
            "jp-a", "final-financial", None,  # all spent: nothing to refund, it closes
            expenditure=[{"entity": "IOM", "amount_usd": "107000"},
                         {"entity": "ILO", "amount_usd": "53500"}]))
        await http.post("/v1/programmes/jp-a/reports", headers=IOM,
                        json=report("jp-a", "final-narrative", None))
        await app.state.scheduler.run_once()  # jp-a ended in 2026: it closes

        async def with_contributions() -> httpx.Response | None:
            r = await http.get("/v1/export/iati")  # open data: no token
            return r if b"<transaction-type code=\"1\"" in r.content else None

        r = await eventually(with_contributions)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
        # paged: each page a whole document, the Fund's own activity on the first
        first = await http.get("/v1/export/iati", params={"limit": 3})
        second = await http.get("/v1/export/iati", params={
            "limit": 3, "cursor": first.headers["x-next-cursor"]})
        assert "x-next-cursor" not in second.headers
        portfolio = (await http.get("/v1/portfolio", headers=FMU)).json()
        # the counters kept with every write give the portfolio the documents give, and a
        # database kept before there were counters is counted once when the service starts
        store = app.state.store
        computed = json.loads(json.dumps(exact(portfolio_of(
            await store.programmes(), await store.reports({})))))
        assert portfolio == computed
        assert await store.db.portfolio.count_documents({}) > 1  # sharded
        await store.db.portfolio.drop()
        await store.ensure_indexes()
        await store.ensure_indexes()  # counted once, however often it starts
        assert json.loads(json.dumps(exact(await store.portfolio()))) == computed
    base = iati_dir()
    schema = etree.XMLSchema(etree.parse(str(base / "schemas" / "iati-activities-schema.xsd")))
    doc = etree.fromstring(r.content)
    schema.assertValid(doc)
    assert problems(r.content) == []  # the Standard's rules (services/monitoring/iati_rules)
    pages = [etree.fromstring(x.content) for x in (first, second)]
    for page in pages:
        schema.assertValid(page)
        assert problems(etree.tostring(page)) == []
    assert [[a.findtext("iati-identifier")[-5:] for a in p.findall("iati-activity")]
            for p in pages] == [["MIG00", "-jp-a", "-jp-b", "-jp-c"], ["-jp-p"]]
    acts = doc.findall("iati-activity")
    assert [a.findtext("iati-identifier") for a in acts] == ["XM-DAC-41114-MIG00"] + [
        f"XM-DAC-41114-MIG00-{p}" for p in ("jp-a", "jp-b", "jp-c", "jp-p")]
    statuses = {a.findtext("iati-identifier")[-5:]: a.find("activity-status").get("code")
                for a in acts[1:]}
    assert statuses == {"-jp-a": "4", "-jp-b": "2", "-jp-c": "2", "-jp-p": "1"}
    fund = acts[0]
    assert [(t.find("transaction-type").get("code"), t.find("value").text)
            for t in fund.findall("transaction")] == [("13", "500000.00"), ("1", "500000.00")]
    # a regional programme is in its IATI region (Central Asia), not 998
    assert acts[3].find("recipient-region").get("code") == "619"
    # budgets one per period of at most a year: jp-b's 24 months are two or three
    assert len(acts[2].findall("budget")) >= 2
    checks = {"activity-status": "ActivityStatus", "activity-date/@type": "ActivityDateType",
              "participating-org/@role": "OrganisationRole",
              "participating-org/@type": "OrganisationType",
              "transaction/transaction-type": "TransactionType",
              "recipient-country": "Country", "recipient-region": "Region",
              "sector": "Sector", "budget/@type": "BudgetType", "budget/@status": "BudgetStatus",
              "sector/@vocabulary": "SectorVocabulary"}
    for path, codelist in checks.items():
        allowed = codes(codelist)
        elem, _, attr = path.partition("/@")
        for a in acts:
            for el in a.findall(elem):
                value = el.get(attr or "code")
                assert value in allowed, (path, value)
    kinds = sorted({t.find("transaction-type").get("code") for t in doc.iter("transaction")})
    assert kinds == ["1", "13", "2", "3", "4"]
    for v in doc.iter("value"):
        assert v.get("currency") in codes("Currency")
    assert portfolio["by_status"]["financially-closed"]["programmes"] == 1
    assert portfolio["objectives_served"] == [2, 7, 21]


async def test_monitorings_writes_take_turns_within_a_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every transaction that writes a programme or a report adds to the portfolio's
    counters, so two of them at once conflict (and one is redone after a wait): the
    consumers of intake's and funding's facts, of progress reports, and a report sent over
    HTTP take turns within a process. At most one runs at a time, whatever arrives at
    once."""
    import asyncio

    from services.monitoring import service
    from shared.contracts.monitoring import REPORT_EXAMPLE, SubmitProgressReport

    store = MonitoringStore(isolated(MonitoringSettings))
    running, most, done = 0, 0, []

    async def in_a_transaction(what: str) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)  # the store's round trips, during which others may start
        running -= 1
        done.append(what)

    async def apply_each(store_: Any, consumer: str, batch: list[Any], *_: Any) -> list[Any]:
        await in_a_transaction(f"{consumer} {batch[0]}")
        return []

    async def transaction(fn: Any) -> tuple[Any, Any]:
        await in_a_transaction("http report")
        return (True, {}), None

    monkeypatch.setattr(service, "apply_each", apply_each)
    monkeypatch.setattr(store, "transaction", transaction)
    report = SubmitProgressReport.model_validate(REPORT_EXAMPLE)
    rules = store.settings.rules()  # type: ignore[attr-defined]
    await asyncio.gather(
        service.handle_facts(store, ["intake's facts"]),  # type: ignore[list-item]
        service.handle_facts(store, ["funding's facts"]),  # type: ignore[list-item]
        service.handle_reports(store, rules, ["reports"]),  # type: ignore[list-item]
        service.submit_report(store, rules, report, "IOM"))
    assert sorted(done) == sorted([f"{service.FACTS_CONSUMER} intake's facts",
                                   f"{service.FACTS_CONSUMER} funding's facts",
                                   f"{service.REPORTS_CONSUMER} reports", "http report"])
    assert most == 1
    await store.close()
