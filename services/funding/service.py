"""Funding's use cases: each one transaction, and each that adds money or frees a place in
the pipeline also funds the pipeline in that same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.funding.commands import (
    BudgetRevision,
    Decision,
    Deposit,
    Extension,
    Meeting,
    Pledge,
    Refund,
    ScDecision,
)
from services.funding.domain import FundingRules
from services.funding.store import FundingStore
from shared import topics
from shared.consumer import Incoming, Rejection, apply_each, programmes_of
from shared.contracts.funding import ContributionDeposited, ContributionPledged, SubmitRefund
from shared.contracts.intake import ProgrammeScreened, ProgrammeWithdrawn
from shared.contracts.monitoring import (
    ProgrammeFinanciallyClosed,
    ProgrammeOperationallyClosed,
)
from shared.envelope import utcnow
from shared.errors import MptfError
from shared.logging import get_logger
from shared.rebuild import Plan, runs
from shared.store import UnitOfWork, is_transient
from shared.telemetry import tag_programme

log = get_logger("mptf.funding")
PROGRAMMES_CONSUMER = "funding.programmes"
REFUNDS_CONSUMER = "funding.refunds"


async def pledge(store: FundingStore, cmd: Pledge) -> bool:
    fact = ContributionPledged(**cmd.model_dump(), pledged_at=utcnow())
    return await store.money(lambda uow: store.pledge(uow, fact))


async def deposit(store: FundingStore, rules: FundingRules, contribution_id: str, cmd: Deposit
                  ) -> tuple[ContributionDeposited | None, list[str]]:
    at = utcnow()

    async def work(uow: UnitOfWork) -> tuple[ContributionDeposited | None, list[str]]:
        fact = await store.deposit(uow, contribution_id, cmd.deposit_id, cmd.amount,
                                   cmd.usd_amount, at, rules)
        funded = await store.fund_pipeline(uow, rules, at) if fact else []
        return fact, funded

    return await store.money(work)


async def _decide(store: FundingStore, rules: FundingRules, uow: UnitOfWork, cmd: Decision,
                  at: datetime) -> str:
    """One decision in the caller's transaction, the same whether alone or in a meeting."""
    budget = [(b.entity, b.budget_usd) for b in cmd.approved_budget or []] or None
    return await store.decide(uow, cmd.programme_id, cmd.decision, cmd.decision_id,
                              cmd.rationale, at, rules, cmd.priority, budget)


async def decide(store: FundingStore, rules: FundingRules, cmd: Decision
                 ) -> tuple[str, list[str]]:
    tag_programme(cmd.programme_id)
    at = utcnow()

    async def work(uow: UnitOfWork) -> tuple[str, list[str]]:
        status = await _decide(store, rules, uow, cmd, at)
        funded = await store.fund_pipeline(uow, rules, at) if status == "approved" else []
        return status, funded

    return await store.money(work)


async def meet(store: FundingStore, rules: FundingRules, meeting: Meeting
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """A meeting's decisions in one transaction: its programmes read in one query, each
    decision checked by the same rules as a single one (a refused decision changes nothing
    and is reported with its problem), then the pipeline funded once."""
    at = utcnow()

    async def work(uow: UnitOfWork) -> tuple[list[dict[str, Any]], list[str]]:
        await uow.docs("programmes").load(d.programme_id for d in meeting.decisions)
        results: list[dict[str, Any]] = []
        for cmd in meeting.decisions:
            try:
                status = await _decide(store, rules, uow, cmd, at)
            except MptfError as e:
                if is_transient(e.__cause__ or e):
                    raise
                results.append({"programme_id": cmd.programme_id, "status": "refused",
                                "problem": {"code": e.code, "title": e.title,
                                            "status": e.status, "detail": e.detail}})
                continue
            results.append({"programme_id": cmd.programme_id, "status": status})
        approved = any(r["status"] == "approved" for r in results)
        return results, (await store.fund_pipeline(uow, rules, at) if approved else [])

    return await store.money(work)


async def release_tranche(store: FundingStore, rules: FundingRules, programme_id: str) -> int:
    tag_programme(programme_id)
    at = utcnow()
    return await store.money(
        lambda uow: store.release_next_tranche(uow, programme_id, rules, at))


async def refund(store: FundingStore, rules: FundingRules, programme_id: str, cmd: Refund
                 ) -> tuple[bool, list[str]]:
    tag_programme(programme_id)
    at = utcnow()

    async def work(uow: UnitOfWork) -> tuple[bool, list[str]]:
        booked = await store.refund(uow, programme_id, cmd.refund_id, cmd.entity,
                                    cmd.amount_usd, at)
        return booked, (await store.fund_pipeline(uow, rules, at) if booked else [])

    return await store.money(work)


async def change(store: FundingStore, rules: FundingRules, programme_id: str, command: str,
                 cmd: ScDecision | Extension | BudgetRevision) -> tuple[dict[str, Any], list[str]]:
    """A Steering Committee change to an approved programme (suspend, resume, cancel,
    extend, revise-budget), in one transaction that also funds the pipeline when money came
    free or a top-up waits. Returns what the route answers and the programmes funded."""
    tag_programme(programme_id)
    at = utcnow()

    async def work(uow: UnitOfWork) -> tuple[dict[str, Any], list[str]]:
        out: dict[str, Any] = {"programme_id": programme_id, "decision_id": cmd.decision_id}
        if isinstance(cmd, Extension):
            out["duration_months"] = await store.extend(
                uow, programme_id, cmd.decision_id, cmd.months, cmd.rationale, at, rules)
        elif isinstance(cmd, BudgetRevision):
            out["revision"] = await store.revise_budget(
                uow, programme_id, cmd.decision_id,
                [(b.entity, b.budget_usd) for b in cmd.approved_budget], cmd.rationale, at,
                rules)
        else:
            act = {"suspend": store.suspend, "resume": store.resume,
                   "cancel": store.cancel}[command]
            out["recorded"] = await act(uow, programme_id, cmd.decision_id, cmd.rationale, at)
        funded = (await store.fund_pipeline(uow, rules, at)
                  if command in ("cancel", "revise-budget", "resume") else [])
        doc = await uow.docs("programmes").get(programme_id)
        out["status"] = doc.get("status") if doc else None
        return out, funded

    return await store.money(work)


async def handle_refunds(store: FundingStore, rules: FundingRules, batch: list[Incoming]
                         ) -> list[Rejection]:
    """Refunds entity systems report on their own topics: the sender is the refunding PUNO
    (the consumer checked the topic's owner is the claimed source); each is booked when
    received, once per refund id, and the pipeline is funded again. One that the rules
    refuse (more than the PUNO holds, an unknown programme) is dead-lettered with why."""

    async def apply(uow: UnitOfWork, inc: Incoming) -> None:
        ev = inc.event
        assert isinstance(ev, SubmitRefund)
        entity = inc.envelope.source.removeprefix(topics.ENTITY_URN).upper()
        tag_programme(ev.programme_id)
        if await store.refund(uow, ev.programme_id, ev.refund_id, entity, ev.amount_usd,
                              inc.envelope.time):
            await store.fund_pipeline(uow, rules, inc.envelope.time)

    async with store.money_lock:
        return await apply_each(store, REFUNDS_CONSUMER, batch, apply, programmes_of())


async def handle_programme_facts(store: FundingStore, rules: FundingRules,
                                 batch: list[Incoming]) -> list[Rejection]:
    """Intake's facts: screened programmes become decidable; withdrawn ones leave the
    pipeline, or give back their allocation (which may let the next one be funded).
    Monitoring's closures are folded into the lifecycle; on financial closure tranches never
    released go back to the Fund (refunds are booked when they are received)."""

    async def apply(uow: UnitOfWork, inc: Incoming) -> None:
        ev = inc.event
        at = inc.envelope.time
        if isinstance(ev, ProgrammeScreened):
            # the programme's trace, as its submitter started it (the same when replayed)
            await store.remember_screened(uow, ev, inc.id, inc.envelope.traceparent)
            return
        if isinstance(ev, ProgrammeWithdrawn):
            await store.withdrawn(uow, ev, inc.id, at)
        elif isinstance(ev, ProgrammeOperationallyClosed | ProgrammeFinanciallyClosed):
            await store.closed(uow, inc.type, inc.id, ev, at)
        if not store.replaying:  # replayed, our own facts say what was allocated then
            await store.fund_pipeline(uow, rules, at)

    async with store.money_lock:  # withdrawals and closures fund the pipeline too
        return await apply_each(store, PROGRAMMES_CONSUMER, batch, apply, programmes_of())


# -- rebuilt from the log (shared.rebuild; `mptf rebuild funding`) -----------------------------
OWN_FACTS_CONSUMER = "funding.own-facts"
FOREIGN = frozenset({ProgrammeScreened.TYPE, ProgrammeWithdrawn.TYPE,
                     ProgrammeOperationallyClosed.TYPE, ProgrammeFinanciallyClosed.TYPE})


async def project(store: FundingStore, batch: list[Incoming]) -> list[Rejection]:
    """Our facts, each as the store code that made it booked it (money facts in the order
    they were made, so the oldest sources are drawn as they were), and intake's and
    monitoring's facts as the live consumers apply them, deciding nothing: what funding
    decided because of them is among its own facts. In the batch's order, run by run."""
    rules = store.settings.rules()  # type: ignore[attr-defined]
    out: list[Rejection] = []
    def mine(i: Incoming) -> bool:
        return i.record.topic.endswith(topics.FUNDING)

    for own, run in runs(batch, own=mine, wanted=lambda i: mine(i) or i.type in FOREIGN):
        if own:
            out += await apply_each(store, OWN_FACTS_CONSUMER, run,
                                    lambda uow, inc: store.replay(uow, inc, rules),
                                    programmes_of())
        else:
            out += await handle_programme_facts(store, rules, run)
    return out


REBUILD = Plan(topics=(topics.PROGRAMMES, topics.FUNDING, topics.MONITORING),
               project=project,  # type: ignore[arg-type]
               read_models=("programmes", "contributions", "sources", "fund", "journal"))
