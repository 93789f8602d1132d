"""Monitoring's rules: the reporting calendar, what a report must say, delivery, risk flags,
closure, unspent balances, and the forward-only status projection."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest

from services.monitoring.domain import (
    MonitoringRules,
    add_months,
    check_report,
    delivery,
    end_date,
    on_time,
    operationally_closable,
    overdue,
    reporting_calendar,
    risk_flags,
    unspent_balances,
)
from services.monitoring.portfolio import portfolio, split_evenly
from shared.contracts.monitoring import REPORT_EXAMPLE, SubmitProgressReport
from shared.errors import Conflict, InvalidInput

R = MonitoringRules()
START, END = date(2026, 3, 15), date(2028, 9, 14)


def test_end_date_and_month_arithmetic() -> None:
    assert end_date(START, 30) == END
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)


def test_the_calendar_follows_the_mptf_office_deadlines() -> None:
    got = [(d.key, d.due) for d in reporting_calendar(START, END, R)]
    assert got == [
        ("annual-narrative:2026", date(2027, 3, 31)), ("annual-financial:2026", date(2027, 4, 30)),
        ("annual-narrative:2027", date(2028, 3, 31)), ("annual-financial:2027", date(2028, 4, 30)),
        ("final-narrative", date(2028, 12, 14)), ("final-financial", date(2029, 6, 30))]


def test_a_programme_within_one_year_has_only_final_reports() -> None:
    keys = [d.key for d in reporting_calendar(date(2026, 2, 1), date(2026, 11, 30), R)]
    assert keys == ["final-narrative", "final-financial"]


def test_deadlines_are_configuration() -> None:
    r = MonitoringRules(annual_narrative_due=(2, 28), final_narrative_months=6)
    cal = reporting_calendar(START, END, r)
    assert cal[0].due == date(2027, 2, 28) and cal[4].due == date(2029, 3, 14)


def test_a_report_is_overdue_the_day_after_its_deadline() -> None:
    cal = reporting_calendar(START, END, R)
    assert overdue(cal, set(), date(2027, 3, 31)) == []
    assert [d.key for d in overdue(cal, set(), date(2027, 4, 1))] == ["annual-narrative:2026"]
    assert overdue(cal, {"annual-narrative:2026"}, date(2027, 4, 1)) == []
    assert on_time("annual-narrative", 2026, cal, datetime(2027, 3, 31, 23, tzinfo=UTC))
    assert not on_time("annual-narrative", 2026, cal, datetime(2027, 4, 1, tzinfo=UTC))


def report(**changes: Any) -> SubmitProgressReport:
    return SubmitProgressReport.model_validate({**REPORT_EXAMPLE, **changes})


def check(r: SubmitProgressReport, received: set[str] | None = None,
          spent: dict[str, D] | None = None) -> None:
    check_report(r, punos=["IOM", "ILO"], start=START, end=END, received=received or set(),
                 net_funded={"IOM": D("1000"), "ILO": D("500")}, spent=spent or {})


def errors_of(r: SubmitProgressReport, **kw: Any) -> list[str]:
    with pytest.raises(InvalidInput) as e:
        check(r, **kw)
    return [x["field"] for x in e.value.errors]


def test_an_acceptable_report_passes() -> None:
    check(report(year=2027))
    check(report(kind="annual-financial", year=2026, narrative="", beneficiaries=None,
                 indicators=[], expenditure=[{"entity": "IOM", "amount_usd": "1000"}]))


def test_periods_out_of_range_are_refused() -> None:
    assert errors_of(report(year=2025)) == ["year"]
    assert errors_of(report(year=2028)) == ["year"]  # the final year has final reports
    assert errors_of(report(year=None)) == ["year"]
    assert errors_of(report(kind="final-narrative", year=2027)) == ["year"]


def test_disaggregations_must_add_up_to_their_totals() -> None:
    b = {**REPORT_EXAMPLE["beneficiaries"], "by_sex": {"female": 640, "male": 559}}
    assert errors_of(report(year=2026, beneficiaries=b)) == ["beneficiaries.by_sex"]
    b = {**REPORT_EXAMPLE["beneficiaries"], "by_age": {"0-17": 1}}
    assert errors_of(report(year=2026, beneficiaries=b)) == ["beneficiaries.by_age"]


def test_expenditure_cannot_exceed_what_a_puno_holds() -> None:
    fin = {"kind": "annual-financial", "year": 2026, "narrative": "", "beneficiaries": None,
           "indicators": []}
    check(report(**fin, expenditure=[{"entity": "IOM", "amount_usd": "600"}]),
          spent={"IOM": D("400")})
    got = errors_of(report(**fin, expenditure=[{"entity": "IOM", "amount_usd": "600.01"}]),
                    spent={"IOM": D("400")})
    assert got == ["expenditure.0.amount_usd"]
    got = errors_of(report(**fin, expenditure=[{"entity": "WFP", "amount_usd": "1"}]))
    assert got == ["expenditure.0.entity"]
    assert errors_of(report(**fin, expenditure=[])) == ["expenditure"]


def test_one_report_per_period_and_none_before_funding() -> None:
    with pytest.raises(Conflict):
        check(report(year=2026), received={"annual-narrative:2026"})
    with pytest.raises(Conflict):
        check_report(report(year=2026), punos=["IOM"], start=None, end=None, received=set(),
                     net_funded={}, spent={})


def test_delivery_rate_is_expenditure_over_net_funded() -> None:
    got = delivery({"IOM": D("500"), "ILO": D("0")}, {"IOM": D("1000"), "ILO": D("250")})
    assert got == {"programme": D("0.4000"), "by_puno": {"IOM": D("0.5000"),
                                                         "ILO": D("0.0000")}}
    assert delivery({}, {})["programme"] is None


def test_risk_flags_at_their_boundaries() -> None:
    start, end = date(2026, 1, 1), date(2026, 12, 31)  # 364 days
    kw = {"start": start, "end": end, "overdue_now": False, "last_report": None, "rules": R}
    assert risk_flags(today=date(2026, 9, 30), rate=D("0.1"), **kw) == set()  # 74.7%
    assert risk_flags(today=date(2026, 10, 1), rate=D("0.1"), **kw) == {"low-delivery"}
    assert risk_flags(today=date(2026, 10, 1), rate=D("0.5"), **kw) == set()
    long = {**kw, "end": date(2028, 12, 31)}
    assert risk_flags(today=date(2026, 12, 31), rate=D("1"), **long) == set()
    assert risk_flags(today=date(2027, 1, 1), rate=D("1"), **long) == {"no-recent-report"}
    assert risk_flags(today=date(2027, 1, 1), rate=D("1"), **{
        **long, "last_report": date(2026, 6, 1)}) == set()
    assert "report-overdue" in risk_flags(today=date(2026, 2, 1), rate=None, **{
        **kw, "overdue_now": True})


def test_operational_closure_needs_the_end_and_the_final_narrative() -> None:
    assert not operationally_closable(END, {"final-narrative"}, END)
    assert operationally_closable(END, {"final-narrative"}, date(2028, 9, 15))
    assert not operationally_closable(END, set(), date(2029, 1, 1))


def test_a_leftover_of_250_or_less_need_not_be_refunded() -> None:
    nf = {"IOM": D("1000"), "ILO": D("500")}
    rows = unspent_balances(nf, {"IOM": D("900"), "ILO": D("350")}, nf, R)
    assert [(r["unspent_usd"], r["refund_usd"]) for r in rows] == [
        (D("150"), D("0.00")), (D("100"), D("0.00"))]  # 250 in all: waived
    rows = unspent_balances(nf, {"IOM": D("900"), "ILO": D("349.99")}, nf, R)
    assert [r["refund_usd"] for r in rows] == [D("150.01"), D("100")]


def test_money_is_shared_evenly_among_objectives_to_the_cent() -> None:
    assert split_evenly(D("100.00"), 3) == [D("33.33"), D("33.33"), D("33.34")]
    docs = [{"_id": "a", "status": "on-going", "allocated_usd": D("100.00"),
             "gcm_objectives": [1, 17, 23], "countries": ["PH"], "thematic_area": 1,
             "lines": [{"entity": "IOM", "total_usd": D("100.00")}],
             "transferred": {"IOM": D("100")}, "spent": {"IOM": D("25")},
             "beneficiaries_total": 7},
            {"_id": "b", "status": "screened-eligible", "gcm_objectives": [5]}]
    p = portfolio(docs, [])
    assert p["objectives_served"] == [1, 17, 23]
    assert sum(p["gcm_objective_coverage"][o]["allocated_usd"] for o in (1, 17, 23)) == D("100")
    assert 5 in p["objectives_not_served"]
    assert p["by_puno"]["IOM"]["delivery_rate"] == D("0.2500")
    assert p["by_status"]["screened-eligible"]["programmes"] == 1
    assert p["beneficiaries_reached"] == 7
