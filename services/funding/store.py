"""Funding's MongoDB adapter (its own database). Money invariants live in the writes:

* `fund` (one document) holds the available balance. An allocation is a conditional update
  `available >= total` in the same transaction as everything it causes, so no interleaving
  of instances can over-allocate; concurrent writers conflict and the transaction retries.
* `sources` hold each deposit's unallocated remainder, drawn oldest first, so funders can
  see which allocations their money funded; a refund comes back as sources of the
  contributions that funded the programme, in proportion (`split_refund`);
  `sum(sources.remaining) == fund.available` is kept in the same transactions.
* `journal` entries have deterministic ids (`alloc:<programme>`, `xfer:<programme>:<puno>:
  <tranche>`, ...): a movement cannot be booked twice, whatever is redelivered.
* `programmes` are read and written through the transaction's batched view
  (`UnitOfWork.docs`): a decision or an allocation checks the state it read, and a
  concurrent change of the same programme conflicts with it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from pymongo import ASCENDING

from services.funding.domain import (
    ZERO,
    Draw,
    FundingRules,
    Line,
    Release,
    Waiting,
    allocation_entry,
    allocation_lines,
    check_approval,
    check_decidable,
    check_extension,
    deposit_entry,
    draw_fifo,
    next_allocations,
    refund_entry,
    release_entry,
    releases,
    revise,
    split_deposit,
    split_refund,
    tranche_amounts,
    transfer_entry,
)
from shared import lifecycle, paging
from shared.contracts.funding import (
    AllocationLine,
    AllocationMade,
    AllocationReleased,
    ApprovedLine,
    BudgetRevised,
    ContributionDeposited,
    ContributionPledged,
    FundingSource,
    FundsRefunded,
    FundsTransferred,
    ProgrammeApproved,
    ProgrammeCancelled,
    ProgrammeDeferred,
    ProgrammeExtended,
    ProgrammeRejected,
    ProgrammeResumed,
    ProgrammeSuspended,
    ReleasedLine,
    RevisedLine,
)
from shared.contracts.intake import ProgrammeScreened, ProgrammeWithdrawn
from shared.dec128 import d128
from shared.envelope import Envelope
from shared.errors import Conflict, InvalidInput, NotFound
from shared.metrics import BUSINESS, USD  # metrics only: money itself stays Decimal
from shared.rebuild import chronological
from shared.store import Store, UnitOfWork, decimals


def m(x: Any) -> Any:
    """Decimals to Decimal128, recursively (what Mongo stores without loss)."""
    if isinstance(x, Decimal):
        return d128(x)
    if isinstance(x, dict):
        return {k: m(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [m(v) for v in x]
    return x


def amounts(doc: dict[str, Any], name: str) -> dict[str, Decimal]:
    """A per-PUNO amounts field of a programme document, as Decimals."""
    return {k: py(v) for k, v in (doc.get(name) or {}).items()}


def draws_of(doc: dict[str, Any]) -> list[Draw]:
    return [Draw(f.get("source_id", ""), f["contributor"], py(f["usd"]),
                 f.get("contribution_id") or "") for f in doc.get("funded_by", [])]


py = decimals  # stored amounts back to Decimal


CHANGES = {ProgrammeSuspended: "suspend", ProgrammeResumed: "resume",
           ProgrammeCancelled: "cancel", ProgrammeExtended: "extend",
           BudgetRevised: "revise-budget"}


def _ended(doc: dict[str, Any]) -> bool:
    """Withdrawn or cancelled: nothing more waits for money."""
    return doc.get("status") in (lifecycle.S.WITHDRAWN, lifecycle.S.CANCELLED)


class FundingStore(Store):
    """Every money movement reads and writes the one `fund` document, so concurrent money
    transactions conflict; MongoDB aborts all but one and they retry at once, which under
    load becomes a retry storm. Within a process they therefore take turns (`money_lock`);
    across instances the guarded writes keep them correct: the fund and its sources are
    read and changed through the transaction's cache (`UnitOfWork.docs`), and each is
    written with its transaction's closing writes only if its balance (`available`,
    `remaining`) is still the one the transaction read (`Store.guarded`), never below zero
    (`_spend`)."""

    guarded: ClassVar[dict[str, tuple[str, ...]]] = {
        "fund": ("available",), "sources": ("remaining",)}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.money_lock = asyncio.Lock()

    async def _fund(self, uow: UnitOfWork, inc: dict[str, Any]) -> None:
        """Add to the fund's totals (`available` among them), in the transaction's cache."""
        await uow.docs("fund").update("fund", {"$inc": m(inc)}, upsert=True)

    async def _sources(self, uow: UnitOfWork) -> list[tuple[str, str, Decimal, str | None]]:
        """The sources with money left, oldest first (what allocations draw on), as this
        transaction sees them: (id, contributor, remaining, contribution id)."""
        return [(s["_id"], s["contributor"], py(s["remaining"]), s.get("contribution_id"))
                async for s in uow.docs("sources").iter_where(
                    {"remaining": {"$gt": d128("0")}}, [("at", ASCENDING), ("_id", ASCENDING)])]

    async def _spend(self, uow: UnitOfWork, total: Decimal, drawn: dict[str, Decimal],
                     inc: dict[str, Any]) -> None:
        """Take `total` from the available balance and `drawn` from each source (and add
        `inc` to the fund's other totals); neither ever goes below zero."""
        fund = await uow.docs("fund").get("fund")
        if fund is None or py(fund["available"]) < total:
            raise Conflict("the available balance does not cover this allocation")
        sources = uow.docs("sources")
        for sid, usd in drawn.items():
            doc = await sources.get(sid)
            if doc is None or py(doc["remaining"]) < usd:
                raise Conflict(f"funding source {sid} does not cover this allocation")
            await sources.update(sid, {"$inc": {"remaining": d128(-usd)}})
        await self._fund(uow, {"available": -total, **inc})

    async def money(self, fn: Any) -> Any:
        """Run a transaction that moves money, one at a time in this process."""
        async with self.money_lock:
            result, _ = await self.transaction(fn)
        return result

    async def indexes(self) -> None:
        await self.db.programmes.create_index([("pipeline", ASCENDING), ("priority", ASCENDING),
                                               ("approved_at", ASCENDING)])
        await self.db.sources.create_index([("at", ASCENDING), ("_id", ASCENDING)])
        await self.db.journal.create_index([("at", ASCENDING)])
        await self.db.journal.create_index([("programme_id", ASCENDING)])
        await self.db.contributions.create_index([("contributor", ASCENDING)])
        await self.db.programmes.create_index([("funded_by.contributor", ASCENDING)])
        await self.db.programmes.create_index([("topup_waiting", ASCENDING)])
        # the list routes' orders (shared.paging: keyset on these, then _id)
        await self.db.programmes.create_index([("allocated_at", ASCENDING), ("_id", ASCENDING)])
        await self.db.contributions.create_index([("pledged_at", ASCENDING),
                                                  ("_id", ASCENDING)])

    # -- the lifecycle (shared.lifecycle): every fact folded into the programme's record ----
    async def fold(self, uow: UnitOfWork, pid: str, fact_type: str, fact_id: str, event: Any,
                   at: datetime) -> str | None:
        """Fold a lifecycle fact (ours or another service's, `at` its own time) into the
        programme's record and timeline; returns its status after (None: funding does not
        know the programme)."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(pid)
        if doc is None:
            return None
        rec = lifecycle.fold(doc.get("lifecycle") or lifecycle.from_status(doc.get("status")),
                             fact_type, fact_id, event, getattr(event, "decision_id", None))
        status = lifecycle.status(rec) or doc.get("status")
        await programmes.update(pid, {"$set": {
            "lifecycle": rec, "status": status,
            # in the facts' own order, not their arrival's (shared.rebuild)
            "timeline": chronological([*doc.get("timeline", []), lifecycle.timeline_entry(
                fact_type, fact_id, at, event)])}})
        return status

    async def emit(self, uow: UnitOfWork, fact: Any, traceparent: str | None = None
                   ) -> Envelope:
        """Emit a fact and, if it is a lifecycle fact, fold it into our own record too."""
        env = uow.emit(fact, traceparent=traceparent)
        await self._fold_own(uow, env.type, env.id, fact, env.time)
        return env

    async def _fold_own(self, uow: UnitOfWork, fact_type: str, fact_id: str, fact: Any,
                        at: datetime) -> None:
        pid = getattr(fact, "programme_id", None)
        if pid and fact_type in lifecycle.FACT_TYPES:
            await self.fold(uow, pid, fact_type, fact_id, fact, at)

    # -- what intake and monitoring tell us -----------------------------------------------
    async def remember_screened(self, uow: UnitOfWork, f: ProgrammeScreened, fact_id: str,
                                traceparent: str | None = None) -> None:
        """`traceparent` is the programme's trace: decisions and allocations, made later in
        other requests, continue it, so one trace follows the programme's journey."""
        p = f.programme
        await uow.docs("programmes").update(f.programme_id, {"$setOnInsert": m({
            "status": lifecycle.S.SUBMITTED,
            "title": p.title, "punos": [x.entity for x in p.punos],
            "requested": [{"entity": x.entity, "budget_usd": x.budget_usd} for x in p.punos],
            "requested_total_usd": p.total_budget_usd, "countries": p.countries,
            "region": p.region, "thematic_area": p.primary_thematic_area,
            "gcm_objectives": p.gcm_objectives, "screened_at": f.screened_at,
            "duration_months": p.duration_months,
            "traceparent": traceparent, "history": []})}, upsert=True)
        await self.fold(uow, f.programme_id, ProgrammeScreened.TYPE, fact_id, f, f.screened_at)

    async def withdrawn(self, uow: UnitOfWork, f: ProgrammeWithdrawn, fact_id: str,
                        at: datetime) -> str | None:
        """A PUNO withdrew the programme. Out of the pipeline if it waits there; if it was
        allocated already (the withdrawal raced the allocation), what is not transferred
        returns to the Fund and what was transferred is owed back. A decision the withdrawal
        raced (a rejection, a cancellation) stands (shared.lifecycle)."""
        pid = f.programme_id
        status = await self.fold(uow, pid, ProgrammeWithdrawn.TYPE, fact_id, f, f.withdrawn_at)
        if status is None:
            return status
        # when, whichever decision the withdrawal raced: the same in any order of arrival
        await uow.docs("programmes").update(pid, {"$set": {"withdrawn_at": at}})
        if status == lifecycle.S.WITHDRAWN:
            await self._end(uow, pid, "withdrawn", at)
        return status

    async def _end(self, uow: UnitOfWork, pid: str, reason: str, at: datetime) -> None:
        """A programme withdrawn or cancelled: out of the pipeline, its money released."""
        doc = await uow.docs("programmes").get(pid)
        assert doc is not None
        was = doc.get("pipeline")
        set_: dict[str, Any] = {f"{reason}_at": at}
        if doc.get("topup_waiting"):
            set_["topup_waiting"] = False
        if was == "waiting":
            set_["pipeline"] = None
        await uow.docs("programmes").update(pid, {"$set": set_})
        # allocated: released (replayed, its AllocationReleased fact does that, whenever a
        # withdrawal that raced it is merged in)
        if was == "allocated" and not self.replaying:
            await self.release(uow, pid, reason, f"rel-{pid}-{reason}", at, owe=True)

    async def closed(self, uow: UnitOfWork, fact_type: str, fact_id: str, event: Any,
                     at: datetime) -> None:
        """Monitoring's closures. On financial closure tranches never released are
        de-allocated (the refunds themselves are booked when they are received)."""
        pid = event.programme_id
        status = await self.fold(uow, pid, fact_type, fact_id, event, at)
        doc = await uow.docs("programmes").get(pid)
        if status != lifecycle.S.FINANCIALLY_CLOSED or not doc:
            return
        await uow.docs("programmes").update(pid, {"$set": {
            "topup_waiting": False,
            "pipeline": None if doc.get("pipeline") == "waiting" else doc.get("pipeline")}})
        if doc.get("pipeline") == "allocated" and not self.replaying:
            await self.release(uow, pid, "closed", f"rel-{pid}-closed", at, owe=False)

    # -- releases: allocated money back to the Fund ---------------------------------------
    def _allocated(self, doc: dict[str, Any]) -> dict[str, Decimal]:
        if doc.get("allocated") is not None:
            return amounts(doc, "allocated")
        if doc.get("pipeline") in ("allocated", "released"):  # stored before per-PUNO sums
            return {ln["entity"]: py(ln["total_usd"]) for ln in doc.get("lines", [])}
        return {}

    async def release(self, uow: UnitOfWork, pid: str, reason: str, release_id: str,
                      at: datetime, *, owe: bool, only: dict[str, Decimal] | None = None
                      ) -> Decimal:
        """Release what is allocated and not transferred (or `only` these amounts) back to
        the Fund's available balance and to the contributions it came from; with `owe`, what
        PUNOs were transferred and have not refunded becomes owed. Once per release id.
        Returns the amount released (the caller funds the pipeline after)."""
        journal = uow.docs("journal")
        if await journal.get(f"release:{release_id}"):
            return ZERO
        doc = await uow.docs("programmes").get(pid)
        assert doc is not None
        rel = ([Release(e, usd, ZERO) for e, usd in sorted(only.items()) if usd > 0]
               if only is not None else
               releases(self._allocated(doc), amounts(doc, "transferred"),
                        amounts(doc, "refunded"), owe=owe))
        if not rel:
            return ZERO
        freed = sum((r.released_usd for r in rel), ZERO)
        back = split_refund(draws_of(doc), freed) if freed else []
        fact = AllocationReleased(
            programme_id=pid, release_id=release_id, reason=reason,  # type: ignore[arg-type]
            lines=[ReleasedLine(entity=r.entity, released_usd=r.released_usd,
                                owed_usd=r.owed_usd) for r in rel],
            released_usd=freed, owed_usd=sum((r.owed_usd for r in rel), ZERO),
            funded_by=[FundingSource(contribution_id=d.contribution_id,
                                     contributor=d.contributor, usd=d.usd) for d in back],
            released_at=at)
        env = uow.emit(fact, traceparent=doc.get("traceparent"))
        await self.released(uow, fact, env.id, env.time)
        USD.labels("released").inc(float(freed))
        return freed

    async def released(self, uow: UnitOfWork, f: AllocationReleased, fact_id: str,
                       at_env: datetime) -> None:
        """What a release changes (made above, or replayed from its fact): the programme's
        allocation and what its PUNOs owe; the money back in the balance, as sources of the
        contributions it came from; the journal."""
        pid, at = f.programme_id, f.released_at
        doc = await uow.docs("programmes").get(pid)
        assert doc is not None
        set_: dict[str, Any] = {f"owed.{ln.entity}": d128(ln.owed_usd)
                                for ln in f.lines if ln.owed_usd}
        if f.reason in ("withdrawn", "cancelled"):
            set_.update({"pipeline": "released", "topup_waiting": False})
        upd: dict[str, Any] = {"$inc": {f"allocated.{ln.entity}": d128(-ln.released_usd)
                                        for ln in f.lines if ln.released_usd}, "$set": set_}
        if doc.get("allocated") is None:  # first per-PUNO sums for a document kept before
            upd = {"$set": {**set_, **{
                f"allocated.{e}": d128(v - sum((ln.released_usd for ln in f.lines
                                                      if ln.entity == e), ZERO))
                for e, v in self._allocated(doc).items()}}}
        await uow.docs("programmes").update(pid, {k: v for k, v in upd.items() if v})
        if f.released_usd:
            dims = {"countries": doc["countries"], "region": doc.get("region"),
                    "thematic_area": doc["thematic_area"], "year": at.year}
            await uow.docs("journal").add(m({"_id": f"release:{f.release_id}", **release_entry(
                pid, [(ln.entity, ln.released_usd) for ln in f.lines if ln.released_usd], at,
                **dims)}))
            for n, d in enumerate(f.funded_by):
                await uow.docs("sources").add(m({
                    "_id": f"rel:{f.release_id}:{n}", "contributor": d.contributor, "at": at,
                    "contribution_id": d.contribution_id, "release_id": f.release_id,
                    "remaining": d.usd}))
            await self._fund(uow, {"available": f.released_usd,
                                   "allocated_usd": -f.released_usd,
                                   "released_usd": f.released_usd})
        await self._fold_own(uow, AllocationReleased.TYPE, fact_id, f, at_env)

    # -- contributions ------------------------------------------------------------------------
    async def pledge(self, uow: UnitOfWork, c: ContributionPledged) -> bool:
        """Record a pledge; an identical repeat changes nothing, a different one conflicts."""
        doc = await self.db.contributions.find_one({"_id": c.contribution_id},
                                                   session=uow.session)
        if doc:
            same = (doc["contributor"], doc["currency"], py(doc["pledged_amount"]),
                    doc["year"]) == (c.contributor, c.currency, c.amount, c.year)
            if not same:
                raise Conflict(f"contribution {c.contribution_id} exists with other terms")
            return False
        await self.db.contributions.insert_one(m({
            "_id": c.contribution_id, "contributor": c.contributor,
            "contributor_name": c.contributor_name, "currency": c.currency,
            "pledged_amount": c.amount, "usd_estimate": c.usd_estimate, "year": c.year,
            "pledged_at": c.pledged_at,
            "deposited_amount": ZERO, "usd_deposited": ZERO, "deposits": []}),
            session=uow.session)
        uow.emit(c)
        return True

    async def deposit(self, uow: UnitOfWork, contribution_id: str, deposit_id: str,
                      amount: Decimal, usd: Decimal, at: datetime, rules: FundingRules
                      ) -> ContributionDeposited | None:
        """Deposit (part of) a pledge: the fee goes to the AA, the rest joins the balance.
        None when this deposit id was already booked (an idempotent repeat)."""
        doc = await self.db.contributions.find_one({"_id": contribution_id},
                                                   session=uow.session)
        if doc is None:
            raise NotFound(f"no contribution {contribution_id}; pledge it first")
        if any(d["deposit_id"] == deposit_id for d in doc["deposits"]):
            return None
        if amount <= 0:
            raise InvalidInput("a deposit must be positive",
                               errors=[{"field": "amount", "reason": "must be > 0"}])
        remaining = py(doc["pledged_amount"]) - py(doc["deposited_amount"])
        if amount > remaining:
            raise Conflict(f"deposit of {amount} {doc['currency']} exceeds the pledge's "
                           f"undeposited {remaining} {doc['currency']}")
        fee, net = split_deposit(usd, rules)
        fact = ContributionDeposited(
            contribution_id=contribution_id, contributor=doc["contributor"],
            currency=doc["currency"], amount=amount, usd_amount=usd, fee_usd=fee, net_usd=net,
            year=doc["year"], deposited_at=at, deposit_id=deposit_id)
        uow.emit(fact)
        await self.deposited(uow, fact, expect=doc["deposited_amount"])
        USD.labels("deposited").inc(float(usd))
        return fact

    async def deposited(self, uow: UnitOfWork, f: ContributionDeposited,
                        expect: Any = None) -> None:
        """What a deposit changes (booked above, or replayed from its fact): the contribution,
        a new source of money, the balance, the journal. `expect`: the deposited amount read
        before, which a concurrent deposit would have changed."""
        cid, at = f.contribution_id, f.deposited_at
        if f.deposit_id is None:
            raise InvalidInput(f"a deposit of {cid} published before facts named deposits")
        res = await self.db.contributions.update_one(
            {"_id": cid, **({"deposited_amount": expect} if expect is not None else {})},
            {"$inc": m({"deposited_amount": f.amount, "usd_deposited": f.usd_amount}),
             "$push": {"deposits": m({"deposit_id": f.deposit_id, "amount": f.amount,
                                      "usd": f.usd_amount, "fee_usd": f.fee_usd,
                                      "net_usd": f.net_usd, "at": at})}},
            session=uow.session)
        if res.matched_count != 1:
            raise Conflict(f"contribution {cid} changed under this deposit")
        await uow.docs("sources").add(m({
            "_id": f"dep:{cid}:{f.deposit_id}", "contributor": f.contributor,
            "contribution_id": cid, "at": at, "remaining": f.net_usd}))
        await self._fund(uow, {"available": f.net_usd, "deposited_usd": f.usd_amount,
                               "fees_usd": f.fee_usd})
        await self.db.journal.insert_one(m({
            "_id": f"dep:{cid}:{f.deposit_id}",
            **deposit_entry(cid, f.contributor, f.usd_amount, f.fee_usd, at, f.year)}),
            session=uow.session)

    # -- decisions ----------------------------------------------------------------------------
    async def decide(self, uow: UnitOfWork, programme_id: str, decision: str,
                     decision_id: str, rationale: str, at: datetime, rules: FundingRules,
                     priority: int | None = None,
                     budget: list[tuple[str, Decimal]] | None = None) -> str:
        """One decision; the rules refuse it (raising) before anything is written. Several
        in one transaction (a meeting) read their programmes once: `uow.docs("programmes")
        .load(ids)` first."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(programme_id)
        check_decidable(doc["status"] if doc else None, programme_id)
        assert doc is not None
        if decision == "approve":
            approved = budget or [(r["entity"], py(r["budget_usd"])) for r in doc["requested"]]
            total = check_approval(doc["punos"], approved, rules)
            fact: Any = ProgrammeApproved(
                programme_id=programme_id, decision_id=decision_id, priority=priority or 0,
                approved_budget=[ApprovedLine(entity=e, budget_usd=b) for e, b in approved],
                total_budget_usd=total, rationale=rationale, decided_at=at)
        elif decision == "reject":
            fact = ProgrammeRejected(programme_id=programme_id, decision_id=decision_id,
                                     rationale=rationale, decided_at=at)
        else:
            fact = ProgrammeDeferred(programme_id=programme_id, decision_id=decision_id,
                                     rationale=rationale, decided_at=at)
        env = uow.emit(fact, traceparent=doc.get("traceparent"))
        status = await self.decided(uow, fact, env.id, env.time, rules)
        BUSINESS.labels(f"programmes_{status}").inc()
        return status

    async def decided(self, uow: UnitOfWork, f: Any, fact_id: str, at_env: datetime,
                      rules: FundingRules) -> str:
        """What an SC decision on a screened programme changes (made above, or replayed from
        its fact): approved, it waits in the pipeline with its allocation lines (unless a
        withdrawal that raced it ended the programme); the decision is in its history."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(f.programme_id)
        assert doc is not None
        update: dict[str, Any] = {}
        if isinstance(f, ProgrammeApproved):
            status, decision = "approved", "approve"
            approved = [(b.entity, b.budget_usd) for b in f.approved_budget]
            lines = allocation_lines(approved, rules)
            update = {
                "pipeline": None if _ended(doc) else "waiting", "priority": f.priority,
                "approved_at": f.decided_at,
                "approved_budget": [{"entity": e, "budget_usd": b} for e, b in approved],
                "approved_total_usd": f.total_budget_usd,
                "lines": [{"entity": ln.entity, "programme_budget_usd": ln.programme_budget_usd,
                           "support_cost_usd": ln.support_cost_usd,
                           "total_usd": ln.total_usd} for ln in lines],
                "total_usd": sum((ln.total_usd for ln in lines), ZERO)}
        elif isinstance(f, ProgrammeRejected):
            status, decision = "rejected", "reject"
        else:
            status, decision = "deferred", "defer"
        record = {"decision": decision, "decision_id": f.decision_id,
                  "rationale": f.rationale, "at": f.decided_at}
        # a concurrent decision on this programme writes the same document: the transaction
        # conflicts and retries, and then the rules see the decision already made
        await programmes.update(f.programme_id, {"$set": m(update),
                                                 "$push": {"history": m(record)}})
        await self._fold_own(uow, type(f).TYPE, fact_id, f, at_env)
        return status

    # -- the Steering Committee's changes to approved programmes ------------------------------
    async def _change(self, uow: UnitOfWork, pid: str, command: str, decision_id: str,
                      record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The programme a change applies to, checked (shared.lifecycle) and recorded in its
        history; (doc, False) when this decision was already recorded (a repeat)."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(pid)
        if doc is None:
            raise NotFound(f"no programme {pid}")
        for h in doc.get("history", []):
            if h.get("decision_id") == decision_id:
                if h.get("decision") != command:
                    raise Conflict(f"decision {decision_id} was recorded as {h.get('decision')}")
                return doc, False
        lifecycle.check(command, doc.get("status"), pid)
        await programmes.update(pid, {"$push": {"history": m(
            {"decision": command, "decision_id": decision_id, **record})}})
        return doc, True

    async def _decided(self, uow: UnitOfWork, pid: str, command: str, fact: type,
                       decision_id: str, rationale: str, at: datetime) -> bool:
        """An SC decision that is its fact and nothing more (suspend, resume, cancel):
        checked, recorded, published; False for a repeat of the same decision."""
        doc, new = await self._change(uow, pid, command, decision_id,
                                      {"rationale": rationale, "at": at})
        if new:
            await self.emit(uow, fact(programme_id=pid, decision_id=decision_id,
                                      rationale=rationale, decided_at=at),
                            doc.get("traceparent"))
        return new

    async def suspend(self, uow: UnitOfWork, pid: str, decision_id: str, rationale: str,
                      at: datetime) -> bool:
        return await self._decided(uow, pid, "suspend", ProgrammeSuspended, decision_id,
                                   rationale, at)

    async def resume(self, uow: UnitOfWork, pid: str, decision_id: str, rationale: str,
                     at: datetime) -> bool:
        return await self._decided(uow, pid, "resume", ProgrammeResumed, decision_id,
                                   rationale, at)

    async def cancel(self, uow: UnitOfWork, pid: str, decision_id: str, rationale: str,
                     at: datetime) -> bool:
        """Cancelled by the SC: out of the pipeline; what is allocated and not transferred
        back to the Fund, what was transferred owed back (the caller funds the pipeline)."""
        new = await self._decided(uow, pid, "cancel", ProgrammeCancelled, decision_id,
                                  rationale, at)
        if new:
            await self._end(uow, pid, "cancelled", at)
        return new

    async def extend(self, uow: UnitOfWork, pid: str, decision_id: str, months: int,
                     rationale: str, at: datetime, rules: FundingRules) -> int:
        """A no-cost extension; returns the programme's duration after it."""
        doc, new = await self._change(uow, pid, "extend", decision_id,
                                      {"rationale": rationale, "at": at, "months": months})
        base = doc.get("duration_months") or 0
        if not new:
            return base + doc.get("extension_months", 0)
        total = check_extension(months, doc.get("extension_months", 0), rules)
        await uow.docs("programmes").update(pid, {"$set": {"extension_months": total}})
        await self.emit(uow, ProgrammeExtended(
            programme_id=pid, decision_id=decision_id, extension_months=months,
            total_extension_months=total, duration_months=base + total, rationale=rationale,
            decided_at=at), doc.get("traceparent"))
        return base + total

    async def revise_budget(self, uow: UnitOfWork, pid: str, decision_id: str,
                            budget: list[tuple[str, Decimal]], rationale: str, at: datetime,
                            rules: FundingRules) -> int:
        """A budget revision (top-up or move between PUNOs); returns its number. Before the
        allocation the approved budget simply changes; after it, what a PUNO loses (with its
        support cost) is released, if not yet transferred, and what grows waits in the
        pipeline as a top-up at the programme's priority (the caller funds the pipeline)."""
        doc, new = await self._change(uow, pid, "revise-budget", decision_id,
                                      {"rationale": rationale, "at": at})
        if not new:
            return doc.get("revisions", 0)
        if doc.get("topup_waiting"):
            raise Conflict(f"an earlier top-up of {pid} still waits for money")
        old = [(b["entity"], py(b["budget_usd"])) for b in doc.get("approved_budget", [])]
        revs = revise(old, budget, doc["punos"], rules)
        n = doc.get("revisions", 0) + 1
        allocated = doc.get("pipeline") == "allocated"
        if allocated:
            free = {e: a - amounts(doc, "transferred").get(e, ZERO)
                    for e, a in self._allocated(doc).items()}
            for r in revs:
                if r.change_total_usd < 0 and -r.change_total_usd > free.get(r.entity, ZERO):
                    raise Conflict(f"{r.entity} was already transferred part of what the "
                                   f"revision takes away: at most {free.get(r.entity, ZERO)}"
                                   " can move", entity=r.entity)
        fact = BudgetRevised(
            programme_id=pid, decision_id=decision_id, revision=n,
            lines=[RevisedLine(entity=r.entity, budget_usd=r.budget_usd,
                               change_usd=r.change_usd) for r in revs],
            total_budget_usd=sum((r.budget_usd for r in revs), ZERO),
            change_usd=sum((r.change_usd for r in revs), ZERO), rationale=rationale,
            decided_at=at)
        await self._revised(uow, pid, n, revs, at, rules)
        await self.emit(uow, fact, doc.get("traceparent"))
        downs = {r.entity: -r.change_total_usd for r in revs if r.change_total_usd < 0}
        if allocated and downs:
            await self.release(uow, pid, "revised", f"rel-{pid}-r{n}", at, owe=False,
                               only=downs)
        return n

    async def _revised(self, uow: UnitOfWork, pid: str, n: int, revs: list[Any], at: datetime,
                       rules: FundingRules) -> None:
        """What revision `n` changes: the approved budget; before the allocation, the
        allocation to come; after it, what grows waits in the pipeline as a top-up (unless a
        withdrawal that raced the revision ended the programme)."""
        doc = await uow.docs("programmes").get(pid)
        assert doc is not None
        approved = [(r.entity, r.budget_usd) for r in revs]
        upd: dict[str, Any] = {
            "revisions": n,
            "approved_budget": [{"entity": e, "budget_usd": b} for e, b in approved],
            "approved_total_usd": sum((b for _, b in approved), ZERO)}
        if doc.get("pipeline") != "allocated":  # still waiting: the allocation to come
            lines = allocation_lines(approved, rules)
            upd.update({"lines": [{"entity": ln.entity,
                                   "programme_budget_usd": ln.programme_budget_usd,
                                   "support_cost_usd": ln.support_cost_usd,
                                   "total_usd": ln.total_usd} for ln in lines],
                        "total_usd": sum((ln.total_usd for ln in lines), ZERO)})
        else:
            ups = [r for r in revs if r.change_total_usd > 0]
            if ups:
                upd.update({"topup_waiting": not _ended(doc), "topup": {
                    "revision": n, "at": at,
                    "total_usd": sum((r.change_total_usd for r in ups), ZERO),
                    "lines": [{"entity": r.entity, "programme_budget_usd": r.change_usd,
                               "support_cost_usd": r.change_total_usd - r.change_usd,
                               "total_usd": r.change_total_usd} for r in ups]}})
        await uow.docs("programmes").update(pid, {"$set": m(upd)})

    async def changed(self, uow: UnitOfWork, f: Any, fact_id: str, at_env: datetime,
                      rules: FundingRules) -> None:
        """An SC change to an approved programme, replayed from its fact (shared.rebuild):
        in the history, with what it changes, as the commands above made it."""
        pid = f.programme_id
        programmes = uow.docs("programmes")
        doc = await programmes.get(pid)
        if doc is None:
            raise NotFound(f"no programme {pid}")
        record: dict[str, Any] = {"decision": CHANGES[type(f)], "decision_id": f.decision_id,
                                  "rationale": f.rationale, "at": f.decided_at}
        if isinstance(f, ProgrammeExtended):
            record["months"] = f.extension_months
        await programmes.update(pid, {"$push": {"history": m(record)}})
        if isinstance(f, ProgrammeExtended):
            await programmes.update(pid, {"$set": {
                "extension_months": f.total_extension_months}})
        elif isinstance(f, BudgetRevised):
            old = [(b["entity"], py(b["budget_usd"])) for b in doc.get("approved_budget", [])]
            revs = revise(old, [(ln.entity, ln.budget_usd) for ln in f.lines], doc["punos"],
                          rules)
            await self._revised(uow, pid, f.revision, revs, f.decided_at, rules)
        await self._fold_own(uow, type(f).TYPE, fact_id, f, at_env)
        if isinstance(f, ProgrammeCancelled):
            await self._end(uow, pid, "cancelled", f.decided_at)

    # -- allocation and transfers -------------------------------------------------------------
    async def fund_pipeline(self, uow: UnitOfWork, rules: FundingRules, at: datetime
                            ) -> list[str]:
        """Allocate to what waits (programmes, and top-ups of programmes not suspended),
        head of the pipeline first, while the available balance covers them; all of them in
        the transaction's cache, written with its closing writes (the balance and the
        sources drawn guarded: `_spend`). Returns the programmes funded now."""
        programmes = uow.docs("programmes")
        fund = await uow.docs("fund").get("fund")
        available = py(fund["available"]) if fund else ZERO
        waiting = []
        for d in await programmes.load_where({"topup_waiting": True,
                                              "pipeline": {"$ne": "waiting"}}):
            if d.get("status") != lifecycle.S.SUSPENDED:
                t = d["topup"]
                waiting.append(Waiting(d["_id"], d["priority"], t["at"], py(t["total_usd"]),
                                       t["revision"]))
        # the waiting programmes in rank order (an index), only as far as the balance could
        # reach: one beyond it stops the queue whatever else waits (next_allocations), so a
        # long pipeline with no money costs one document, not the whole pipeline
        reach = ZERO
        async for d in programmes.iter_where(
                {"pipeline": "waiting"},
                [("priority", ASCENDING), ("approved_at", ASCENDING), ("_id", ASCENDING)]):
            waiting.append(Waiting(d["_id"], d["priority"], d["approved_at"],
                                   py(d["total_usd"])))
            reach += waiting[-1].total_usd
            if reach > available:
                break
        chosen = next_allocations(available, waiting)
        if not chosen:
            return []
        sources = await self._sources(uow)
        left = {sid: rem for sid, _, rem, _ in sources}  # as the allocations draw on them
        transferred = ZERO
        for w in chosen:
            draws = draw_fifo([(sid, who, left[sid], cid) for sid, who, _, cid in sources
                               if left[sid] > 0], w.total_usd)
            for d in draws:
                left[d.source_id] -= d.usd
            transferred += await self._allocate(uow, w, draws, rules, at)
        drawn = {sid: rem - left[sid] for sid, _, rem, _ in sources if left[sid] != rem}
        total = sum((w.total_usd for w in chosen), ZERO)
        # the invariant: never below zero (checked here), whoever else is allocating (the
        # store writes the balances only if they are still what this transaction read)
        await self._spend(uow, total, drawn,
                          {"allocated_usd": total, "transferred_usd": transferred})
        return list(dict.fromkeys(w.programme_id for w in chosen))

    async def _allocate(self, uow: UnitOfWork, w: Waiting, draws: list[Draw],
                        rules: FundingRules, at: datetime) -> Decimal:
        """Book one allocation (or top-up) and its first transfer (the balance is the
        caller's); returns the amount transferred."""
        prog = await uow.docs("programmes").get(w.programme_id)
        assert prog is not None
        src = prog["topup"]["lines"] if w.revision else prog["lines"]
        fact = AllocationMade(
            programme_id=w.programme_id,
            allocation_id=f"a-{w.programme_id}" + (f"-r{w.revision}" if w.revision else ""),
            lines=[AllocationLine(entity=ln["entity"],
                                  programme_budget_usd=py(ln["programme_budget_usd"]),
                                  support_cost_usd=py(ln["support_cost_usd"]),
                                  total_usd=py(ln["total_usd"])) for ln in src],
            total_usd=w.total_usd,
            funded_by=[FundingSource(contribution_id=d.contribution_id, contributor=d.contributor,
                                     usd=d.usd) for d in draws],
            allocated_at=at)
        env = uow.emit(fact, traceparent=prog.get("traceparent"))
        await self.allocated(uow, fact, env.id, env.time, draws)
        BUSINESS.labels("allocations_made").inc()
        USD.labels("allocated").inc(float(w.total_usd))
        prog = await uow.docs("programmes").get(w.programme_id)
        assert prog is not None
        if w.revision:  # a top-up is transferred at once, as a tranche of its own
            return await self._transfer(uow, prog, len(rules.tranches) + w.revision,
                                        {ln.entity: ln.total_usd for ln in fact.lines},
                                        f"-r{w.revision}", at)
        return await self._release(uow, prog, 0, rules, at)

    async def allocated(self, uow: UnitOfWork, f: AllocationMade, fact_id: str,
                        at_env: datetime, draws: list[Draw]) -> None:
        """What an allocation (or a top-up: its id ends -r<revision>) changes in the programme
        and the journal (made above, or replayed from its fact); `draws`: the sources it
        took, whose balance and remainders the caller books."""
        pid, at = f.programme_id, f.allocated_at
        suffix = f.allocation_id.removeprefix(f"a-{pid}")
        funded = [{"source_id": d.source_id, "contributor": d.contributor,
                   "contribution_id": d.contribution_id, "usd": d.usd} for d in draws]
        if suffix:
            upd: dict[str, Any] = {
                "$set": {"topup_waiting": False, "topup": None},
                "$inc": {f"allocated.{ln.entity}": d128(ln.total_usd) for ln in f.lines},
                "$push": {"funded_by": {"$each": m(funded)}}}
        else:
            upd = {"$set": m({
                "pipeline": "allocated", "allocated_at": at, "tranches_released": 0,
                "allocated": {ln.entity: ln.total_usd for ln in f.lines},
                "funded_by": funded})}
        prog = await uow.docs("programmes").update(pid, upd)
        assert prog is not None
        lines = [Line(ln.entity, ln.programme_budget_usd, ln.support_cost_usd) for ln in f.lines]
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        await uow.docs("journal").add(m({
            "_id": f"alloc:{pid}{suffix.replace('-', ':')}",
            **allocation_entry(pid, lines, at, **dims)}))
        await self._fold_own(uow, AllocationMade.TYPE, fact_id, f, at_env)

    async def _release(self, uow: UnitOfWork, prog: dict[str, Any], tranche: int,
                       rules: FundingRules, at: datetime) -> Decimal:
        """Transfer tranche `tranche + 1` of the allocation to each PUNO: its share, never
        more than the PUNO's allocation not yet transferred (a revision may have moved some
        away), and the last tranche all of that; returns the total (the caller books it on
        the fund document)."""
        pid = prog["_id"]
        if prog.get("pipeline") != "allocated" or prog.get("tranches_released", 0) != tranche:
            raise Conflict(f"tranche {tranche + 1} of {pid} was already released")
        last = tranche == len(rules.tranches) - 1
        free = {e: a - amounts(prog, "transferred").get(e, ZERO)
                for e, a in self._allocated(prog).items()}
        per = {}
        for ln in prog["lines"]:
            e = ln["entity"]
            share = tranche_amounts(py(ln["total_usd"]), rules.tranches)[tranche]
            per[e] = free.get(e, ZERO) if last else min(share, free.get(e, ZERO))
        await uow.docs("programmes").update(pid, {"$set": {"tranches_released": tranche + 1}})
        return await self._transfer(uow, prog, tranche + 1, per, f"-{tranche + 1}", at)

    async def _transfer(self, uow: UnitOfWork, prog: dict[str, Any], tranche: int,
                        per: dict[str, Decimal], suffix: str, at: datetime) -> Decimal:
        pid = prog["_id"]
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        total = ZERO
        inc: dict[str, Any] = {}
        for entity, amount in per.items():
            if amount <= 0:
                continue
            total += amount
            await uow.docs("journal").add(m({
                "_id": f"xfer:{pid}:{entity}:{suffix.lstrip('-')}",
                **transfer_entry(pid, entity, amount, at, **dims)}))
            inc[f"transferred.{entity}"] = d128(amount)
            await self.emit(uow, FundsTransferred(
                programme_id=pid, transfer_id=f"t-{pid}-{entity}{suffix}",
                entity=entity, tranche=tranche, amount_usd=amount,
                transferred_at=at), prog.get("traceparent"))
        if inc:
            await uow.docs("programmes").update(pid, {"$inc": inc})
        BUSINESS.labels("tranches_transferred").inc()
        USD.labels("transferred").inc(float(total))
        return total

    async def release_next_tranche(self, uow: UnitOfWork, programme_id: str,
                                   rules: FundingRules, at: datetime) -> int:
        prog = await uow.docs("programmes").get(programme_id)
        if prog is None:
            raise NotFound(f"no programme {programme_id}")
        if prog.get("pipeline") != "allocated":
            raise Conflict(f"{programme_id} has no allocation yet")
        lifecycle.check("transfer", prog.get("status"), programme_id)
        done = prog.get("tranches_released", 0)
        if done >= len(rules.tranches):
            raise Conflict(f"all {len(rules.tranches)} tranche(s) of {programme_id} were "
                           "already transferred")
        total = await self._release(uow, prog, done, rules, at)
        await self._fund(uow, {"transferred_usd": total})
        return done + 1

    async def refund(self, uow: UnitOfWork, programme_id: str, refund_id: str, entity: str,
                     amount: Decimal, at: datetime) -> bool:
        """A PUNO returns unspent money: at most what it was transferred, net of refunds.
        False when this refund id was already booked."""
        if await uow.docs("journal").get(f"refund:{refund_id}"):
            return False
        prog = await uow.docs("programmes").get(programme_id)
        if prog is None:
            raise NotFound(f"no programme {programme_id}")
        if amount <= 0:
            raise InvalidInput("a refund must be positive",
                               errors=[{"field": "amount_usd", "reason": "must be > 0"}])
        net = py(prog.get("transferred", {}).get(entity, ZERO)) - py(
            prog.get("refunded", {}).get(entity, ZERO))
        if amount > net:
            raise Conflict(f"{entity} holds {net} of {programme_id}; cannot refund {amount}")
        fact = FundsRefunded(programme_id=programme_id, refund_id=refund_id, entity=entity,
                             amount_usd=amount, refunded_at=at)
        env = uow.emit(fact, traceparent=prog.get("traceparent"))
        await self.refunded(uow, fact, env.id, env.time)
        USD.labels("refunded").inc(float(amount))
        return True

    async def refunded(self, uow: UnitOfWork, f: FundsRefunded, fact_id: str,
                       at_env: datetime) -> None:
        """What a refund changes (booked above, or replayed from its fact): what the PUNO
        holds and owes; the money back in the balance as sources of the contributions that
        funded the programme, in proportion; the journal."""
        pid, entity, amount, at = f.programme_id, f.entity, f.amount_usd, f.refunded_at
        prog = await uow.docs("programmes").get(pid)
        assert prog is not None
        owed = amounts(prog, "owed").get(entity, ZERO)
        upd: dict[str, Any] = {"$inc": {f"refunded.{entity}": d128(amount)}}
        if owed:  # what a withdrawn or cancelled programme's PUNO owes back
            upd["$set"] = {f"owed.{entity}": d128(max(owed - amount, ZERO))}
        await uow.docs("programmes").update(pid, upd)
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        await uow.docs("journal").add(m({
            "_id": f"refund:{f.refund_id}", **refund_entry(pid, entity, amount, at, **dims)}))
        back = split_refund([Draw(d["source_id"], d["contributor"], py(d["usd"]),
                                  d.get("contribution_id") or "")
                             for d in prog.get("funded_by", [])], amount)
        for n, d in enumerate(back):
            await uow.docs("sources").add(m({
                "_id": f"ref:{f.refund_id}:{n}", "contributor": d.contributor, "at": at,
                "contribution_id": d.contribution_id, "refund_id": f.refund_id,
                "remaining": d.usd}))
        await self._fund(uow, {"available": amount, "refunded_usd": amount})
        await self._fold_own(uow, FundsRefunded.TYPE, fact_id, f, at_env)

    # -- our facts replayed (shared.rebuild): what the live paths book in bulk, one by one --
    async def replay_allocation(self, uow: UnitOfWork, f: AllocationMade, fact_id: str,
                                at_env: datetime) -> None:
        """An allocation from its fact: the oldest sources drawn first, as when it was made
        (the Fund's money facts replayed in their order leave the sources as they were
        then), checked against the contributions the fact names."""
        draws = draw_fifo(await self._sources(uow), f.total_usd)
        if [(d.contribution_id, d.usd) for d in draws] != [
                (x.contribution_id, x.usd) for x in f.funded_by]:
            raise Conflict(f"{f.allocation_id}: the replayed sources give "
                           f"{[(d.contribution_id, str(d.usd)) for d in draws]}, the fact "
                           f"{[(x.contribution_id, str(x.usd)) for x in f.funded_by]}")
        drawn: dict[str, Decimal] = {}
        for d in draws:
            drawn[d.source_id] = drawn.get(d.source_id, ZERO) + d.usd
        await self._spend(uow, f.total_usd, drawn, {"allocated_usd": f.total_usd})
        await self.allocated(uow, f, fact_id, at_env, draws)

    async def replay_transfer(self, uow: UnitOfWork, f: FundsTransferred, fact_id: str,
                              at_env: datetime) -> None:
        pid, at = f.programme_id, f.transferred_at
        prog = await uow.docs("programmes").get(pid)
        assert prog is not None
        suffix = f.transfer_id.removeprefix(f"t-{pid}-{f.entity}")
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        await uow.docs("journal").add(m({
            "_id": f"xfer:{pid}:{f.entity}:{suffix.lstrip('-')}",
            **transfer_entry(pid, f.entity, f.amount_usd, at, **dims)}))
        upd: dict[str, Any] = {"$inc": {f"transferred.{f.entity}": d128(f.amount_usd)}}
        if not suffix.startswith("-r"):  # a tranche of the allocation, not a top-up
            upd["$set"] = {"tranches_released": max(prog.get("tranches_released", 0),
                                                    f.tranche)}
        await uow.docs("programmes").update(pid, upd)
        await self._fund(uow, {"transferred_usd": f.amount_usd})
        await self._fold_own(uow, FundsTransferred.TYPE, fact_id, f, at_env)

    async def replay(self, uow: UnitOfWork, inc: Any, rules: FundingRules) -> None:
        """One of our facts, replayed (shared.rebuild)."""
        f, fid, at = inc.event, inc.id, inc.envelope.time
        if isinstance(f, ContributionPledged):
            await self.pledge(uow, f)
        elif isinstance(f, ContributionDeposited):
            await self.deposited(uow, f)
        elif isinstance(f, ProgrammeApproved | ProgrammeRejected | ProgrammeDeferred):
            await self.decided(uow, f, fid, at, rules)
        elif isinstance(f, tuple(CHANGES)):
            await self.changed(uow, f, fid, at, rules)
        elif isinstance(f, AllocationMade):
            await self.replay_allocation(uow, f, fid, at)
        elif isinstance(f, FundsTransferred):
            await self.replay_transfer(uow, f, fid, at)
        elif isinstance(f, FundsRefunded):
            await self.refunded(uow, f, fid, at)
        elif isinstance(f, AllocationReleased):
            await self.released(uow, f, fid, at)

    # -- reads --------------------------------------------------------------------------------
    async def journal(self, as_of: datetime | None = None) -> list[dict[str, Any]]:
        q = {"at": {"$lte": as_of}} if as_of else {}
        return [py(e) async for e in self.db.journal.find(q).sort("at", ASCENDING)]

    async def pledges(self, as_of: datetime | None = None) -> list[tuple[int, Decimal]]:
        """(year, USD value) of each pledge: its amount if in USD, else its USD estimate."""
        q = {"pledged_at": {"$lte": as_of}} if as_of else {}
        out = []
        async for c in self.db.contributions.find(q):
            usd = c["pledged_amount"] if c["currency"] == "USD" else c.get("usd_estimate")
            out.append((c["year"], py(usd) if usd is not None else ZERO))
        return out

    async def fund(self) -> dict[str, Any]:
        return py(await self.db.fund.find_one({"_id": "fund"}) or {})

    async def contributions(self, contributor: str | None, cursor: str | None = None,
                            limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        q = {"contributor": contributor} if contributor else {}
        docs, nxt = await self.page("contributions", q, [("pledged_at", 1)], cursor, limit)
        out = []
        for d in docs:
            c = py(d)
            out.append({"contribution_id": c.pop("_id"), **c})
        return out, nxt

    async def pipeline(self, cursor: str | None, limit: int
                       ) -> tuple[list[dict[str, Any]], str | None, int]:
        """A page of the waiting programmes in rank order, and the rank of its first before
        it (how many wait ahead)."""
        q = {"pipeline": "waiting"}
        order = [("priority", 1), ("approved_at", 1)]
        docs, nxt = await self.page("programmes", q, order, cursor, limit)
        first = await paging.count_before(self.db.programmes, q, order, docs[0]) if (
            docs and cursor) else 0
        return [py(d) for d in docs], nxt, first

    async def programme_as_of(self, programme_id: str, instant: datetime
                              ) -> dict[str, Any] | None:
        """The programme as funding held it at `instant`: its state from the facts it had
        folded by then, its money from the journal entries booked by then."""
        doc = await self.programme(programme_id)
        if doc is None or (doc.get("screened_at") and doc["screened_at"] > instant):
            return None
        entries = [py(e) async for e in self.db.journal.find(
            {"programme_id": programme_id, "at": {"$lte": instant}})]
        money: dict[str, dict[str, Decimal]] = {k: {} for k in (
            "allocated", "transferred", "refunded")}

        def add(kind: str, entity: str, usd: Decimal) -> None:
            money[kind][entity] = money[kind].get(entity, ZERO) + usd

        for e in entries:
            for ln in e["lines"]:
                if ln["account"] == "cash:allocated" and e["kind"] in ("allocation", "release"):
                    add("allocated", ln["entity"], ln["debit"] - ln["credit"])
                elif ln["account"] == "transfers" and e["kind"] == "transfer":
                    add("transferred", ln["entity"], ln["debit"])
                elif ln["account"] == "refunds":
                    add("refunded", ln["entity"], ln["credit"])
        status = (lifecycle.status_as_of(doc["timeline"], instant) if doc.get("timeline")
                  else doc.get("status"))
        owed = ({e: max(t - money["refunded"].get(e, ZERO), ZERO)
                 for e, t in money["transferred"].items()}
                if status in (lifecycle.S.WITHDRAWN, lifecycle.S.CANCELLED) else {})
        history = [h for h in doc.get("history", []) if h.get("at") and h["at"] <= instant]
        waiting = doc.get("approved_at") and doc["approved_at"] <= instant and (
            status == lifecycle.S.APPROVED)
        return {**doc, **money, "owed": owed, "status": status, "history": history,
                "pipeline": "waiting" if waiting else (
                    doc.get("pipeline") if money["allocated"] else None),
                "tranches_released": len({e["_id"] for e in entries
                                          if e["kind"] == "transfer"})}

    async def pipeline_as_of(self, instant: datetime) -> list[dict[str, Any]]:
        """The programmes waiting for money at `instant`, in rank order."""
        out = []
        async for d in self.db.programmes.find({"approved_at": {"$lte": instant}}):
            d = py(d)
            if d.get("timeline") and lifecycle.status_as_of(
                    d["timeline"], instant) == lifecycle.S.APPROVED:
                out.append(d)
        return sorted(out, key=lambda d: (d["priority"], d["approved_at"], d["_id"]))

    async def programme(self, programme_id: str) -> dict[str, Any] | None:
        d = await self.db.programmes.find_one({"_id": programme_id})
        return py(d) if d else None

    async def programmes(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return [py(d) async for d in self.db.programmes.find(query).sort(
            [("priority", ASCENDING), ("approved_at", ASCENDING)])]
