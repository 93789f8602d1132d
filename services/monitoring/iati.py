"""The Fund's open data as IATI 2.03 activities documents, element order as the schema
requires, codes from the IATI codelists, and the Standard's rules that apply kept
(services/monitoring/iati_rules.py checks them; the tests run it on every export):

* the Fund itself is an activity (`<ref>-MIG00`) with its contributions: pledges
  (transaction type 13, incoming pledge) and deposits (1, incoming funds), each provided by
  its contributor (role 1, funding);
* each programme approved by the Steering Committee is an activity (`<ref>-MIG00-<id>`):
  status from shared.lifecycle (1 pipeline ... 4 closed, 5 cancelled or withdrawn,
  6 suspended); roles 1 funding (the Fund), 2 accountable and 3 extending (the
  Administrative Agent), 4 implementing (the PUNOs); planned and actual dates; recipient
  countries, or the region mapped to IATI's Region codelist (shared.reference.IATI_REGION);
  sector DAC 15190; budgets one per period of at most a year, original (type 1) and, after
  a revision, revised (type 2); transactions 2 outgoing commitment (allocations), 3
  disbursement (transfers), 4 expenditure (financial reports);
* text XML 1.0 cannot carry is refused at the door (shared.contracts.base) and stripped on
  the way out here, for anything stored before;
* the export is paged: each page is a whole `iati-activities` document, valid on its own.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared import lifecycle
from shared.dec128 import amount
from shared.reference import IATI_REGION, NETWORK_MEMBERS

S = lifecycle.S
# what the Fund publishes: programmes from the SC's approval on, whatever became of them
EXPORTED = frozenset({S.APPROVED, S.FUNDED, S.ON_GOING, S.SUSPENDED, S.OPERATIONALLY_CLOSED,
                      S.FINANCIALLY_CLOSED, S.CANCELLED, S.WITHDRAWN})
SECTOR_MIGRATION = "15190"
CENT = Decimal("0.01")
# XML 1.0 has no place for C0 controls but tab, LF and CR, for surrogates or U+FFFE/FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Publisher:
    ref: str = "XM-DAC-41114"
    name: str = "UNDP Multi-Partner Trust Fund Office"
    fund_code: str = "MIG00"
    fund_name: str = "Migration Multi-Partner Trust Fund"


def exported(doc: dict[str, Any]) -> bool:
    """Approved programmes, whatever became of them (a withdrawal before the approval is
    not published)."""
    return doc.get("status") in EXPORTED and doc.get("approved_usd") is not None


def clean(text: Any) -> str:
    return _NOT_XML.sub("", str(text))


def _usd(x: Any) -> str:
    return format(amount(x).quantize(CENT), "f")


def _day(x: datetime | date) -> date:
    return x.date() if isinstance(x, datetime) else x


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    ET.SubElement(el, "narrative").text = clean(text)
    return el


def periods(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end] cut into periods of at most a year (IATI: a budget period is no longer
    than one year), each starting the day after the one before ends."""
    out = []
    s = start
    while s <= end:
        try:
            year_on = s.replace(year=s.year + 1)
        except ValueError:  # 29 February
            year_on = s.replace(year=s.year + 1, day=28)
        e = min(end, year_on - timedelta(days=1))
        out.append((s, e))
        s = e + timedelta(days=1)
    return out


def spread(total: Decimal, spans: list[tuple[date, date]]) -> list[Decimal]:
    """`total` shared among periods in proportion to their days, in cents; the last takes
    the remainder, so the parts add up to the total."""
    days = [(e - s).days + 1 for s, e in spans]
    whole = sum(days)
    parts = [(total * d / whole).quantize(CENT, rounding=ROUND_HALF_UP) for d in days[:-1]]
    return [*parts, total - sum(parts, Decimal(0))]


def _transaction(act: ET.Element, code: str, when: datetime | date, usd: Any, *,
                 provider: str | None = None, provider_ref: str | None = None,
                 receiver: str | None = None) -> None:
    t = ET.SubElement(act, "transaction")
    ET.SubElement(t, "transaction-type", code=code)
    ET.SubElement(t, "transaction-date", {"iso-date": _day(when).isoformat()})
    ET.SubElement(t, "value", {"currency": "USD", "value-date": _day(when).isoformat()}
                  ).text = _usd(usd)
    if provider:
        _text(t, "provider-org", provider, **({"ref": provider_ref} if provider_ref else {}))
    if receiver:
        _text(t, "receiver-org", receiver, type="40")


def _activity(pub: Publisher, identifier: str, title: str, description: str,
              generated: datetime) -> ET.Element:
    act = ET.Element("iati-activity", {
        "last-updated-datetime": generated.isoformat(timespec="seconds"),
        "default-currency": "USD"})
    ET.SubElement(act, "iati-identifier").text = identifier
    _text(act, "reporting-org", pub.name, ref=pub.ref, type="40")
    _text(act, "title", title)
    _text(act, "description", description)
    return act


def fund_activity(contributions: list[dict[str, Any]], pub: Publisher, generated: datetime
                  ) -> ET.Element:
    """The Fund itself, with its contributions: each pledge (13) and deposit (1)."""
    act = _activity(pub, f"{pub.ref}-{pub.fund_code}", pub.fund_name,
                    "The UN's pooled fund for the Global Compact for Safe, Orderly and Regular "
                    "Migration: contributions from Member States and others, allocated to "
                    "joint programmes of the UN Network on Migration.", generated)
    for who in sorted({c["contributor"] for c in contributions}):
        _text(act, "participating-org", who, role="1", type="10")
    _text(act, "participating-org", pub.name, role="2", type="40", ref=pub.ref)
    _text(act, "participating-org", pub.name, role="3", type="40", ref=pub.ref)
    ET.SubElement(act, "activity-status", code="2")
    first = min((_day(c["pledged_at"]) for c in contributions), default=_day(generated))
    ET.SubElement(act, "activity-date", {"iso-date": first.isoformat(), "type": "2"})
    ET.SubElement(act, "recipient-region", code="998", vocabulary="1", percentage="100")
    ET.SubElement(act, "sector", code=SECTOR_MIGRATION, vocabulary="1", percentage="100")
    for c in sorted(contributions, key=lambda c: (c["pledged_at"], c["_id"])):
        usd = c.get("usd_estimate") or (c["amount"] if c.get("currency") == "USD" else None)
        if usd is not None:  # a pledge in another currency is valued at its deposit
            _transaction(act, "13", c["pledged_at"], usd, provider=c["contributor"])
        for d in c.get("deposits", []):
            _transaction(act, "1", d["at"], d["usd"], provider=c["contributor"])
    return act


def programme_activity(doc: dict[str, Any], reports: list[dict[str, Any]], pub: Publisher,
                       generated: datetime) -> ET.Element:
    pid = doc["_id"]
    act = _activity(pub, f"{pub.ref}-{pub.fund_code}-{pid}", doc.get("title") or pid,
                    f"Joint programme of {', '.join(doc.get('punos', []))} funded by the "
                    f"{pub.fund_name}; GCM objectives "
                    f"{', '.join(str(o) for o in doc.get('gcm_objectives', []))}.", generated)
    _text(act, "participating-org", pub.fund_name, role="1", type="40",
          ref=f"{pub.ref}-{pub.fund_code}")
    _text(act, "participating-org", pub.name, role="2", type="40", ref=pub.ref)
    _text(act, "participating-org", pub.name, role="3", type="40", ref=pub.ref)
    for p in doc.get("punos", []):
        _text(act, "participating-org", NETWORK_MEMBERS.get(p, p), role="4", type="40")
    status = lifecycle.iati_status(doc["status"])
    ET.SubElement(act, "activity-status", code=str(status))
    approved = _day(doc.get("approved_at") or generated)
    start, end = doc.get("start_date"), doc.get("end_date")
    months = doc.get("duration_months") or 12
    planned_end = _day(end) if end else approved + timedelta(days=round(months * 30.44) - 1)
    ET.SubElement(act, "activity-date", {"iso-date": approved.isoformat(), "type": "1"})
    if start:
        ET.SubElement(act, "activity-date", {"iso-date": _day(start).isoformat(),
                                             "type": "2"})
    ET.SubElement(act, "activity-date", {"iso-date": planned_end.isoformat(), "type": "3"})
    if (doc.get("closed") or {}).get(S.OPERATIONALLY_CLOSED) and start and end:
        # activities ended on the end date (operational closure came after it)
        ET.SubElement(act, "activity-date", {"iso-date": min(
            _day(end), _day(generated)).isoformat(), "type": "4"})
    countries = doc.get("countries") or []
    if countries:
        share = (Decimal(100) / len(countries)).quantize(CENT)
        for i, c in enumerate(countries):
            pct = share if i < len(countries) - 1 else Decimal(100) - share * (len(countries) - 1)
            ET.SubElement(act, "recipient-country", code=c, percentage=str(pct))
    else:
        ET.SubElement(act, "recipient-region", code=IATI_REGION.get(
            doc.get("region") or "", "998"), vocabulary="1", percentage="100")
    ET.SubElement(act, "sector", code=SECTOR_MIGRATION, vocabulary="1", percentage="100")
    span = periods(_day(start) if start else approved, planned_end)
    budgets = [("1", amount(doc.get("original_approved_usd") or doc["approved_usd"]))]
    if doc.get("revisions"):
        budgets.append(("2", amount(doc["approved_usd"])))
    for kind, total in budgets:
        for (s, e), part in zip(span, spread(total, span), strict=True):
            b = ET.SubElement(act, "budget", type=kind, status="2")
            ET.SubElement(b, "period-start", {"iso-date": s.isoformat()})
            ET.SubElement(b, "period-end", {"iso-date": e.isoformat()})
            ET.SubElement(b, "value", {"currency": "USD", "value-date": s.isoformat()}
                          ).text = _usd(part)
    if doc.get("allocated_at"):
        for ln in doc.get("lines", []):
            _transaction(act, "2", doc["allocated_at"], ln["total_usd"],
                         receiver=NETWORK_MEMBERS.get(ln["entity"], ln["entity"]))
    for t in doc.get("transfers", []):
        _transaction(act, "3", t["at"], t["usd"],
                     receiver=NETWORK_MEMBERS.get(t["entity"], t["entity"]))
    for r in reports:
        for s in r["body"].get("expenditure", []):
            _transaction(act, "4", r["at"], s["amount_usd"],
                         provider=NETWORK_MEMBERS.get(s["entity"].upper(), s["entity"]))
    return act


def document(activities: list[ET.Element], generated: datetime) -> bytes:
    root = ET.Element("iati-activities", {"version": "2.03", "generated-datetime":
                                          generated.isoformat(timespec="seconds")})
    root.extend(activities)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def export(docs: list[dict[str, Any]], reports: list[dict[str, Any]], pub: Publisher,
           generated: datetime, contributions: list[dict[str, Any]] | None = None) -> bytes:
    """One page: the Fund's activity (when `contributions` is given: the first page) and
    these programmes' activities."""
    by_programme: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        by_programme.setdefault(r["programme_id"], []).append(r)
    acts = [fund_activity(contributions, pub, generated)] if contributions is not None else []
    acts += [programme_activity(d, by_programme.get(d["_id"], []), pub, generated)
             for d in sorted(docs, key=lambda d: d["_id"]) if exported(d)]
    return document(acts, generated)
