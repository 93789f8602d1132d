"""Property-based: random sequences of deposits, approvals, withdrawals, cancellations,
suspensions and resumptions, budget revisions (top-ups and moves), extensions, tranches,
refunds and financial closures, run against funding's real store (the Mongo wire server),
never over-allocate and always keep the journal balanced, in agreement with the fund's
balance document and with each programme's per-PUNO allocation; a refused operation changes
nothing."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from decimal import Decimal as D

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.funding.app import FundingSettings
from services.funding.domain import CASH_ALLOCATED, CASH_FREE, ZERO, balances
from services.funding.store import FundingStore, py
from shared.contracts.funding import ContributionPledged
from shared.contracts.intake import ProgrammeScreened, ProgrammeWithdrawn
from shared.contracts.monitoring import ProgrammeFinanciallyClosed
from shared.errors import MptfError
from tests.support import unique

AT = datetime(2026, 6, 1, tzinfo=UTC)
N = 4  # programmes: few, so operations often meet the same one
budget = st.integers(min_value=1, max_value=400).map(lambda k: D(k) * 1000 + D("0.07"))
deposit = st.integers(min_value=50, max_value=1500).map(lambda k: D(k) * 1000 + D("0.01"))
pid = st.integers(0, N - 1)
approve = st.tuples(st.just("approve"), pid, st.integers(1, 5), budget, budget)
op = st.one_of(
    st.tuples(st.just("deposit"), deposit),
    approve, approve,  # weighted: approvals are what the other operations need
    st.tuples(st.just("withdraw"), pid),
    st.tuples(st.just("tranche"), pid),
    st.tuples(st.just("refund"), pid, st.integers(1, 100)),
    st.tuples(st.just("cancel"), pid),
    st.tuples(st.just("suspend"), pid), st.tuples(st.just("resume"), pid),
    st.tuples(st.just("revise"), pid, budget, budget),
    st.tuples(st.just("extend"), pid, st.integers(1, 8)),
    st.tuples(st.just("close"), pid),
)


def screened(i: int) -> ProgrammeScreened:
    return ProgrammeScreened.model_validate({
        "programme_id": f"p{i}", "eligible": True, "screened_at": AT.isoformat(),
        "programme": {"title": f"P{i}", "submitted_by": "IOM", "countries": ["PH"],
                      "punos": [{"entity": "IOM", "convening": True, "budget_usd": "1"},
                                {"entity": "ILO", "budget_usd": "1"}],
                      "total_budget_usd": "2", "gcm_objectives": [1],
                      "primary_thematic_area": 1, "duration_months": 12}})


async def run(ops: list[tuple]) -> None:
    tag = unique("ledger")  # the store only: no topics to provision
    s = FundingSettings(mongodb_database=f"{tag}_funding", topic_prefix=f"{tag}.",
                        transfer_tranches=[D("0.6"), D("0.4")])
    rules = s.rules()
    store = FundingStore(s)
    await store.ensure_indexes()

    async def tx(fn):  # type: ignore[no-untyped-def]
        try:
            return (await store.transaction(fn))[0]
        except MptfError:
            return None  # refused by the rules: nothing may have changed (checked below)

    await tx(lambda u: store.pledge(u, ContributionPledged(
        contribution_id="c", contributor="DEU", contributor_name="Germany", currency="USD",
        amount=D("1000000000"), year=2026, pledged_at=AT)))
    for i in range(N):
        await tx(lambda u, i=i: store.remember_screened(u, screened(i), f"screened-{i}"))

    async def apply(u, *, o: tuple, n: int):  # type: ignore[no-untyped-def]
        if o[0] == "tranche":
            return await store.release_next_tranche(u, f"p{o[1]}", rules, AT)
        if o[0] == "deposit":
            r = await store.deposit(u, "c", f"d{n}", o[1], o[1], AT, rules)
        elif o[0] == "approve":
            _, i, prio, a, b = o
            r = await store.decide(u, f"p{i}", "approve", f"sc{n}", "", AT, rules, prio,
                                   [("IOM", a), ("ILO", b)])
        elif o[0] == "withdraw":
            r = await store.withdrawn(u, ProgrammeWithdrawn(
                programme_id=f"p{o[1]}", withdrawn_by="IOM", reason="x",
                previous_status="approved", withdrawn_at=AT), f"w{n}", AT)
        elif o[0] in ("cancel", "suspend", "resume"):
            r = await getattr(store, o[0])(u, f"p{o[1]}", f"sc{n}", "why", AT)
        elif o[0] == "revise":
            r = await store.revise_budget(u, f"p{o[1]}", f"sc{n}", [("IOM", o[2]),
                                                                   ("ILO", o[3])], "", AT,
                                          rules)
        elif o[0] == "extend":
            r = await store.extend(u, f"p{o[1]}", f"sc{n}", o[2], "", AT, rules)
        elif o[0] == "close":
            r = await store.closed(u, ProgrammeFinanciallyClosed.TYPE, f"close{n}",
                                   ProgrammeFinanciallyClosed(
                                       programme_id=f"p{o[1]}", closed_at=AT, balances=[],
                                       refund_total_usd=ZERO), AT)
            r = True
        else:
            prog = await store.db.programmes.find_one({"_id": f"p{o[1]}"}, session=u.session)
            prog = py(prog or {})
            held = prog.get("transferred", {}).get("IOM", ZERO) - prog.get(
                "refunded", {}).get("IOM", ZERO)
            amount = (held * o[2] / 100).quantize(D("0.01"))
            r = await store.refund(u, f"p{o[1]}", f"r{n}", "IOM", amount, AT)
        await store.fund_pipeline(u, rules, AT)  # money in or a place freed: fund the head
        return r

    for n, o in enumerate(ops):
        before = await snapshot(store)
        r = await tx(functools.partial(apply, o=o, n=n))
        if r is None:
            assert await snapshot(store) == before, f"a refused {o[0]} changed something"
        await check_invariants(store)
    allocated = await store.db.programmes.count_documents({"pipeline": "allocated"})
    waiting = await store.db.programmes.count_documents({"pipeline": "waiting"})
    refunds = await store.db.journal.count_documents({"kind": "refund"})
    releases = await store.db.journal.count_documents({"kind": "release"})
    topups = await store.db.journal.count_documents({"_id": {"$regex": ":r[0-9]+$"},
                                                     "kind": "allocation"})
    event("released" if releases else "no release")
    event("topped up" if topups else "no top-up")
    event(f"allocated: {min(allocated, 3)}+" if allocated >= 3 else f"allocated: {allocated}")
    event("some waited" if waiting else "none waiting")
    event("refunded" if refunds else "no refund")
    await store.db.client.drop_database(s.database)
    await store.close()


async def snapshot(store: FundingStore) -> tuple:
    return (await store.fund(), await store.db.journal.count_documents({}),
            len(await store.outbox_events()))


async def check_invariants(store: FundingStore) -> None:
    journal = await store.journal()
    for e in journal:  # every entry balances
        assert sum(ln["debit"] for ln in e["lines"]) == sum(ln["credit"] for ln in e["lines"])
    b = balances(journal)
    fund = await store.fund()
    available = fund.get("available", ZERO)
    # never over-allocated, and the balance document agrees with the journal
    assert available >= 0 and b.get(CASH_FREE, ZERO) == available
    assert b.get(CASH_ALLOCATED, ZERO) >= 0  # never transferred more than allocated
    sources = [py(s["remaining"]) async for s in store.db.sources.find()]
    assert all(x >= 0 for x in sources) and sum(sources, ZERO) == available
    for p in await store.programmes({}):
        for ent, t in p.get("transferred", {}).items():
            assert p.get("refunded", {}).get(ent, ZERO) <= t
        mine = [e for e in journal if e.get("programme_id") == p["_id"]]
        allocs = [e for e in mine if e["kind"] == "allocation"]
        if allocs:  # what its contributions gave is what was allocated to it
            made = sum((ln["debit"] for e in allocs for ln in e["lines"]
                        if ln["account"] == CASH_ALLOCATED), ZERO)
            assert sum(f["usd"] for f in p["funded_by"]) == made
            # each PUNO's allocation left = allocated - released = what the journal holds
            # for it, and it was never transferred more than that
            held = balances([{**e, "lines": [ln for ln in e["lines"]
                                             if ln["account"] == CASH_ALLOCATED]}
                             for e in mine])
            assert held.get(CASH_ALLOCATED, ZERO) >= 0
            left = sum(p["allocated"].values(), ZERO) - sum(p.get("transferred", {}).values(),
                                                           ZERO)
            assert left == held.get(CASH_ALLOCATED, ZERO), p["_id"]
        if p.get("status") in ("withdrawn", "cancelled", "financially-closed"):
            # nothing stays allocated to an ended programme, nothing of it waits
            assert p.get("pipeline") != "waiting" and not p.get("topup_waiting")
            if p.get("allocated"):
                assert sum(p["allocated"].values(), ZERO) == sum(
                    p.get("transferred", {}).values(), ZERO)
    # waiting programmes wait only because the head of the pipeline does not fit
    waiting = await store.programmes({"pipeline": "waiting"})
    if waiting:
        assert waiting[0]["total_usd"] > available


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(op, min_size=12, max_size=40))
def test_random_money_movements_never_break_the_ledger(ops: list[tuple]) -> None:
    asyncio.run(run(ops))


async def test_funding_the_pipeline_reads_only_as_far_as_the_money_reaches() -> None:
    """30 approved programmes wait with no money; each pass over the pipeline (at every
    decision, deposit and change) reads its head, not all 30. A deposit covering two and a
    half funds exactly the first two in rank order, and reads the third (which stops the
    queue), no further."""
    tag = unique("pipeline")
    s = FundingSettings(mongodb_database=f"{tag}_funding", topic_prefix=f"{tag}.")
    rules = s.rules()
    store = FundingStore(s)
    await store.ensure_indexes()
    try:
        await store.transaction(lambda u: store.pledge(u, ContributionPledged(
            contribution_id="c", contributor="DEU", contributor_name="Germany",
            currency="USD", amount=D("1000000000"), year=2026, pledged_at=AT)))
        for i in range(30):
            await store.transaction(lambda u, i=i: store.remember_screened(
                u, screened(i), f"screened-{i}"))
            await store.transaction(lambda u, i=i: store.decide(
                u, f"p{i}", "approve", f"sc{i}", "", AT, rules, 30 - i,  # p29 ranks first
                [("IOM", D("1000")), ("ILO", D("1000"))]))
        each = py((await store.db.programmes.find_one({"_id": "p0"}))["total_usd"])

        async def fund(u):  # type: ignore[no-untyped-def]
            funded = await store.fund_pipeline(u, rules, AT)
            return funded, len(u.docs("programmes").cache)

        (funded, read), _ = await store.transaction(fund)
        assert funded == [] and read == 1  # the head does not fit: nothing else is read
        await store.transaction(lambda u: store.deposit(u, "c", "d1", each * D("2.5"),
                                                        each * D("2.5"), AT, rules))
        (funded, read), _ = await store.transaction(fund)
        assert funded == ["p29", "p28"] and read == 3
        await check_invariants(store)
    finally:
        await store.db.client.drop_database(s.database)
        await store.close()
