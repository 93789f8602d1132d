"""Monitoring's rules as plain code: the reporting calendar, what a report must say, delivery,
risk flags, closure. Calendar defaults are the MPTF Office's (domain.md), as settings.

Implementation starts with the first transfer; it ends `duration_months` later.
"""

from __future__ import annotations

import calendar as _cal
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from shared.contracts.monitoring import SubmitProgressReport
from shared.errors import Conflict, InvalidInput

ZERO = Decimal("0.00")
RATE = Decimal("0.0001")


@dataclass(frozen=True)
class MonitoringRules:
    annual_narrative_due: tuple[int, int] = (3, 31)  # (month, day) of the next year
    annual_financial_due: tuple[int, int] = (4, 30)
    final_narrative_months: int = 3  # after the end date
    final_financial_due: tuple[int, int] = (6, 30)  # of the year after the end date
    low_delivery_rate: Decimal = Decimal("0.5")
    low_delivery_after: Decimal = Decimal("0.75")  # share of the duration elapsed
    no_report_months: int = 12
    refund_threshold_usd: Decimal = Decimal("250")


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, _cal.monthrange(year, month)[1]))


def end_date(start: date, duration_months: int) -> date:
    return add_months(start, duration_months) - timedelta(days=1)


@dataclass(frozen=True)
class Deadline:
    kind: str
    year: int | None
    due: date

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.year}" if self.year else self.kind


def report_key(kind: str, year: int | None) -> str:
    return f"{kind}:{year}" if kind.startswith("annual") else kind


def reporting_calendar(start: date, end: date, rules: MonitoringRules) -> list[Deadline]:
    """Annual narrative and financial reports for each calendar year of implementation
    before the final year; then the final narrative and the certified final financial."""
    out = []
    for year in range(start.year, end.year):
        out.append(Deadline("annual-narrative", year, date(year + 1, *rules.annual_narrative_due)))
        out.append(Deadline("annual-financial", year, date(year + 1, *rules.annual_financial_due)))
    out.append(Deadline("final-narrative", None, add_months(end, rules.final_narrative_months)))
    out.append(Deadline("final-financial", None, date(end.year + 1, *rules.final_financial_due)))
    return out


def overdue(deadlines: list[Deadline], received: set[str], today: date) -> list[Deadline]:
    return [d for d in deadlines if d.due < today and d.key not in received]


def check_report(r: SubmitProgressReport, *, punos: list[str], start: date | None,
                 end: date | None, received: set[str], net_funded: dict[str, Decimal],
                 spent: dict[str, Decimal]) -> None:
    """Everything that makes a report unacceptable, all at once (InvalidInput), or a second
    report for the same period (Conflict). Nothing is stored for a refused report."""
    if start is None or end is None:
        raise Conflict(f"{r.programme_id} is not funded yet: no report is due")
    errors: list[dict[str, Any]] = []

    def bad(field: str, reason: str) -> None:
        errors.append({"field": field, "reason": reason})

    annual = r.kind.startswith("annual")
    if annual and r.year is None:
        bad("year", "an annual report names its calendar year")
    elif annual and r.year is not None and not start.year <= r.year < end.year:
        bad("year", f"no annual report is due for {r.year}: implementation runs "
                    f"{start} to {end} (annual reports {start.year}-{end.year - 1})")
    if not annual and r.year is not None:
        bad("year", "a final report covers the whole programme: leave year empty")
    narrative = r.kind.endswith("narrative")
    if narrative and not r.narrative.strip():
        bad("narrative", "a narrative report needs its narrative")
    if narrative and r.expenditure:
        bad("expenditure", "expenditure belongs in the financial report")
    if not narrative and not r.expenditure:
        bad("expenditure", "a financial report gives expenditure per PUNO")
    b = r.beneficiaries
    if b is not None:
        for name in ("by_sex", "by_age", "by_migratory_status"):
            parts = getattr(b, name)
            if parts and sum(parts.values()) != b.total:
                bad(f"beneficiaries.{name}", f"adds up to {sum(parts.values())}, not the "
                                             f"total of {b.total}")
    for i, ind in enumerate(r.indicators):
        if ind.target < ind.baseline and ind.achieved > ind.baseline:
            bad(f"indicators.{i}", "target below baseline but achieved above it")
    seen: set[str] = set()
    for i, s in enumerate(r.expenditure):
        e = s.entity.upper()
        if e not in punos:
            bad(f"expenditure.{i}.entity", f"{e} is not a PUNO of this programme")
            continue
        if e in seen:
            bad(f"expenditure.{i}.entity", f"{e} is listed twice")
        seen.add(e)
        held = net_funded.get(e, ZERO)
        if spent.get(e, ZERO) + s.amount_usd > held:
            bad(f"expenditure.{i}.amount_usd",
                f"{e} would have spent {spent.get(e, ZERO) + s.amount_usd:,.2f} of the "
                f"{held:,.2f} transferred to it (net of refunds)")
    if errors:
        raise InvalidInput("the report is not acceptable", errors=errors)
    key = report_key(r.kind, r.year)
    if key in received:
        raise Conflict(f"the {key} report of {r.programme_id} is already in")


def delivery_rate(spent: Decimal, net_funded: Decimal) -> Decimal | None:
    """Expenditure / net funded amount (transfers - refunds)."""
    if net_funded <= 0:
        return None
    return (spent / net_funded).quantize(RATE)


def delivery(spent: dict[str, Decimal], net_funded: dict[str, Decimal]
             ) -> dict[str, Any]:
    per = {e: delivery_rate(spent.get(e, ZERO), n) for e, n in net_funded.items()}
    total = delivery_rate(sum(spent.values(), ZERO), sum(net_funded.values(), ZERO))
    return {"programme": total, "by_puno": per}


def low_delivery_days(start: date, end: date, rules: MonitoringRules) -> int:
    """How many days after the start the share of the duration elapsed reaches
    `low_delivery_after` (the whole days n with n / duration >= the share)."""
    span = (end - start).days or 1
    return int((rules.low_delivery_after * span).to_integral_value(rounding=ROUND_CEILING))


def risk_flags(*, today: date, start: date, end: date, overdue_now: bool,
               rate: Decimal | None, last_report: date | None, rules: MonitoringRules
               ) -> set[str]:
    flags = set()
    if overdue_now:
        flags.add("report-overdue")
    elapsed = (min(today, end) - start).days  # the share elapsed: elapsed / duration
    if elapsed >= low_delivery_days(start, end, rules) and (
            rate is None or rate < rules.low_delivery_rate):
        flags.add("low-delivery")
    since = last_report or start
    if add_months(since, rules.no_report_months) <= today and today < add_months(
            end, rules.final_narrative_months):
        flags.add("no-recent-report")
    return flags


def turning_days(start: date, end: date, received: set[str], last_report: date | None,
                 rules: MonitoringRules) -> list[date]:
    """The days on which what the scheduler finds for a programme can change with the date
    alone (the programme otherwise as it is): the day after each deadline not yet met
    (`overdue`), the day the low-delivery share of the duration is reached, the days the
    no-recent-report flag turns on and off (`risk_flags`), the day after the end date
    (`operationally_closable`). From one of them to the day before the next, the findings
    are the same every day: a programme is looked at again on the first of them after the
    day it was last looked at, not every day."""
    days = [d.due + timedelta(days=1) for d in reporting_calendar(start, end, rules)
            if d.key not in received]
    days.append(start + timedelta(days=low_delivery_days(start, end, rules)))
    days.append(add_months(last_report or start, rules.no_report_months))
    days.append(add_months(end, rules.final_narrative_months))
    days.append(end + timedelta(days=1))
    return days


def operationally_closable(end: date, received: set[str], today: date) -> bool:
    return today > end and "final-narrative" in received


def unspent_balances(net_funded: dict[str, Decimal], spent: dict[str, Decimal],
                     transferred: dict[str, Decimal], rules: MonitoringRules
                     ) -> list[dict[str, Any]]:
    """What each PUNO holds unspent, and what it must refund: nothing if the programme's
    total leftover is at or below the threshold (UNDP's USD 250 rule)."""
    rows = []
    for e in sorted(net_funded):
        unspent = max(net_funded[e] - spent.get(e, ZERO), ZERO)
        rows.append({"entity": e, "transferred_usd": transferred.get(e, ZERO),
                     "expenditure_usd": spent.get(e, ZERO), "unspent_usd": unspent})
    waive = sum((r["unspent_usd"] for r in rows), ZERO) <= rules.refund_threshold_usd
    for r in rows:
        r["refund_usd"] = ZERO if waive else r["unspent_usd"]
    return rows


def on_time(kind: str, year: int | None, deadlines: list[Deadline], at: datetime) -> bool:
    key = report_key(kind, year)
    due = next((d.due for d in deadlines if d.key == key), None)
    return due is None or at.date() <= due
