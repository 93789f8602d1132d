"""Each programme's next check (services.monitoring.store.next_check): the scheduler looks at a
programme only on the days it names, and finds exactly what looking at it every day finds,
on the same days. Programmes of any start, duration and history of reports, spending,
refunds and extensions (hypothesis) are followed day by day in two worlds: in one every
programme is evaluated every day, in the other only when its next check has come; the
findings (overdue reports, risk flags, closures) and their days are the same."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from typing import Any

from bson import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

from services.monitoring.domain import MonitoringRules, end_date, reporting_calendar
from services.monitoring.store import NEVER, as_dt, assess, next_check, overdue_id
from shared.store import apply_update

R = MonitoringRules()
PID = "jp-1"


def programme(start: date, months: int) -> dict[str, Any]:
    return {"_id": PID, "status": "on-going", "start_date": as_dt(start),
            "end_date": as_dt(end_date(start, months)), "duration_months": months,
            "transferred": {"IOM": Decimal128("100000"), "ILO": Decimal128("50000")}}


def evaluate(doc: dict[str, Any], day: date) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """What MonitoringStore.evaluate does to the programme's record, and what it finds."""
    found = assess(doc, PID, day, R, set(doc.get("overdue_recorded", [])))
    if found is None:
        return doc, []
    out: list[tuple[Any, ...]] = [(day, "overdue", d.key, d.due) for d in found.overdue]
    upd: dict[str, Any] = {"checked_on": as_dt(day), "overdue_recorded": sorted(
        {*doc.get("overdue_recorded", []), *(overdue_id(PID, d) for d in found.overdue)})}
    if found.flags != found.old_flags:
        out.append((day, "flags", tuple(sorted(found.flags))))
        upd["risk_flags"] = sorted(found.flags)
    if found.close_operationally:
        out.append((day, "operationally-closed"))
        upd["status"] = "operationally-closed"
    if found.close_financially:
        out.append((day, "financially-closed"))
        upd["status"] = "financially-closed"
    return apply_update(doc, PID, {"$set": upd}), out


def happen(doc: dict[str, Any], day: date, what: tuple[Any, ...]) -> dict[str, Any]:
    """A fact from elsewhere on `day`: a report, an extension, a refund (when it could be)."""
    if doc["status"] not in ("on-going", "operationally-closed"):
        return doc
    kind = what[0]
    start, end = doc["start_date"].date(), doc["end_date"].date()
    if kind == "report":
        keys = [d.key for d in reporting_calendar(start, end, R)]
        key = keys[what[1] % len(keys)]
        if key in doc.get("received", {}):
            return doc
        upd: dict[str, Any] = {"$set": {f"received.{key}": {"at": as_dt(day)},
                                        "last_report_at": as_dt(day)}}
        if "financial" in key:  # a share of what is left unspent
            upd["$inc"] = {"spent.IOM": Decimal128(D(what[2]) * 1000),
                           "spent.ILO": Decimal128(D(what[2]) * 500)}
        return apply_update(doc, PID, upd)
    if kind == "extend" and doc["status"] == "on-going":
        months = doc["duration_months"] + what[1]
        return apply_update(doc, PID, {"$set": {
            "duration_months": months, "end_date": as_dt(end_date(start, months))}})
    if kind == "refund":
        return apply_update(doc, PID, {"$inc": {"refunded.IOM": Decimal128(D(what[1]))}})
    return doc


facts = st.lists(st.tuples(
    st.integers(0, 1500),
    st.one_of(st.tuples(st.just("report"), st.integers(0, 20), st.integers(0, 40)),
              st.tuples(st.just("extend"), st.integers(1, 12)),
              st.tuples(st.just("refund"), st.integers(1, 5000)))), max_size=12)


@settings(max_examples=50, deadline=None)
@given(start=st.dates(date(2024, 1, 1), date(2027, 12, 31)), months=st.integers(1, 36),
       history=facts)
def test_looking_only_when_the_next_check_comes_finds_what_looking_every_day_finds(
        start: date, months: int, history: list[tuple[int, tuple[Any, ...]]]) -> None:
    daily = scheduled = programme(start, months)
    on: dict[int, list[tuple[Any, ...]]] = {}
    for offset, what in history:
        on.setdefault(offset, []).append(what)
    found_daily: list[tuple[Any, ...]] = []
    found_scheduled: list[tuple[Any, ...]] = []
    looked = 0
    last_fact = max((offset for offset, _ in history), default=0)
    for offset in itertools.count():
        day = start + timedelta(days=offset)
        # until every fact happened and the last deadline (within 18 months of the end) passed
        if offset > last_fact and day > daily["end_date"].date() + timedelta(days=560):
            break
        for what in on.get(offset, []):
            daily, scheduled = happen(daily, day, what), happen(scheduled, day, what)
        daily, out = evaluate(daily, day)
        found_daily += out
        at = next_check(scheduled, R)
        if at <= as_dt(day):
            looked += 1
            scheduled, out = evaluate(scheduled, day)
            found_scheduled += out
    assert found_scheduled == found_daily
    assert looked <= 12 + 4 * len(history) + 20  # a handful of days, not every day


def test_a_programme_not_under_monitoring_is_never_due() -> None:
    doc = programme(date(2026, 1, 15), 12)
    assert next_check({**doc, "status": "suspended"}, R) == NEVER
    assert next_check({k: v for k, v in doc.items() if k != "start_date"}, R) == NEVER
    assert next_check({**doc, "status": "financially-closed"}, R) == NEVER


def test_the_next_check_of_a_new_programme_is_its_first_turning_day() -> None:
    """Started 2026-01-15 for a year and never looked at: nothing is due on its first day;
    the first day its findings can change is the one on which three quarters of its
    duration have passed (2026-10-15: 273 of 364 days), before any report is due."""
    doc = programme(date(2026, 1, 15), 12)
    assert next_check(doc, R) == datetime(2026, 10, 15, tzinfo=UTC)
    # looked at on 2026-11-01 (nothing spent: low delivery), the next is the day after the
    # end date (2027-01-15: the no-recent-report flag, a year after the start)
    looked, out = evaluate(doc, date(2026, 11, 1))
    assert out == [(date(2026, 11, 1), "flags", ("low-delivery",))]
    assert next_check(looked, R) == datetime(2027, 1, 15, tzinfo=UTC)
    # a report (the annual financial: 80% spent) changes what is found as of the day it was
    # last looked at (no low delivery now): due at once
    changed = happen(looked, date(2026, 11, 2), ("report", 1, 80))
    assert next_check(changed, R) == datetime(2026, 11, 1, tzinfo=UTC)
