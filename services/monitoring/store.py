"""Monitoring's MongoDB adapter (its own database): programmes as monitoring sees them,
reports, and the overdue log whose unique ids make each ReportOverdue happen once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from bson import Decimal128
from pymongo import ASCENDING

from services.monitoring import portfolio
from services.monitoring.domain import (
    ZERO,
    Deadline,
    MonitoringRules,
    check_report,
    delivery,
    end_date,
    on_time,
    operationally_closable,
    overdue,
    report_key,
    reporting_calendar,
    risk_flags,
    turning_days,
    unspent_balances,
)
from shared import lifecycle
from shared.contracts.monitoring import (
    ProgrammeAtRisk,
    ProgrammeFinanciallyClosed,
    ProgrammeOperationallyClosed,
    ProgrammeRiskCleared,
    ReportOverdue,
    ReportSubmitted,
    SubmitProgressReport,
    Unspent,
)
from shared.dec128 import amount, d128
from shared.errors import Conflict, NotFound
from shared.metrics import BUSINESS
from shared.rebuild import chronological
from shared.store import Aggregate, Store, UnitOfWork


def as_dt(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def amounts(doc: dict[str, Any], field: str) -> dict[str, Decimal]:
    return {k: amount(v) for k, v in (doc.get(field) or {}).items()}


def net_funded(doc: dict[str, Any]) -> dict[str, Decimal]:
    t, r = amounts(doc, "transferred"), amounts(doc, "refunded")
    return {e: t[e] - r.get(e, ZERO) for e in t}


def dates(doc: dict[str, Any]) -> tuple[date | None, date | None]:
    s, e = doc.get("start_date"), doc.get("end_date")
    return (s.date() if s else None), (e.date() if e else None)


def monitored(doc: dict[str, Any]) -> bool:
    """Under monitoring: started (with an end date) and on-going or operationally closed
    (not suspended, withdrawn, cancelled or financially closed)."""
    start, end = dates(doc)
    return bool(start and end) and lifecycle.allowed("monitor", doc.get("status"))


def _late(doc: dict[str, Any], today: date, rules: MonitoringRules) -> list[Deadline]:
    """The reports a programme under monitoring is late with (none for one not started,
    or suspended, withdrawn, cancelled, closed)."""
    if not monitored(doc):
        return []
    start, end = dates(doc)
    assert start and end
    return overdue(reporting_calendar(start, end, rules), set(doc.get("received", {})), today)


def overdue_id(pid: str, d: Deadline) -> str:
    """The record of one late report, once per programme, report and deadline."""
    return f"{pid}:{d.key}:{d.due.isoformat()}"


# when a programme is looked at next (its `check_at`): never, for one not under monitoring;
# at the next sweep, for one kept by an earlier release (MonitoringStore.indexes)
NEVER = datetime(9999, 12, 31, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Assessment:
    """What the scheduler's evaluation of a programme under monitoring finds to do on a day
    (`assess`): the same function decides what `MonitoringStore.evaluate` does and whether
    a programme needs looking at (`next_check`), so the two cannot disagree."""

    overdue: list[Deadline]  # reports it is late with, not announced yet: a ReportOverdue each
    flags: set[str]
    old_flags: set[str]
    rate: Decimal | None
    close_operationally: bool
    close_financially: bool
    balances: list[dict[str, Any]]  # unspent per PUNO (domain.unspent_balances)

    @property
    def anything(self) -> bool:
        return bool(self.overdue or self.flags != self.old_flags or self.close_operationally
                    or self.close_financially)


def assess(doc: dict[str, Any], pid: str, today: date, rules: MonitoringRules,
           recorded: set[str]) -> Assessment | None:
    """What evaluating the programme `doc` on `today` finds (None: it is not under
    monitoring), `recorded` the ids of the overdue reports already announced."""
    if not monitored(doc):
        return None
    start, end = dates(doc)
    assert start and end
    received = set(doc.get("received", {}))
    late = _late(doc, today, rules)
    nf, spent = net_funded(doc), amounts(doc, "spent")
    rate = delivery(spent, nf)["programme"]
    last = doc.get("last_report_at")
    flags = risk_flags(today=today, start=start, end=end, overdue_now=bool(late), rate=rate,
                       last_report=last.date() if last else None, rules=rules)
    close_op = doc["status"] == "on-going" and operationally_closable(end, received, today)
    balances = unspent_balances(nf, spent, amounts(doc, "transferred"), rules)
    # closed when the certified final financial report is in and every refund due above the
    # threshold was received (refunds lower the net funded amount)
    close_fin = ((close_op or doc["status"] == "operationally-closed")
                 and "final-financial" in received
                 and not sum((r["refund_usd"] for r in balances), ZERO))
    return Assessment(overdue=[d for d in late if overdue_id(pid, d) not in recorded],
                      flags=flags, old_flags=set(doc.get("risk_flags", [])), rate=rate,
                      close_operationally=close_op, close_financially=close_fin,
                      balances=balances)


def next_check(doc: dict[str, Any], rules: MonitoringRules) -> datetime:
    """When the scheduler must look at the programme `doc` next, as it now is: the day it
    was last looked at (`checked_on`; its start, if never) if something is to be done as of
    that day, else the first day after it on which the findings can change with the date
    (domain.turning_days); NEVER for a programme not under monitoring (it comes under it
    by a write, which sets this again). A write that changes what is to be done (a report,
    a transfer, an extension) is seen at the next sweep; a sweep reads only the programmes
    whose day has come, not every programme under monitoring."""
    if not monitored(doc):
        return NEVER
    start, end = dates(doc)
    assert start and end
    checked = doc.get("checked_on")
    day = checked.date() if checked else start
    found = assess(doc, doc["_id"], day, rules, set(doc.get("overdue_recorded", [])))
    if found is not None and found.anything:
        return as_dt(day)
    last = doc.get("last_report_at")
    later = [d for d in turning_days(start, end, set(doc.get("received", {})),
                                     last.date() if last else None, rules) if d > day]
    return as_dt(min(later)) if later else NEVER


class MonitoringStore(Store):
    """Every transaction that writes a programme or a report also adds to the portfolio's
    counters, sharded 16 ways by programme, so two batches of facts (intake's and funding's
    consumers) touch the same counter documents and conflict; one of them is retried after
    a wait, again and again under load (60 retries in a benchmark run, one of ten attempts
    and 8.2 s). Within a process they therefore take turns (`turns`); across replicas the
    retries keep them correct, as before."""

    # the portfolio's counters, kept by every transaction that writes a programme or a
    # report (services.monitoring.portfolio)
    aggregate = Aggregate(portfolio.COLLECTION, portfolio.PARTS)

    def __init__(self, settings: Any, *args: Any, rules: MonitoringRules | None = None,
                 **kw: Any) -> None:
        super().__init__(settings, *args, **kw)
        self.turns = asyncio.Lock()
        # the calendar and risk parameters, for each programme's next check (`complete`)
        self.rules = rules or (settings.rules() if hasattr(settings, "rules")
                               else MonitoringRules())

    async def indexes(self) -> None:
        await self.db.programmes.create_index([("status", ASCENDING)])
        await self.db.programmes.create_index([("risk_flags", ASCENDING)])
        await self.db.programmes.create_index([("check_at", ASCENDING)])
        # programmes kept by a release before each had its next check: looked at by the next
        # sweep, which sets it (found through the index: null is "absent", and this release
        # writes `check_at` into every programme it writes)
        await self.db.programmes.update_many({"check_at": None},
                                             {"$set": {"check_at": EPOCH}})
        await self.db.reports.create_index([("programme_id", ASCENDING), ("at", ASCENDING),
                                            ("_id", ASCENDING)])
        agg = self.aggregate
        assert agg is not None
        # a database kept before the portfolio's counters were: counted once
        await self.transaction(lambda uow: agg.count(self.db, uow.session))

    def complete(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Every programme written carries its next check (`next_check`), indexed: the
        scheduler's sweep reads the programmes due, not every one under monitoring."""
        if collection != "programmes":
            return doc
        at = next_check(doc, self.rules)
        return doc if doc.get("check_at") == at else {**doc, "check_at": at}

    async def portfolio(self) -> dict[str, Any]:
        """The portfolio from its counters (and the programmes flagged at risk)."""
        agg = self.aggregate
        assert agg is not None
        # flags are non-empty codes: a programme has one exactly when some element of its
        # list sorts after "", a range of the flags' index (an $exists or $ne would be
        # answered by scanning every programme: SecantusDB does so under its global lock)
        at_risk = await self.db.programmes.find(
            {"risk_flags": {"$gt": ""}}, {"title": 1, "risk_flags": 1}).to_list(None)
        return portfolio.view(await agg.read(self.db), at_risk)

    # -- projections of other services' facts -------------------------------------------------
    async def _doc(self, uow: UnitOfWork, pid: str) -> dict[str, Any]:
        return await uow.docs("programmes").get(pid) or {}

    async def programme_in(self, uow: UnitOfWork, pid: str) -> dict[str, Any]:
        return await self._doc(uow, pid)

    async def advance(self, uow: UnitOfWork, pid: str, fact_type: str, fact_id: str,
                      event: Any, at: datetime, set_: dict[str, Any] | None = None,
                      inc: dict[str, Any] | None = None,
                      push: dict[str, Any] | None = None) -> str | None:
        """Fold a fact into the programme's lifecycle record (shared.lifecycle: facts from
        three topics in any order give the same record) with the fields it sets; returns
        the status after."""
        doc = await self._doc(uow, pid)
        rec = lifecycle.fold(doc.get("lifecycle") or lifecycle.from_status(doc.get("status")),
                             fact_type, fact_id, event, getattr(event, "decision_id", None))
        status = lifecycle.status(rec) or doc.get("status")
        at = lifecycle.ms(at)
        update: dict[str, Any] = {"$set": {
            "updated_at": max(doc.get("updated_at") or at, at), "lifecycle": rec,
            **({"status": status} if status else {}), **(set_ or {})}}
        if inc:
            update["$inc"] = inc
        if push:
            update["$push"] = push
        if fact_type in lifecycle.FACT_TYPES:  # in the facts' order, not their arrival's
            update["$set"]["timeline"] = chronological([
                *doc.get("timeline", []), lifecycle.timeline_entry(fact_type, fact_id, at, event)])
        await uow.docs("programmes").update(pid, update, upsert=True)
        if set_ and "duration_months" in set_ and doc.get("start_date"):
            await self._set_calendar(uow, pid)
        return status

    async def started(self, uow: UnitOfWork, pid: str, at: datetime) -> None:
        """Implementation starts with the first transfer."""
        doc = await self._doc(uow, pid)
        if doc and doc.get("start_date") is None:
            await uow.docs("programmes").update(
                pid, {"$set": {"start_date": as_dt(at.date())}})
            await self._set_calendar(uow, pid)

    async def _set_calendar(self, uow: UnitOfWork, pid: str) -> None:
        doc = await self._doc(uow, pid)
        if doc.get("start_date") and doc.get("duration_months"):
            end = end_date(doc["start_date"].date(), doc["duration_months"])
            await uow.docs("programmes").update(pid, {"$set": {"end_date": as_dt(end)}})

    # -- reports ------------------------------------------------------------------------------
    async def submit_report(self, uow: UnitOfWork, r: SubmitProgressReport, entity: str,
                            channel: str, now: datetime, rules: MonitoringRules,
                            traceparent: str | None = None) -> tuple[bool, dict[str, Any]]:
        existing = await uow.docs("reports").get(r.report_id)
        if existing is not None:
            if existing["body"] != r.model_dump(mode="json"):
                raise Conflict(f"report id {r.report_id} was already used for another report")
            return False, existing
        doc = await self._doc(uow, r.programme_id)
        if not doc:
            raise NotFound(f"monitoring knows no programme {r.programme_id}")
        if entity not in doc.get("punos", []):
            raise NotFound(f"monitoring knows no programme {r.programme_id}")
        start, end = dates(doc)
        received = set(doc.get("received", {}))
        spent = amounts(doc, "spent")
        check_report(r, punos=doc.get("punos", []), start=start, end=end, received=received,
                     net_funded=net_funded(doc), spent=spent)
        assert start and end
        deadlines = reporting_calendar(start, end, rules)
        timely = on_time(r.kind, r.year, deadlines, now)
        spend = sum((s.amount_usd for s in r.expenditure), ZERO)
        fact = ReportSubmitted(
            programme_id=r.programme_id, report_id=r.report_id, kind=r.kind, year=r.year,
            submitted_by=entity, submitted_at=now, on_time=timely,
            beneficiaries=r.beneficiaries.total if r.beneficiaries else 0,
            expenditure_usd=spend, channel=channel, report=r)  # type: ignore[arg-type]
        uow.emit(fact, traceparent=traceparent)
        report = await self.reported(uow, fact)
        BUSINESS.labels("reports_submitted").inc()
        await self.evaluate(uow, r.programme_id, now, rules, traceparent)
        return True, report

    # -- the scheduler's work, and closure ----------------------------------------------------
    async def evaluate(self, uow: UnitOfWork, pid: str, now: datetime, rules: MonitoringRules,
                       traceparent: str | None = None) -> list[str]:
        """Overdue reports (once per report and deadline), risk flags (on change), closure
        (what `assess` finds); the programme is marked looked at today (`checked_on`: its
        next check counts from it). Returns what happened, for logs and tests."""
        doc = await self._doc(uow, pid)
        if not monitored(doc):
            if doc and doc.get("check_at") != NEVER:  # (kept by an earlier release)
                await uow.docs("programmes").update(pid, {"$set": {"check_at": NEVER}})
            return []  # not started, or suspended, withdrawn, cancelled, closed
        today = now.date()
        # the overdue reports announced: the programme keeps their ids; a programme kept by
        # an earlier release has them in the overdue records only (read in one query per
        # batch when `preload_evaluation` ran). A write error aborts a MongoDB transaction,
        # so what is recorded is read first; the records' unique ids still make each once
        # per report and deadline across restarts and instances: a concurrent insert
        # conflicts, this transaction retries and sees it
        kept = set(doc.get("overdue_recorded", []))
        ids = [i for i in (overdue_id(pid, d) for d in _late(doc, today, rules)) if i not in kept]
        records = uow.docs("overdue")
        await records.load(ids)
        earlier = {i for i in ids if records.cache.get(i) is not None}
        if earlier:
            await uow.docs("programmes").update(pid, {"$set": {
                "overdue_recorded": sorted(kept | earlier)}})
        found = assess(doc, pid, today, rules, kept | earlier)
        assert found is not None
        happened = []
        for d in found.overdue:
            fact = ReportOverdue(programme_id=pid, kind=d.kind, year=d.year, due=d.due,
                                 detected_at=now, punos=doc.get("punos", []))
            uow.emit(fact, traceparent=traceparent)
            await self.went_overdue(uow, fact)
            BUSINESS.labels("reports_overdue").inc()
            happened.append(f"overdue {d.key}")
        flags, old = found.flags, found.old_flags
        if flags != old:
            # a concurrent evaluation writes the same document: one transaction retries
            rate = found.rate
            risk: Any = (ProgrammeAtRisk(
                programme_id=pid, flags=sorted(flags), new_flags=sorted(flags - old),
                delivery_rate=str(rate) if rate is not None else None, detected_at=now)
                if flags - old else ProgrammeRiskCleared(
                    programme_id=pid, flags=sorted(flags), cleared_flags=sorted(old - flags),
                    detected_at=now))
            uow.emit(risk, traceparent=traceparent)
            await self.flagged(uow, risk)
            if flags - old:
                happened.append(f"at-risk {sorted(flags - old)}")
        if found.close_operationally:
            _, end = dates(doc)
            assert end
            await self._close(uow, pid, "on-going", "operationally-closed")
            await self._emit_own(uow, ProgrammeOperationallyClosed(
                programme_id=pid, end_date=end, closed_at=now), now, traceparent)
            happened.append("operationally-closed")
        if found.close_financially:
            # the refunds: what each PUNO refunded, received
            rows = [{**r, "refund_usd": amounts(doc, "refunded").get(r["entity"], ZERO)}
                    for r in found.balances]
            await self._close(uow, pid, "operationally-closed", "financially-closed")
            await self._emit_own(uow, ProgrammeFinanciallyClosed(
                programme_id=pid, closed_at=now, balances=[Unspent(**r) for r in rows],
                refund_total_usd=sum((r["refund_usd"] for r in rows), ZERO)), now,
                traceparent)
            happened.append("financially-closed")
        if (await self._doc(uow, pid)).get("checked_on") != as_dt(today):
            await uow.docs("programmes").update(pid, {"$set": {"checked_on": as_dt(today)}})
        return happened

    async def preload_evaluation(self, uow: UnitOfWork, pids: list[str], now: datetime,
                                 rules: MonitoringRules) -> None:
        """What `evaluate` reads for these programmes, in two queries at most: their
        documents, and the overdue records of the deadlines they are late for that they do
        not keep (those of programmes kept by an earlier release)."""
        docs = uow.docs("programmes")
        await docs.load(pids)
        ids = []
        for pid in pids:
            doc = docs.cache.get(pid) or {}
            kept = set(doc.get("overdue_recorded", []))
            ids += [i for i in (overdue_id(pid, d) for d in _late(doc, now.date(), rules))
                    if i not in kept]
        await uow.docs("overdue").load(ids)

    async def _close(self, uow: UnitOfWork, pid: str, current: str, target: str) -> None:
        doc = await self._doc(uow, pid)
        if doc.get("status") != current:
            raise Conflict(f"{pid} changed concurrently")
        BUSINESS.labels(target.replace("-", "_")).inc()

    async def _emit_own(self, uow: UnitOfWork, fact: Any, at: datetime,
                        traceparent: str | None) -> None:
        """Emit one of our lifecycle facts and fold it into our own record."""
        env = uow.emit(fact, traceparent=traceparent)
        await self.closed(uow, env.type, env.id, fact)

    # -- our own facts, as made (above) or replayed (shared.rebuild) ---------------------------
    async def reported(self, uow: UnitOfWork, f: ReportSubmitted) -> dict[str, Any]:
        """A report accepted: kept, and what it says added to the programme."""
        r, key, now = f.report, report_key(f.kind, f.year), f.submitted_at
        if r is None:
            raise NotFound(f"report {f.report_id}: published before facts carried reports")
        report = {"_id": r.report_id, "programme_id": r.programme_id, "kind": r.kind,
                  "year": r.year, "key": key, "submitted_by": f.submitted_by,
                  "channel": f.channel, "at": now, "on_time": f.on_time,
                  "body": r.model_dump(mode="json")}
        await uow.docs("reports").insert(report)
        inc: dict[str, Any] = {f"spent.{s.entity.upper()}": d128(s.amount_usd)
                               for s in r.expenditure}
        if r.beneficiaries:
            inc["beneficiaries_total"] = r.beneficiaries.total
        doc = await self._doc(uow, r.programme_id)
        last = doc.get("last_report_at")
        upd: dict[str, Any] = {"$set": {f"received.{key}": {"report_id": r.report_id,
                                                           "at": now, "on_time": f.on_time},
                                       "last_report_at": max(last, now) if last else now}}
        if inc:
            upd["$inc"] = inc
        await uow.docs("programmes").update(r.programme_id, upd)
        return report

    async def went_overdue(self, uow: UnitOfWork, f: ReportOverdue) -> None:
        """A late report announced: recorded once (its unique id), and kept by the
        programme (what its next check is computed from)."""
        key = report_key(f.kind, f.year)
        rid = overdue_id(f.programme_id, Deadline(f.kind, f.year, f.due))
        await uow.docs("overdue").insert({
            "_id": rid, "programme_id": f.programme_id,
            "key": key, "due": as_dt(f.due), "detected_at": f.detected_at})
        doc = await self._doc(uow, f.programme_id)
        if doc:
            await uow.docs("programmes").update(f.programme_id, {"$set": {
                "overdue_recorded": sorted({*doc.get("overdue_recorded", []), rid})}})

    async def flagged(self, uow: UnitOfWork, f: ProgrammeAtRisk | ProgrammeRiskCleared
                      ) -> None:
        await uow.docs("programmes").update(f.programme_id,
                                            {"$set": {"risk_flags": sorted(f.flags)}})

    async def closed(self, uow: UnitOfWork, fact_type: str, fact_id: str,
                     f: ProgrammeOperationallyClosed | ProgrammeFinanciallyClosed) -> None:
        """Our closure, folded into our record with its date (and the balances)."""
        target = ("operationally-closed" if isinstance(f, ProgrammeOperationallyClosed)
                  else "financially-closed")
        extra: dict[str, Any] = {}
        if isinstance(f, ProgrammeFinanciallyClosed):
            extra["balances"] = [{k: d128(v) if isinstance(v, Decimal) else v
                                  for k, v in b.model_dump().items()} for b in f.balances]
        await uow.docs("programmes").update(
            f.programme_id, {"$set": {f"closed.{target}": f.closed_at, **extra}})
        await self.advance(uow, f.programme_id, fact_type, fact_id, f, f.closed_at)

    async def due_ids(self, now: datetime) -> list[str]:
        """The programmes whose next check has come (through its index)."""
        return [d["_id"] async for d in self.db.programmes.find(
            {"check_at": {"$lte": now}}, {"_id": 1})]

    async def contribution(self, uow: UnitOfWork, ev: Any) -> None:
        """A contribution's pledge or deposit, kept for the Fund's IATI activity."""
        from shared.contracts.funding import ContributionPledged

        if isinstance(ev, ContributionPledged):
            await uow.docs("contributions").update(ev.contribution_id, {"$set": {
                "contributor": ev.contributor, "currency": ev.currency,
                "amount": d128(ev.amount), "year": ev.year, "pledged_at": ev.pledged_at,
                "usd_estimate": d128(ev.usd_estimate) if ev.usd_estimate else None}},
                upsert=True)
        else:
            await uow.docs("contributions").update(ev.contribution_id, {
                "$setOnInsert": {"contributor": ev.contributor, "currency": ev.currency,
                                 "pledged_at": ev.deposited_at, "amount": d128(ev.amount),
                                 "year": ev.year},
                "$push": {"deposits": {"usd": d128(ev.usd_amount), "at": ev.deposited_at}}},
                upsert=True)

    async def contributions(self) -> list[dict[str, Any]]:
        return await self.db.contributions.find().to_list(None)

    # -- as of any moment --------------------------------------------------------------------
    async def programme_as_of(self, pid: str, instant: datetime) -> dict[str, Any] | None:
        """The programme as monitoring held it at `instant`: its state from the facts it had
        by then, its money from the allocations, transfers and refunds made by then, its
        reports and spending from the reports received by then."""
        doc = await self.db.programmes.find_one({"_id": pid})
        return None if doc is None else await self._as_of(doc, instant)

    async def _as_of(self, doc: dict[str, Any], instant: datetime,
                     reports: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        timeline = [e for e in doc.get("timeline", []) if e["at"] <= instant]
        if doc.get("timeline") and not timeline:
            return None  # monitoring had heard nothing of it yet
        if reports is None:
            reports = await self.reports({"programme_id": doc["_id"]})
        allocated: dict[str, Decimal] = {}
        for a in doc.get("allocations", []):
            if a["at"] <= instant:
                allocated[a["entity"]] = allocated.get(a["entity"], ZERO) + amount(a["usd"])
        transfers = [t for t in doc.get("transfers", []) if t["at"] <= instant]
        refunds = [r for r in doc.get("refunds", []) if r["at"] <= instant]
        mine = [r for r in reports if r["at"] <= instant]
        spent: dict[str, Decimal] = {}
        for r in mine:
            for s in r["body"].get("expenditure", []):
                e = s["entity"].upper()
                spent[e] = spent.get(e, ZERO) + Decimal(str(s["amount_usd"]))

        def total(rows: list[dict[str, Any]]) -> dict[str, Decimal128]:
            out: dict[str, Decimal] = {}
            for x in rows:
                out[x["entity"]] = out.get(x["entity"], ZERO) + amount(x["usd"])
            return {k: d128(v) for k, v in out.items()}

        past = {**doc, "transfers": transfers, "refunds": refunds,
                "transferred": total(transfers), "refunded": total(refunds),
                "spent": {k: d128(v) for k, v in spent.items()},
                "received": {r["key"]: {"report_id": r["_id"], "at": r["at"],
                                        "on_time": r["on_time"]} for r in mine},
                "beneficiaries_total": sum((r["body"].get("beneficiaries") or {}).get(
                    "total", 0) for r in mine)}
        if doc.get("allocations") is not None:
            past.update({"allocated": {k: d128(v) for k, v in allocated.items()},
                         "lines": [{"entity": e, "total_usd": d128(v)}
                                   for e, v in sorted(allocated.items())],
                         "allocated_usd": d128(sum(allocated.values(), ZERO))})
        if doc.get("timeline"):
            past["status"] = lifecycle.status_as_of(timeline, instant)
        if not transfers:
            past["start_date"] = past["end_date"] = None
        for when in ("operationally-closed", "financially-closed"):
            if (doc.get("closed") or {}).get(when) and doc["closed"][when] > instant:
                past["closed"] = {k: v for k, v in doc["closed"].items() if v <= instant}
        return past

    async def programmes_as_of(self, instant: datetime) -> tuple[list[dict[str, Any]],
                                                                 list[dict[str, Any]]]:
        """Every programme and report as they stood at `instant` (for the portfolio)."""
        reports = [r for r in await self.reports({}) if r["at"] <= instant]
        by: dict[str, list[dict[str, Any]]] = {}
        for r in reports:
            by.setdefault(r["programme_id"], []).append(r)
        docs = []
        for d in await self.programmes():
            past = await self._as_of(d, instant, by.get(d["_id"], []))
            if past is not None:
                docs.append(past)
        return docs, reports

    # -- reads --------------------------------------------------------------------------------
    async def programme(self, pid: str) -> dict[str, Any] | None:
        return await self.db.programmes.find_one({"_id": pid})

    async def programmes(self, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await self.db.programmes.find(query or {}).to_list(None)

    async def reports(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.db.reports.find(query).sort("at", ASCENDING).to_list(None)
