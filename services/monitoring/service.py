"""Monitoring's use cases: other services' facts into monitoring's view, reports from both
entrypoints, and the scheduler that finds overdue reports, risks and closures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.monitoring.domain import MonitoringRules
from services.monitoring.store import MonitoringStore
from shared import lifecycle, topics
from shared.consumer import Incoming, Rejection, apply_each, programmes_of
from shared.contracts import REGISTRY
from shared.contracts.funding import (
    AllocationMade,
    AllocationReleased,
    BudgetRevised,
    ContributionDeposited,
    ContributionPledged,
    FundsRefunded,
    FundsTransferred,
    ProgrammeApproved,
    ProgrammeExtended,
)
from shared.contracts.intake import ProgrammeScreened
from shared.contracts.monitoring import (
    ProgrammeAtRisk,
    ProgrammeFinanciallyClosed,
    ProgrammeOperationallyClosed,
    ProgrammeRiskCleared,
    ReportOverdue,
    ReportSubmitted,
    SubmitProgressReport,
)
from shared.dec128 import amount, d128
from shared.envelope import utcnow
from shared.errors import PersonalData
from shared.lease import Fenced, Leases, unit_of
from shared.logging import get_logger
from shared.metrics import SCHEDULER_LOOKED_AT, SCHEDULER_SWEEPS
from shared.privacy import find_personal_data, redact
from shared.rebuild import Plan, runs
from shared.runtime import keep_running
from shared.store import UnitOfWork
from shared.telemetry import tag_programme

log = get_logger("mptf.monitoring")
FACTS_CONSUMER = "monitoring.facts"
REPORTS_CONSUMER = "monitoring.reports"
# every lifecycle fact and change of the other services (shared.lifecycle), by topic
PROGRAMME_FACTS = sorted(t for t in lifecycle.HISTORY_TYPES
                         if REGISTRY[t].topic == topics.PROGRAMMES)
FUNDING_FACTS = sorted({t for t in lifecycle.HISTORY_TYPES if REGISTRY[t].topic == topics.FUNDING}
                       | {ContributionPledged.TYPE, ContributionDeposited.TYPE})


def _money(doc: dict[str, Any], name: str) -> dict[str, Decimal]:
    return {k: amount(v) for k, v in (doc.get(name) or {}).items()}


def _allocation(allocated: dict[str, Decimal]) -> dict[str, Any]:
    """The per-PUNO allocation (net of releases) and what the portfolio reads of it."""
    return {"allocated": {e: d128(v) for e, v in allocated.items()},
            "lines": [{"entity": e, "total_usd": d128(v)}
                      for e, v in sorted(allocated.items())],
            "allocated_usd": d128(sum(allocated.values(), Decimal(0)))}


async def apply_fact(store: MonitoringStore, uow: UnitOfWork, inc: Incoming) -> None:
    """Another service's fact into monitoring's view: the lifecycle record folded
    (shared.lifecycle), and the money and dates it carries."""
    ev: Any = inc.event
    if isinstance(ev, ContributionPledged | ContributionDeposited):
        await store.contribution(uow, ev)  # the Fund's own open-data activity
        return
    pid, at = ev.programme_id, inc.envelope.time
    doc = await store.programme_in(uow, pid)
    set_: dict[str, Any] = {}
    incs: dict[str, Any] = {}
    push: dict[str, Any] = {}
    if isinstance(ev, ProgrammeScreened):
        p = ev.programme
        set_ = {"title": p.title, "punos": [x.entity for x in p.punos],
                "countries": p.countries, "region": p.region,
                "thematic_area": p.primary_thematic_area, "gcm_objectives": p.gcm_objectives,
                "duration_months": doc.get("duration_months") or p.duration_months,
                "original_duration_months": p.duration_months,
                "requested_usd": d128(p.total_budget_usd)}
    elif isinstance(ev, ProgrammeApproved):
        set_ = {"approved_usd": d128(ev.total_budget_usd), "approved_at": ev.decided_at,
                "original_approved_usd": d128(ev.total_budget_usd)}
    elif isinstance(ev, BudgetRevised):
        set_ = {"approved_usd": d128(ev.total_budget_usd), "revisions": ev.revision}
    elif isinstance(ev, ProgrammeExtended):
        set_ = {"duration_months": ev.duration_months,
                "extension_months": ev.total_extension_months}
    elif isinstance(ev, AllocationMade):
        allocated = _money(doc, "allocated")
        for ln in ev.lines:
            allocated[ln.entity] = allocated.get(ln.entity, Decimal(0)) + ln.total_usd
        set_ = {**_allocation(allocated), "allocated_at": doc.get("allocated_at")
                or ev.allocated_at}
        push = {"funded_by": {"$each": [{"contributor": f.contributor, "usd": d128(f.usd)}
                                        for f in ev.funded_by]},
                "allocations": {"$each": [{"entity": ln.entity, "at": ev.allocated_at,
                                           "usd": d128(ln.total_usd)}
                                          for ln in ev.lines]}}
    elif isinstance(ev, AllocationReleased):
        allocated = _money(doc, "allocated")
        for ln in ev.lines:
            allocated[ln.entity] = allocated.get(ln.entity, Decimal(0)) - ln.released_usd
        set_ = {**_allocation(allocated),
                **{f"owed.{ln.entity}": d128(ln.owed_usd) for ln in ev.lines
                   if ln.owed_usd}}
        incs = {"released_usd": d128(ev.released_usd)}
        push = {"allocations": {"$each": [{"entity": ln.entity, "at": ev.released_at,
                                           "usd": d128(-ln.released_usd)}
                                          for ln in ev.lines if ln.released_usd]}}
    elif isinstance(ev, FundsTransferred):
        incs = {f"transferred.{ev.entity}": d128(ev.amount_usd)}
        push = {"transfers": {"entity": ev.entity, "tranche": ev.tranche,
                              "usd": d128(ev.amount_usd), "at": ev.transferred_at}}
    elif isinstance(ev, FundsRefunded):
        incs = {f"refunded.{ev.entity}": d128(ev.amount_usd)}
        push = {"refunds": {"entity": ev.entity, "usd": d128(ev.amount_usd),
                            "at": ev.refunded_at}}
        owed = _money(doc, "owed").get(ev.entity)
        if owed:
            set_ = {f"owed.{ev.entity}": d128(max(owed - ev.amount_usd, Decimal(0)))}
    await store.advance(uow, pid, inc.type, inc.id, ev, at, set_=set_, inc=incs, push=push)
    if isinstance(ev, FundsTransferred):
        await store.started(uow, pid, ev.transferred_at)


async def handle_facts(store: MonitoringStore, batch: list[Incoming]) -> list[Rejection]:
    async with store.turns:  # (MonitoringStore: batches of facts would conflict)
        return await apply_each(store, FACTS_CONSUMER, batch,
                                lambda uow, inc: apply_fact(store, uow, inc), programmes_of())


def refuse_personal_data(r: SubmitProgressReport) -> None:
    data = r.model_dump(mode="json")
    hits = find_personal_data(data)
    if hits:
        import json

        raise PersonalData(
            f"{len(hits)} field(s) carry personal data of individuals; nothing was stored",
            errors=[{"field": h.field, "code": h.code, "reason": h.message} for h in hits],
            redacted=json.dumps(redact(data, hits)).encode())


async def submit_report(store: MonitoringStore, rules: MonitoringRules,
                        r: SubmitProgressReport, entity: str, channel: str = "http",
                        now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
    tag_programme(r.programme_id)
    refuse_personal_data(r)
    at = now or utcnow()
    async with store.turns:
        result, _ = await store.transaction(
            lambda uow: store.submit_report(uow, r, entity.upper(), channel, at, rules))
    return result


async def handle_reports(store: MonitoringStore, rules: MonitoringRules,
                         batch: list[Incoming], clock: Callable[[], datetime] = utcnow
                         ) -> list[Rejection]:
    """Reports from the entities' topics, received at the service's clock (as over HTTP:
    whether each is on time, and the evaluation it triggers)."""
    async def apply(uow: UnitOfWork, inc: Incoming) -> None:
        r = inc.event
        assert isinstance(r, SubmitProgressReport)
        refuse_personal_data(r)
        entity = inc.envelope.source.removeprefix(topics.ENTITY_URN).upper()
        await store.submit_report(uow, r, entity, "kafka", clock(), rules,
                                  traceparent=inc.traceparent)

    async def preload(uow: UnitOfWork, events: list[Incoming]) -> None:
        await uow.docs("reports").load(i.event.report_id for i in events)
        await programmes_of()(uow, events)

    async with store.turns:
        return await apply_each(store, REPORTS_CONSUMER, batch, apply, preload)


class Scheduler:
    """Finds overdue reports, risks and closures. The clock is injectable (tests drive it).

    The replicas share the work: programmes fall in `work_shards` shards, each scheduled by
    the one replica that holds its lease (shared.lease), and a finding commits only under
    that lease (fenced). Even so, ReportOverdue is emitted once per report and deadline
    however often this runs, on however many instances, because each is recorded under a
    unique id in the same transaction."""

    def __init__(self, store: MonitoringStore, rules: MonitoringRules,
                 clock: Callable[[], datetime] = utcnow, interval: float = 60.0,
                 batch: int = 200) -> None:
        self.store, self.rules, self.clock, self.interval = store, rules, clock, interval
        self.batch = batch
        self.sweeps = 0  # sweeps done (the first runs at start)
        self.leases = Leases(store.members, "scheduler", store.settings.work_shards,
                             max(3 * interval, 30.0))

    async def run_once(self, now: datetime | None = None) -> dict[str, list[str]]:
        """One sweep: our shards' programmes whose next check has come (each programme
        keeps its own: MonitoringStore.complete), `batch` at a time, each batch in one
        transaction that reads what it needs in two queries at most. Its cost grows with
        what is due, not with the portfolio (a sweep over every programme under monitoring
        stalled every service for seconds once a minute: docs/benchmarks.md). Findings
        commit only under their shards' leases."""
        now = now or self.clock()
        mine = set(await self.leases.refresh())
        count = self.leases.count
        pids = [p for p in await self.store.due_ids(now) if unit_of(p, count) in mine]
        SCHEDULER_LOOKED_AT.inc(len(pids))
        out: dict[str, list[str]] = {}

        async def evaluate(uow: UnitOfWork, chunk: list[str]) -> dict[str, list[str]]:
            await self.store.preload_evaluation(uow, chunk, now, self.rules)
            found, fenced = {}, set()
            for pid in chunk:
                before = uow.emitted
                happened = await self.store.evaluate(uow, pid, now, self.rules)
                unit = unit_of(pid, count)
                if uow.emitted > before and unit not in fenced:
                    await self.leases.fence(uow, unit)  # raises Fenced if it is not ours
                    fenced.add(unit)
                if happened:
                    found[pid] = happened
            return found

        for i in range(0, len(pids), self.batch):
            chunk = pids[i:i + self.batch]
            while chunk:
                try:
                    async with self.store.turns:
                        found, _ = await self.store.transaction(
                            lambda uow, chunk=chunk: evaluate(uow, chunk))
                except Fenced:  # another replica has a shard now: the rest, without it
                    mine &= set(self.leases.held)
                    chunk = [p for p in chunk if unit_of(p, count) in mine]
                    continue
                for pid, happened in found.items():
                    log.info("scheduler_findings", programme_id=pid, findings=happened)
                out.update(found)
                break
        self.sweeps += 1
        SCHEDULER_SWEEPS.inc()
        return out

    async def run(self) -> None:
        await keep_running("scheduler", self.run_once,
                           lambda _: asyncio.sleep(self.interval), cap=60)


# -- rebuilt from the log (shared.rebuild; `mptf rebuild monitoring`) --------------------------
OWN_FACTS_CONSUMER = "monitoring.own-facts"


async def project_own(store: MonitoringStore, uow: UnitOfWork, inc: Incoming) -> None:
    """One of our facts, as the store code that made it wrote it."""
    ev: Any = inc.event
    if isinstance(ev, ReportSubmitted):
        await store.reported(uow, ev)
    elif isinstance(ev, ReportOverdue):
        await store.went_overdue(uow, ev)
    elif isinstance(ev, ProgrammeAtRisk | ProgrammeRiskCleared):
        await store.flagged(uow, ev)
    elif isinstance(ev, ProgrammeOperationallyClosed | ProgrammeFinanciallyClosed):
        await store.closed(uow, inc.type, inc.id, ev)


async def project(store: MonitoringStore, batch: list[Incoming]) -> list[Rejection]:
    """Our facts and the others' (those the live consumers read), in the batch's order."""

    async def preload(uow: UnitOfWork, events: list[Incoming]) -> None:
        await uow.docs("reports").load(i.event.report_id for i in events
                                       if isinstance(i.event, ReportSubmitted))
        await programmes_of()(uow, events)

    def mine(i: Incoming) -> bool:
        return i.record.topic.endswith(topics.MONITORING)

    out: list[Rejection] = []
    for ours, run in runs(batch, own=mine, wanted=lambda i: mine(i) or i.type in FOREIGN):
        out += await (apply_each(store, OWN_FACTS_CONSUMER, run,
                                 lambda uow, inc: project_own(store, uow, inc), preload)
                      if ours else handle_facts(store, run))
    return out


FOREIGN = frozenset(PROGRAMME_FACTS) | frozenset(FUNDING_FACTS)
REBUILD = Plan(topics=(topics.PROGRAMMES, topics.FUNDING, topics.MONITORING),
               project=project,  # type: ignore[arg-type]
               read_models=("programmes", "reports", "overdue", "contributions", "portfolio"),
               # the scheduler's own bookkeeping: when it last looked at a programme, and
               # when it will next (a rebuilt programme is looked at again from its start)
               unfacted={"programmes": ("checked_on", "check_at")},
               counters=("portfolio",))
