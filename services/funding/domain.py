"""Funding's rules as plain code: the Fund's money.

* Money is Decimal, rounded to cents half-up, never a float.
* A deposit pays the Administrative Agent's fee (1%); the rest is the Fund's net balance.
* An approved programme is allocated its budget per PUNO plus indirect support cost (7%),
  only from deposited money, in the pipeline's rank order (SC priority, then approval time):
  the head of the pipeline is funded first, and nothing below it jumps ahead.
* Every movement is a balanced journal entry (double entry), so every figure is explained.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from shared import budget, lifecycle
from shared.errors import Conflict, InvalidInput

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class FundingRules:
    aa_fee_rate: Decimal = Decimal("0.01")
    support_cost_rate: Decimal = budget.SUPPORT_COST_RATE
    budget_ceiling_usd: Decimal = budget.CEILING_USD
    ceiling_includes_support_cost: bool = budget.INCLUDES_SUPPORT_COST
    tranches: tuple[Decimal, ...] = (Decimal("1"),)  # shares of the allocation per tranche
    targets_usd: dict[int, Decimal] = field(default_factory=dict)
    # no-cost extensions: at most this many months in all, over the original duration
    max_extension_months: int = 12

    @property
    def ceiling(self) -> budget.Ceiling:
        return budget.Ceiling(self.budget_ceiling_usd, self.support_cost_rate,
                              self.ceiling_includes_support_cost)


# -- deposits and allocations ----------------------------------------------------------------
def split_deposit(usd: Decimal, rules: FundingRules) -> tuple[Decimal, Decimal]:
    """(AA fee, net to the Fund) of a deposit's USD value."""
    if usd <= 0:
        raise InvalidInput("a deposit must be positive", errors=[
            {"field": "usd_amount", "reason": "must be greater than zero"}])
    fee = cents(usd * rules.aa_fee_rate)
    return fee, usd - fee


@dataclass(frozen=True)
class Line:
    entity: str
    programme_budget_usd: Decimal
    support_cost_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return self.programme_budget_usd + self.support_cost_usd


def allocation_lines(lines: Iterable[tuple[str, Decimal]], rules: FundingRules) -> list[Line]:
    return [Line(e, b, budget.support_cost(b, rules.support_cost_rate)) for e, b in lines]


def check_approval(punos: Sequence[str], budget: Sequence[tuple[str, Decimal]],
                   rules: FundingRules) -> Decimal:
    """The approved budget per PUNO may differ from the request, but only among the
    programme's PUNOs, each positive, the total within the ceiling. Returns the total."""
    errors = []
    seen: set[str] = set()
    for i, (entity, amount) in enumerate(budget):
        if entity not in punos:
            errors.append({"field": f"approved_budget.{i}.entity",
                           "reason": f"{entity} is not a PUNO of this programme"})
        if entity in seen:
            errors.append({"field": f"approved_budget.{i}.entity",
                           "reason": f"{entity} is listed twice"})
        seen.add(entity)
        if amount <= 0:
            errors.append({"field": f"approved_budget.{i}.budget_usd",
                           "reason": "must be greater than zero"})
    if len(seen) < 2:
        errors.append({"field": "approved_budget",
                       "reason": "a joint programme funds at least 2 PUNOs"})
    total = sum((a for _, a in budget), ZERO)
    excess = rules.ceiling.excess(a for _, a in budget)
    if excess:
        errors.append({"field": "approved_budget", "reason": excess})
    if errors:
        raise InvalidInput("the approved budget is not valid", errors=errors)
    return total


DECIDABLE = lifecycle.ALLOWED["decide"]


def check_decidable(status: str | None, programme_id: str) -> None:
    from shared.errors import IllegalTransition, NotFound

    if status is None:
        raise NotFound(f"funding knows no screened programme {programme_id}")
    if status == "screened-ineligible":
        raise IllegalTransition(f"{programme_id} was screened ineligible: the SC cannot "
                                "decide on it", programme_status=status)
    lifecycle.check("decide", status, programme_id)


# -- changes after approval -------------------------------------------------------------------
@dataclass(frozen=True)
class Revision:
    entity: str
    budget_usd: Decimal  # the new approved programme budget
    change_usd: Decimal  # programme budget, against the old
    change_total_usd: Decimal  # with support cost: what is allocated (+) or released (-)


def revise(old: Sequence[tuple[str, Decimal]], new: Sequence[tuple[str, Decimal]],
           punos: Sequence[str], rules: FundingRules) -> list[Revision]:
    """A budget revision: the new budget per PUNO checked as an approval is (PUNOs of the
    programme, each positive, at least two, the ceiling), and what changes for each. A PUNO
    left out keeps its budget."""
    merged = dict(old)
    merged.update(dict(new))
    check_approval(punos, list(merged.items()), rules)
    out = []
    for entity in sorted(merged):
        b, was = merged[entity], dict(old).get(entity, ZERO)
        total = b + budget.support_cost(b, rules.support_cost_rate)
        was_total = was + budget.support_cost(was, rules.support_cost_rate) if was else ZERO
        out.append(Revision(entity, b, b - was, total - was_total))
    if all(r.change_usd == 0 for r in out):
        raise InvalidInput("the revision changes nothing", errors=[
            {"field": "approved_budget", "reason": "same as the approved budget"}])
    return out


def check_extension(months: int, already: int, rules: FundingRules) -> int:
    """The total extension after this one, within the Fund's limit."""
    if months <= 0:
        raise InvalidInput("an extension adds at least a month",
                           errors=[{"field": "months", "reason": "must be >= 1"}])
    if already + months > rules.max_extension_months:
        raise Conflict(f"extensions would total {already + months} months; the Fund allows "
                       f"at most {rules.max_extension_months}", extension_months=already)
    return already + months


@dataclass(frozen=True)
class Release:
    entity: str
    released_usd: Decimal  # allocated, not transferred
    owed_usd: Decimal  # transferred, not refunded


def releases(allocated: dict[str, Decimal], transferred: dict[str, Decimal],
             refunded: dict[str, Decimal], *, owe: bool) -> list[Release]:
    """What a withdrawal, cancellation or closure frees: each PUNO's allocation not yet
    transferred; and (`owe`) what it was transferred and has not refunded, which it owes."""
    out = []
    for e in sorted(set(allocated) | set(transferred)):
        free = max(allocated.get(e, ZERO) - transferred.get(e, ZERO), ZERO)
        owed = max(transferred.get(e, ZERO) - refunded.get(e, ZERO), ZERO) if owe else ZERO
        if free or owed:
            out.append(Release(e, free, owed))
    return out


# -- the pipeline --------------------------------------------------------------------------
@dataclass(frozen=True)
class Waiting:
    """An allocation waiting for money: a programme's, or a top-up of one (`revision`),
    ranked by the programme's priority and when it was approved (or revised)."""

    programme_id: str
    priority: int
    approved_at: datetime
    total_usd: Decimal
    revision: int = 0

    @property
    def rank(self) -> tuple[int, datetime, str]:
        return (self.priority, self.approved_at, self.programme_id)


def next_allocations(available: Decimal, waiting: Iterable[Waiting]) -> list[Waiting]:
    """Which waiting programmes the available balance funds now: in rank order, from the
    head, stopping at the first that does not fit (none jumps the queue)."""
    out = []
    for w in sorted(waiting, key=lambda w: w.rank):
        if w.total_usd > available:
            break
        available -= w.total_usd
        out.append(w)
    return out


def tranche_amounts(total: Decimal, shares: Sequence[Decimal]) -> list[Decimal]:
    """A total split into tranches by share; the last takes the rounding remainder so the
    tranches sum to the total exactly."""
    amounts = [cents(total * s) for s in shares[:-1]]
    return [*amounts, total - sum(amounts, ZERO)]


@dataclass(frozen=True)
class Draw:
    source_id: str
    contributor: str
    usd: Decimal
    contribution_id: str = ""


def draw_fifo(sources: Iterable[tuple[str, str, Decimal, str]], amount: Decimal) -> list[Draw]:
    """Attribute an allocation to the oldest money first: (source id, contributor,
    remaining, contribution id) in deposit order. The sources must cover the amount."""
    out = []
    for sid, contributor, remaining, contribution_id in sources:
        if amount <= 0:
            break
        take = min(remaining, amount)
        if take > 0:
            out.append(Draw(sid, contributor, take, contribution_id))
            amount -= take
    if amount > 0:
        raise Conflict("the Fund's sources do not cover this allocation")
    return out


def split_refund(funded_by: Iterable[Draw], amount: Decimal) -> list[Draw]:
    """A refund goes back to the money it came from: shared among the contributions that
    funded the programme in proportion to what each gave, in cents, the cents left over by
    rounding to the largest givers first; the shares add up to `amount` exactly. Each share
    names its contribution, so when the refunded money funds another programme the funder
    sees it among the allocations its money helped fund."""
    given: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for d in funded_by:
        given[(d.contributor, d.contribution_id)] += d.usd
    total = sum(given.values(), ZERO)
    if amount <= 0 or total <= 0:
        raise InvalidInput("a refund needs a positive amount and the money it came from")
    cent = Decimal("0.01")
    shares = {k: (amount * v / total).quantize(cent, rounding=ROUND_DOWN)
              for k, v in given.items()}
    order = sorted(given, key=lambda k: (-given[k], k))
    cents = int((amount - sum(shares.values(), ZERO)) / cent)  # < one per source
    for k in order[:cents]:
        shares[k] += cent
    shares[order[0]] += amount - sum(shares.values(), ZERO)  # only for sub-cent amounts
    return [Draw("", who, shares[(who, cid)], cid) for who, cid in order if shares[(who, cid)]]


# -- the journal (double entry) ----------------------------------------------------------------
# Accounts: cash:unallocated (the Fund's available balance with the AA), cash:allocated
# (allocated, not yet transferred), contributions (sources), fees (AA fee), transfers (uses),
# refunds (negative uses). Debit-positive balances for cash, fees and transfers.
CASH_FREE, CASH_ALLOCATED = "cash:unallocated", "cash:allocated"
CONTRIBUTIONS, FEES, TRANSFERS, REFUNDS = "contributions", "fees", "transfers", "refunds"


def line(account: str, debit: Decimal = ZERO, credit: Decimal = ZERO, **dims: Any
         ) -> dict[str, Any]:
    return {"account": account, "debit": debit, "credit": credit,
            **{k: v for k, v in dims.items() if v is not None}}


def entry(kind: str, at: datetime, lines: list[dict[str, Any]], **dims: Any) -> dict[str, Any]:
    debit = sum((ln["debit"] for ln in lines), ZERO)
    credit = sum((ln["credit"] for ln in lines), ZERO)
    if debit != credit:  # a bug, never an input error: refuse to write it
        raise AssertionError(f"unbalanced {kind} entry: {debit} != {credit}")
    return {"kind": kind, "at": at, "lines": lines,
            **{k: v for k, v in dims.items() if v is not None}}


def deposit_entry(contribution_id: str, contributor: str, usd: Decimal, fee: Decimal,
                  at: datetime, year: int) -> dict[str, Any]:
    return entry("deposit", at, [
        line(CASH_FREE, debit=usd), line(CONTRIBUTIONS, credit=usd, contributor=contributor),
        line(FEES, debit=fee), line(CASH_FREE, credit=fee),
    ], contribution_id=contribution_id, contributor=contributor, year=year)


def allocation_entry(programme_id: str, lines_: Sequence[Line], at: datetime, **dims: Any
                     ) -> dict[str, Any]:
    ls = []
    for ln in lines_:
        ls.append(line(CASH_ALLOCATED, debit=ln.total_usd, entity=ln.entity))
        ls.append(line(CASH_FREE, credit=ln.total_usd))
    return entry("allocation", at, ls, programme_id=programme_id, **dims)


def transfer_entry(programme_id: str, entity: str, amount: Decimal, at: datetime, **dims: Any
                   ) -> dict[str, Any]:
    return entry("transfer", at, [line(TRANSFERS, debit=amount, entity=entity),
                                  line(CASH_ALLOCATED, credit=amount, entity=entity)],
                 programme_id=programme_id, entity=entity, **dims)


def release_entry(programme_id: str, lines_: Sequence[tuple[str, Decimal]], at: datetime,
                  **dims: Any) -> dict[str, Any]:
    """Allocated money back to the Fund's available balance."""
    ls = []
    for entity, usd in lines_:
        ls.append(line(CASH_FREE, debit=usd))
        ls.append(line(CASH_ALLOCATED, credit=usd, entity=entity))
    return entry("release", at, ls, programme_id=programme_id, **dims)


def refund_entry(programme_id: str, entity: str, amount: Decimal, at: datetime, **dims: Any
                 ) -> dict[str, Any]:
    return entry("refund", at, [line(CASH_FREE, debit=amount),
                                line(REFUNDS, credit=amount, entity=entity)],
                 programme_id=programme_id, entity=entity, **dims)


def balances(entries: Iterable[dict[str, Any]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for e in entries:
        for ln in e["lines"]:
            out[ln["account"]] += ln["debit"] - ln["credit"]
    return dict(out)


def fund_view(entries: Sequence[dict[str, Any]], pledges: Iterable[tuple[int, Decimal]],
              rules: FundingRules) -> dict[str, Any]:
    """The AA's funding-status table, from the journal: sources, uses, balances, and totals
    by year, thematic area, country and PUNO; progress to each year's target."""
    b = balances(entries)
    deposits = -b.get(CONTRIBUTIONS, ZERO)
    fees = b.get(FEES, ZERO)
    transfers = b.get(TRANSFERS, ZERO)
    refunds = -b.get(REFUNDS, ZERO)
    by_year: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    by_area: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    by_country: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    by_puno: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    by_contributor: dict[str, Decimal] = defaultdict(lambda: ZERO)
    allocated = ZERO
    for e in entries:
        year = e.get("year") or e["at"].year
        kind = e["kind"]
        if kind == "deposit":
            usd = sum((ln["credit"] for ln in e["lines"] if ln["account"] == CONTRIBUTIONS), ZERO)
            by_year[year]["deposited"] += usd
            by_contributor[e["contributor"]] += usd
            continue
        if kind == "release":
            for ln in e["lines"]:
                if ln["account"] == CASH_ALLOCATED and ln["credit"]:
                    allocated -= ln["credit"]
                    by_year[year]["released"] += ln["credit"]
                    by_puno[ln["entity"]]["released"] += ln["credit"]
            continue
        for ln in e["lines"]:
            amount = ln["debit"] if kind != "refund" else ln["credit"]
            if not amount or (kind == "allocation" and ln["account"] != CASH_ALLOCATED) or (
                    kind in ("transfer", "refund") and ln["account"] not in (TRANSFERS, REFUNDS)):
                continue
            key = {"allocation": "allocated", "transfer": "transferred",
                   "refund": "refunded"}[kind]
            if kind == "allocation":
                allocated += amount
            by_year[year][key] += amount
            by_puno[ln["entity"]][key] += amount
            if e.get("thematic_area"):
                by_area[e["thematic_area"]][key] += amount
            for c in e.get("countries") or [e.get("region") or "(none)"]:
                by_country[c][key] += amount
    for year, amount in pledges:
        by_year[year]["pledged"] += amount
    for p in by_puno.values():
        p["net_funded"] = p["transferred"] - p["refunded"]
    targets = {
        year: {"target_usd": t, "deposited_usd": by_year.get(year, {}).get("deposited", ZERO),
               "pledged_usd": by_year.get(year, {}).get("pledged", ZERO),
               "progress": (by_year.get(year, {}).get("deposited", ZERO) / t).quantize(
                   Decimal("0.0001")) if t else None}
        for year, t in sorted(rules.targets_usd.items())}
    return {
        "sources": {"contributions_usd": deposits, "total_usd": deposits},
        "uses": {"transfers_usd": transfers, "refunds_usd": -refunds, "aa_fee_usd": fees,
                 "total_usd": transfers - refunds + fees},
        "balance_with_aa_usd": b.get(CASH_FREE, ZERO) + b.get(CASH_ALLOCATED, ZERO),
        "available_usd": b.get(CASH_FREE, ZERO),
        "allocated_not_transferred_usd": b.get(CASH_ALLOCATED, ZERO),
        "allocated_usd": allocated,
        "with_punos": {"transfers_usd": transfers, "refunds_usd": refunds,
                       "net_funded_usd": transfers - refunds},
        "by_year": {y: dict(v) for y, v in sorted(by_year.items())},
        "by_thematic_area": {a: dict(v) for a, v in sorted(by_area.items())},
        "by_country": {c: dict(v) for c, v in sorted(by_country.items())},
        "by_puno": {p: dict(v) for p, v in sorted(by_puno.items())},
        "by_contributor": dict(sorted(by_contributor.items())),
        "targets": targets,
        "journal": {"entries": len(entries),
                    "debits": sum((ln["debit"] for e in entries for ln in e["lines"]), ZERO),
                    "credits": sum((ln["credit"] for e in entries for ln in e["lines"]), ZERO)},
    }
