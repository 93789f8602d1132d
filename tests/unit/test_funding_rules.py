"""Funding's rules: fee, support cost, approval checks, pipeline order, tranches, attribution,
and the journal's double entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.funding.domain import (
    CASH_ALLOCATED,
    CASH_FREE,
    Draw,
    FundingRules,
    Waiting,
    allocation_entry,
    allocation_lines,
    balances,
    check_approval,
    check_decidable,
    deposit_entry,
    draw_fifo,
    entry,
    fund_view,
    line,
    next_allocations,
    refund_entry,
    split_deposit,
    split_refund,
    tranche_amounts,
    transfer_entry,
)
from shared.errors import Conflict, InvalidInput, NotFound

R = FundingRules(targets_usd={2026: D("20000000")})
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_aa_fee_is_one_percent_rounded_to_the_cent() -> None:
    assert split_deposit(D("5400000.00"), R) == (D("54000.00"), D("5346000.00"))
    assert split_deposit(D("100.50"), R) == (D("1.01"), D("99.49"))  # 1.005 rounds half up
    with pytest.raises(InvalidInput):
        split_deposit(D("0"), R)


def test_support_cost_is_seven_percent_per_puno() -> None:
    lines = allocation_lines([("IOM", D("1200000.00")), ("ILO", D("333.33"))], R)
    assert [(ln.support_cost_usd, ln.total_usd) for ln in lines] == [
        (D("84000.00"), D("1284000.00")), (D("23.33"), D("356.66"))]


def test_rates_are_configuration() -> None:
    r = FundingRules(aa_fee_rate=D("0.02"), support_cost_rate=D("0.08"))
    assert split_deposit(D("100"), r)[0] == D("2.00")
    assert allocation_lines([("IOM", D("100"))], r)[0].support_cost_usd == D("8.00")


def test_an_approved_budget_may_differ_but_stays_among_the_punos_and_under_the_ceiling() -> None:
    punos = ["IOM", "ILO"]
    assert check_approval(punos, [("IOM", D("1")), ("ILO", D("2"))], R) == D("3")
    assert check_approval(punos, [("IOM", D("2000000")), ("ILO", D("1000000"))], R) == D(
        "3000000")
    for bad in ([("IOM", D("1")), ("WFP", D("1"))], [("IOM", D("1"))],
                [("IOM", D("1")), ("ILO", D("0"))],
                [("IOM", D("2000000")), ("ILO", D("1000000.01"))],
                [("IOM", D("1")), ("IOM", D("1"))]):
        with pytest.raises(InvalidInput):
            check_approval(punos, bad, R)


def test_only_eligible_or_deferred_programmes_can_be_decided() -> None:
    check_decidable("screened-eligible", "p")
    check_decidable("deferred", "p")
    with pytest.raises(NotFound):
        check_decidable(None, "p")
    for s in ("screened-ineligible", "approved", "rejected", "withdrawn"):
        with pytest.raises(Conflict):
            check_decidable(s, "p")


def w(pid: str, priority: int, minutes: int, total: str) -> Waiting:
    return Waiting(pid, priority, T0 + timedelta(minutes=minutes), D(total))


def test_the_pipeline_funds_in_rank_order_and_nothing_jumps_the_queue() -> None:
    waiting = [w("c", 2, 0, "50"), w("a", 1, 5, "100"), w("b", 1, 9, "100"),
               w("d", 3, 0, "1")]
    assert [x.programme_id for x in next_allocations(D("250"), waiting)] == ["a", "b", "c"]
    # b does not fit: c and d, which would, wait behind it
    assert [x.programme_id for x in next_allocations(D("199.99"), waiting)] == ["a"]
    assert next_allocations(D("0"), waiting) == []


def test_tranches_sum_exactly_to_the_allocation() -> None:
    assert tranche_amounts(D("100.00"), [D("1")]) == [D("100.00")]
    assert tranche_amounts(D("100.01"), [D("0.5"), D("0.5")]) == [D("50.01"), D("50.00")]
    parts = tranche_amounts(D("1284000.00"), [D("0.4"), D("0.35"), D("0.25")])
    assert sum(parts) == D("1284000.00")


def test_allocations_draw_on_the_oldest_money_first() -> None:
    sources = [("s1", "DEU", D("100"), "c1"), ("s2", "NOR", D("50"), "c2"),
               ("s3", "ESP", D("500"), "c3")]
    got = draw_fifo(sources, D("120"))
    assert [(d.contributor, d.usd) for d in got] == [("DEU", D("100")), ("NOR", D("20"))]
    with pytest.raises(Conflict):
        draw_fifo(sources, D("651"))


def test_a_refund_goes_back_to_the_contributions_that_funded_the_programme() -> None:
    funded_by = [Draw("s1", "DEU", D("600.00"), "c-DEU"), Draw("s2", "NOR", D("300.00"), "c-NOR"),
                 Draw("s3", "DEU", D("100.00"), "c-DEU")]  # Germany gave 700, Norway 300
    back = split_refund(funded_by, D("250.00"))
    assert [(d.contributor, d.contribution_id, d.usd) for d in back] == [
        ("DEU", "c-DEU", D("175.00")), ("NOR", "c-NOR", D("75.00"))]
    # the cents left by rounding go to the largest givers first, and the sum is exact
    thirds = [Draw("a", "A", D("1"), "ca"), Draw("b", "B", D("1"), "cb"),
              Draw("c", "C", D("1"), "cc")]
    assert [d.usd for d in split_refund(thirds, D("0.02"))] == [D("0.01"), D("0.01")]
    assert [d.usd for d in split_refund(thirds, D("100.00"))] == [
        D("33.34"), D("33.33"), D("33.33")]
    with pytest.raises(InvalidInput):
        split_refund([], D("1"))


@given(st.lists(st.decimals(min_value=D("0.01"), max_value=D("3000000"), places=2),
                min_size=1, max_size=8),
       st.decimals(min_value=D("0.01"), max_value=D("3000000"), places=2))
def test_refund_shares_add_up_exactly_and_stay_in_proportion(gifts: list[D], amount: D) -> None:
    funded_by = [Draw(f"s{i}", f"C{i}", g, f"c{i}") for i, g in enumerate(gifts)]
    back = split_refund(funded_by, amount)
    assert sum(d.usd for d in back) == amount
    total = sum(gifts)
    for d in back:
        gift = gifts[int(d.contributor[1:])]
        assert abs(d.usd - amount * gift / total) < D("0.01")


def test_every_entry_balances_and_an_unbalanced_one_is_refused() -> None:
    lines = allocation_lines([("IOM", D("100")), ("ILO", D("50"))], R)
    entries = [deposit_entry("c", "DEU", D("1000"), D("10"), T0, 2026),
               allocation_entry("p", lines, T0, countries=["PH"], thematic_area=1),
               transfer_entry("p", "IOM", D("107"), T0, countries=["PH"], thematic_area=1),
               refund_entry("p", "IOM", D("7"), T0, countries=["PH"], thematic_area=1)]
    for e in entries:
        assert sum(ln["debit"] for ln in e["lines"]) == sum(ln["credit"] for ln in e["lines"])
    b = balances(entries)
    assert b[CASH_FREE] == D("1000") - D("10") - D("160.50") + D("7")
    assert b[CASH_ALLOCATED] == D("160.50") - D("107")
    assert sum(b.values()) == 0
    with pytest.raises(AssertionError):
        entry("broken", T0, [line(CASH_FREE, debit=D("1"))])


def test_the_fund_view_explains_every_figure() -> None:
    lines = allocation_lines([("IOM", D("100")), ("ILO", D("50"))], R)
    entries = [deposit_entry("c", "DEU", D("1000"), D("10"), T0, 2026),
               allocation_entry("p", lines, T0, countries=["PH"], thematic_area=1, year=2026),
               transfer_entry("p", "IOM", D("107"), T0, countries=["PH"], thematic_area=1),
               refund_entry("p", "IOM", D("7"), T0, countries=["PH"], thematic_area=1)]
    v = fund_view(entries, [(2026, D("2000"))], R)
    assert v["sources"]["contributions_usd"] == D("1000")
    assert v["uses"] == {"transfers_usd": D("107"), "refunds_usd": D("-7"),
                         "aa_fee_usd": D("10"), "total_usd": D("110")}
    assert v["balance_with_aa_usd"] == D("890")  # sources - uses
    assert v["available_usd"] == D("836.50") and v["allocated_usd"] == D("160.50")
    assert v["by_puno"]["IOM"]["net_funded"] == D("100")
    assert v["by_country"]["PH"]["allocated"] == D("160.50")
    assert v["by_thematic_area"][1]["transferred"] == D("107")
    assert v["targets"][2026]["deposited_usd"] == D("1000")
    assert v["targets"][2026]["pledged_usd"] == D("2000")
    assert v["journal"]["debits"] == v["journal"]["credits"]


@given(st.decimals(min_value=D("0.01"), max_value=D("100000000"), places=2))
def test_fee_plus_net_is_always_the_deposit(usd: D) -> None:
    fee, net = split_deposit(usd, R)
    assert fee + net == usd and fee >= 0 and net > 0
