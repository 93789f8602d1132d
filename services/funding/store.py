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
from typing import Any

from bson import Decimal128
from pymongo import ASCENDING, ReturnDocument, UpdateOne

from services.funding.domain import (
    ZERO,
    Draw,
    FundingRules,
    Line,
    Waiting,
    allocation_entry,
    allocation_lines,
    check_approval,
    check_decidable,
    deposit_entry,
    draw_fifo,
    next_allocations,
    refund_entry,
    split_deposit,
    split_refund,
    tranche_amounts,
    transfer_entry,
)
from shared.contracts.funding import (
    AllocationLine,
    AllocationMade,
    ApprovedLine,
    ContributionDeposited,
    ContributionPledged,
    FundingSource,
    FundsRefunded,
    FundsTransferred,
    ProgrammeApproved,
    ProgrammeDeferred,
    ProgrammeRejected,
)
from shared.contracts.intake import ProgrammeScreened
from shared.errors import Conflict, InvalidInput, NotFound
from shared.metrics import BUSINESS, USD  # metrics only: money itself stays Decimal
from shared.store import Store, UnitOfWork


def m(x: Any) -> Any:
    """Decimals to Decimal128, recursively (what Mongo stores without loss)."""
    if isinstance(x, Decimal):
        return Decimal128(x)
    if isinstance(x, dict):
        return {k: m(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [m(v) for v in x]
    return x


def py(x: Any) -> Any:
    """Decimal128 back to Decimal, recursively."""
    if isinstance(x, Decimal128):
        return x.to_decimal()
    if isinstance(x, dict):
        return {k: py(v) for k, v in x.items()}
    if isinstance(x, list):
        return [py(v) for v in x]
    return x


class FundingStore(Store):
    """Every money movement reads and writes the one `fund` document, so concurrent money
    transactions conflict; MongoDB aborts all but one and they retry at once, which under
    load becomes a retry storm. Within a process they therefore take turns (`money_lock`);
    across instances the conditional update on the balance keeps them correct."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.money_lock = asyncio.Lock()

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

    # -- what intake tells us -----------------------------------------------------------------
    async def remember_screened(self, uow: UnitOfWork, f: ProgrammeScreened,
                                traceparent: str | None = None) -> None:
        """`traceparent` is the programme's trace: decisions and allocations, made later in
        other requests, continue it, so one trace follows the programme's journey."""
        p = f.programme
        await uow.docs("programmes").update(f.programme_id, {"$setOnInsert": m({
            "status": "screened-eligible" if f.eligible else "screened-ineligible",
            "title": p.title, "punos": [x.entity for x in p.punos],
            "requested": [{"entity": x.entity, "budget_usd": x.budget_usd} for x in p.punos],
            "requested_total_usd": p.total_budget_usd, "countries": p.countries,
            "region": p.region, "thematic_area": p.primary_thematic_area,
            "gcm_objectives": p.gcm_objectives, "screened_at": f.screened_at,
            "traceparent": traceparent, "history": []})}, upsert=True)

    async def remember_withdrawn(self, uow: UnitOfWork, programme_id: str, at: datetime
                                 ) -> bool:
        """Take a withdrawn programme out of the pipeline. False if it was already funded
        (withdrawal raced with allocation): the money is out, a refund must bring it back."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(programme_id)
        if doc is None:
            return True  # never screened here: nothing to take out
        if doc.get("pipeline") != "allocated":
            await programmes.update(programme_id, {"$set": {
                "status": "withdrawn", "pipeline": None, "withdrawn_at": at}})
            return True
        await programmes.update(programme_id, {"$set": {"withdrawn_after_allocation": at}})
        return False

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
        await self.db.contributions.update_one(
            {"_id": contribution_id, "deposited_amount": doc["deposited_amount"]},
            {"$inc": m({"deposited_amount": amount, "usd_deposited": usd}),
             "$push": {"deposits": m({"deposit_id": deposit_id, "amount": amount, "usd": usd,
                                      "fee_usd": fee, "net_usd": net, "at": at})}},
            session=uow.session)
        await self.db.sources.insert_one(m({
            "_id": f"dep:{contribution_id}:{deposit_id}", "contributor": doc["contributor"],
            "contribution_id": contribution_id, "at": at, "remaining": net}),
            session=uow.session)
        await self.db.fund.update_one({"_id": "fund"}, {"$inc": m({
            "available": net, "deposited_usd": usd, "fees_usd": fee})}, upsert=True,
            session=uow.session)
        await self.db.journal.insert_one(m({
            "_id": f"dep:{contribution_id}:{deposit_id}",
            **deposit_entry(contribution_id, doc["contributor"], usd, fee, at, doc["year"])}),
            session=uow.session)
        fact = ContributionDeposited(
            contribution_id=contribution_id, contributor=doc["contributor"],
            currency=doc["currency"], amount=amount, usd_amount=usd, fee_usd=fee, net_usd=net,
            year=doc["year"], deposited_at=at)
        uow.emit(fact)
        USD.labels("deposited").inc(float(usd))
        return fact

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
        record = {"decision": decision, "decision_id": decision_id, "rationale": rationale,
                  "at": at}
        if decision == "approve":
            approved = budget or [(r["entity"], py(r["budget_usd"])) for r in doc["requested"]]
            total = check_approval(doc["punos"], approved, rules)
            lines = allocation_lines(approved, rules)
            status, update = "approved", {
                "pipeline": "waiting", "priority": priority, "approved_at": at,
                "approved_budget": [{"entity": e, "budget_usd": b} for e, b in approved],
                "approved_total_usd": total,
                "lines": [{"entity": ln.entity, "programme_budget_usd": ln.programme_budget_usd,
                           "support_cost_usd": ln.support_cost_usd,
                           "total_usd": ln.total_usd} for ln in lines],
                "total_usd": sum((ln.total_usd for ln in lines), ZERO)}
            fact: Any = ProgrammeApproved(
                programme_id=programme_id, decision_id=decision_id, priority=priority or 0,
                approved_budget=[ApprovedLine(entity=e, budget_usd=b) for e, b in approved],
                total_budget_usd=total, rationale=rationale, decided_at=at)
        elif decision == "reject":
            status, update = "rejected", {}
            fact = ProgrammeRejected(programme_id=programme_id, decision_id=decision_id,
                                     rationale=rationale, decided_at=at)
        else:
            status, update = "deferred", {}
            fact = ProgrammeDeferred(programme_id=programme_id, decision_id=decision_id,
                                     rationale=rationale, decided_at=at)
        # a concurrent decision on this programme writes the same document: the transaction
        # conflicts and retries, and then the rules see the decision already made
        await programmes.update(programme_id, {"$set": m({"status": status, **update}),
                                               "$push": {"history": m(record)}})
        uow.emit(fact, traceparent=doc.get("traceparent"))
        BUSINESS.labels(f"programmes_{status}").inc()
        return status

    # -- allocation and transfers -------------------------------------------------------------
    async def fund_pipeline(self, uow: UnitOfWork, rules: FundingRules, at: datetime
                            ) -> list[str]:
        """Allocate to waiting programmes, head of the pipeline first, while the available
        balance covers them; all of them in a few writes (one conditional update of the
        balance for their sum, one bulk write per collection). Returns the programmes funded
        now."""
        programmes = uow.docs("programmes")
        fund = await self.db.fund.find_one({"_id": "fund"}, session=uow.session)
        available = py(fund["available"]) if fund else ZERO
        waiting = [Waiting(d["_id"], d["priority"], d["approved_at"], py(d["total_usd"]))
                   for d in await programmes.load_where({"pipeline": "waiting"})]
        chosen = next_allocations(available, waiting)
        if not chosen:
            return []
        sources = [(s["_id"], s["contributor"], py(s["remaining"]), s.get("contribution_id"))
                   async for s in self.db.sources.find(
                       {"remaining": {"$gt": Decimal128("0")}},
                       session=uow.session).sort([("at", ASCENDING), ("_id", ASCENDING)])]
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
        # the invariant, enforced by the store: never below zero, whoever else is allocating
        fund = await self.db.fund.find_one_and_update(
            {"_id": "fund", "available": {"$gte": Decimal128(total)}},
            {"$inc": m({"available": -total, "allocated_usd": total,
                        "transferred_usd": transferred})},
            return_document=ReturnDocument.AFTER, session=uow.session)
        if fund is None:
            raise Conflict("the available balance changed under this allocation")
        res = await self.db.sources.bulk_write(
            [UpdateOne({"_id": sid, "remaining": {"$gte": Decimal128(usd)}},
                       {"$inc": {"remaining": Decimal128(-usd)}}) for sid, usd in drawn.items()],
            ordered=True, session=uow.session)
        if res.modified_count != len(drawn):
            raise Conflict("a funding source changed under this allocation")
        return [w.programme_id for w in chosen]

    async def _allocate(self, uow: UnitOfWork, w: Waiting, draws: list[Draw],
                        rules: FundingRules, at: datetime) -> Decimal:
        """Book one allocation and its first tranche (the balance is the caller's); returns
        the amount transferred."""
        total = w.total_usd
        prog = await uow.docs("programmes").update(w.programme_id, {"$set": m({
            "pipeline": "allocated", "allocated_at": at, "tranches_released": 0,
            "funded_by": [{"source_id": d.source_id, "contributor": d.contributor,
                           "contribution_id": d.contribution_id, "usd": d.usd}
                          for d in draws]})})
        assert prog is not None
        lines = [Line(ln["entity"], py(ln["programme_budget_usd"]), py(ln["support_cost_usd"]))
                 for ln in prog["lines"]]
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        await uow.docs("journal").add(m({
            "_id": f"alloc:{w.programme_id}",
            **allocation_entry(w.programme_id, lines, at, **dims)}))
        uow.emit(AllocationMade(
            programme_id=w.programme_id, allocation_id=f"a-{w.programme_id}",
            lines=[AllocationLine(entity=ln.entity, programme_budget_usd=ln.programme_budget_usd,
                                  support_cost_usd=ln.support_cost_usd, total_usd=ln.total_usd)
                   for ln in lines],
            total_usd=total,
            funded_by=[FundingSource(contribution_id=d.contribution_id, contributor=d.contributor,
                                     usd=d.usd) for d in draws],
            allocated_at=at), traceparent=prog.get("traceparent"))
        BUSINESS.labels("allocations_made").inc()
        USD.labels("allocated").inc(float(total))
        return await self._release(uow, prog, 0, rules, at)

    async def _release(self, uow: UnitOfWork, prog: dict[str, Any], tranche: int,
                       rules: FundingRules, at: datetime) -> Decimal:
        """Transfer tranche `tranche + 1` to each PUNO; returns the total (the caller books
        it on the fund document)."""
        pid = prog["_id"]
        if prog.get("pipeline") != "allocated" or prog.get("tranches_released", 0) != tranche:
            raise Conflict(f"tranche {tranche + 1} of {pid} was already released")
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        total = ZERO
        inc: dict[str, Any] = {}
        for ln in prog["lines"]:
            amount = tranche_amounts(py(ln["total_usd"]), rules.tranches)[tranche]
            total += amount
            await uow.docs("journal").add(m({
                "_id": f"xfer:{pid}:{ln['entity']}:{tranche + 1}",
                **transfer_entry(pid, ln["entity"], amount, at, **dims)}))
            inc[f"transferred.{ln['entity']}"] = Decimal128(amount)
            uow.emit(FundsTransferred(
                programme_id=pid, transfer_id=f"t-{pid}-{ln['entity']}-{tranche + 1}",
                entity=ln["entity"], tranche=tranche + 1, amount_usd=amount,
                transferred_at=at), traceparent=prog.get("traceparent"))
        await uow.docs("programmes").update(pid, {"$set": {"tranches_released": tranche + 1},
                                                  "$inc": inc})
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
        done = prog.get("tranches_released", 0)
        if done >= len(rules.tranches):
            raise Conflict(f"all {len(rules.tranches)} tranche(s) of {programme_id} were "
                           "already transferred")
        total = await self._release(uow, prog, done, rules, at)
        await self.db.fund.update_one({"_id": "fund"},
                                      {"$inc": {"transferred_usd": Decimal128(total)}},
                                      session=uow.session)
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
        net = py(prog.get("transferred", {}).get(entity, Decimal128("0"))) - py(
            prog.get("refunded", {}).get(entity, Decimal128("0")))
        if amount > net:
            raise Conflict(f"{entity} holds {net} of {programme_id}; cannot refund {amount}")
        await uow.docs("programmes").update(
            programme_id, {"$inc": {f"refunded.{entity}": Decimal128(amount)}})
        dims = {"countries": prog["countries"], "region": prog.get("region"),
                "thematic_area": prog["thematic_area"], "year": at.year}
        await uow.docs("journal").add(m({
            "_id": f"refund:{refund_id}",
            **refund_entry(programme_id, entity, amount, at, **dims)}))
        back = split_refund([Draw(f["source_id"], f["contributor"], py(f["usd"]),
                                  f.get("contribution_id") or "")
                             for f in prog.get("funded_by", [])], amount)
        await self.db.sources.insert_many([m({
            "_id": f"ref:{refund_id}:{n}", "contributor": d.contributor, "at": at,
            "contribution_id": d.contribution_id, "refund_id": refund_id, "remaining": d.usd})
            for n, d in enumerate(back)], session=uow.session)
        await self.db.fund.update_one({"_id": "fund"}, {"$inc": m({
            "available": amount, "refunded_usd": amount})}, upsert=True, session=uow.session)
        uow.emit(FundsRefunded(programme_id=programme_id, refund_id=refund_id, entity=entity,
                               amount_usd=amount, refunded_at=at))
        USD.labels("refunded").inc(float(amount))
        return True

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

    async def contributions(self, contributor: str | None) -> list[dict[str, Any]]:
        q = {"contributor": contributor} if contributor else {}
        out = []
        async for d in self.db.contributions.find(q).sort("pledged_at", 1):
            c = py(d)
            out.append({"contribution_id": c.pop("_id"), **c})
        return out

    async def programme(self, programme_id: str) -> dict[str, Any] | None:
        d = await self.db.programmes.find_one({"_id": programme_id})
        return py(d) if d else None

    async def programmes(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return [py(d) async for d in self.db.programmes.find(query).sort(
            [("priority", ASCENDING), ("approved_at", ASCENDING)])]
