"""The IATI Standard's rules that apply to our export, as code: `problems(document)` names
every breach in an `iati-activities` document (empty: it keeps them). The XML schema checks
structure; the codelists check codes; these are the rules the Standard states beyond both
(iatistandard.org, 2.03 "Rulesets" and activity guidance):

* the activity identifier starts with the reporting organisation's identifier and a hyphen;
* dates: a planned start is not after the planned end, an actual start not after the actual
  end, and no actual date (start, end, transaction) is after the file was generated;
* budgets: each period starts before it ends and lasts at most a year; periods of the same
  budget type do not overlap; the value date falls within its period;
* percentages: recipient countries and regions together sum to 100, and so do the sectors
  of each vocabulary;
* transactions agree with the status: nothing has been disbursed or spent (3, 4) by an
  activity still in the pipeline (1), and nothing is committed or spent (2, 4) by one that
  never started (cancelled before a start date).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal


def _d(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _year_on(d: date) -> date:
    try:
        return d.replace(year=d.year + 1)
    except ValueError:
        return d.replace(year=d.year + 1, day=28)


def problems(doc: bytes | ET.Element) -> list[str]:
    # our own export (or a test's document), not input from outside
    root = ET.fromstring(doc) if isinstance(doc, bytes) else doc  # noqa: S314
    generated = datetime.fromisoformat(root.get("generated-datetime", "")).date()
    out: list[str] = []
    for act in root.findall("iati-activity"):
        ident = act.findtext("iati-identifier") or ""
        out += [f"{ident}: {p}" for p in _activity(act, ident, generated)]
    return out


def _activity(act: ET.Element, ident: str, generated: date) -> list[str]:
    out = []
    ref = act.find("reporting-org").get("ref", "")  # type: ignore[union-attr]
    if not ident.startswith(f"{ref}-"):
        out.append(f"identifier does not start with the reporting org's {ref}-")
    dates = {el.get("type"): _d(el.get("iso-date")) for el in act.findall("activity-date")}
    if dates.get("1") and dates.get("3") and dates["1"] > dates["3"]:
        out.append("planned start after planned end")
    if dates.get("2") and dates.get("4") and dates["2"] > dates["4"]:
        out.append("actual start after actual end")
    for kind in ("2", "4"):
        if dates.get(kind) and dates[kind] > generated:  # type: ignore[operator]
            out.append(f"actual date (type {kind}) in the future")
    by_type: dict[str, list[tuple[date, date]]] = defaultdict(list)
    for b in act.findall("budget"):
        s, e = _d(b.find("period-start").get("iso-date")), _d(  # type: ignore[union-attr]
            b.find("period-end").get("iso-date"))  # type: ignore[union-attr]
        v = _d(b.find("value").get("value-date"))  # type: ignore[union-attr]
        assert s and e and v
        if s > e:
            out.append(f"budget period {s}..{e} ends before it starts")
        if e >= _year_on(s):
            out.append(f"budget period {s}..{e} is longer than a year")
        if not s <= v <= e:
            out.append(f"budget value date {v} outside its period {s}..{e}")
        by_type[b.get("type", "1")].append((s, e))
    for kind, spans in by_type.items():
        spans.sort()
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            if s2 <= e1:
                out.append(f"budget periods of type {kind} overlap at {s2}")
    geo = [Decimal(el.get("percentage", "100")) for el in
           act.findall("recipient-country") + act.findall("recipient-region")]
    if geo and sum(geo) != 100:
        out.append(f"recipient countries and regions sum to {sum(geo)}%, not 100%")
    sectors: dict[str, Decimal] = defaultdict(Decimal)
    for el in act.findall("sector"):
        sectors[el.get("vocabulary", "1")] += Decimal(el.get("percentage", "100"))
    for vocab, total in sectors.items():
        if total != 100:
            out.append(f"sectors of vocabulary {vocab} sum to {total}%, not 100%")
    status = (act.find("activity-status").get("code")  # type: ignore[union-attr]
              if act.find("activity-status") is not None else "")
    kinds = {t.find("transaction-type").get("code")  # type: ignore[union-attr]
             for t in act.findall("transaction")}
    if status == "1" and kinds & {"3", "4"}:
        out.append("a pipeline activity (status 1) has disbursements or expenditure")
    if status == "5" and not dates.get("2") and kinds & {"3", "4"}:
        out.append("a cancelled activity that never started has disbursements or expenditure")
    for t in act.findall("transaction"):
        when = _d(t.find("transaction-date").get("iso-date"))  # type: ignore[union-attr]
        if when and when > generated + timedelta(days=0):
            out.append(f"transaction dated {when}, after the file was generated")
    return out
