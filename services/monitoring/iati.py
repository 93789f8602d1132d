"""The portfolio as an IATI 2.03 activities document (open data), element order as the
schema requires. Codes from the IATI codelists: activity status, organisation roles and
types, transaction types (11 incoming commitment, 1 incoming funds, 2 outgoing commitment,
3 disbursement, 4 expenditure), OECD DAC sector 15190."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from bson import Decimal128

from shared import lifecycle
from shared.reference import NETWORK_MEMBERS

S = lifecycle.S
# what the Fund publishes: programmes from the SC's approval on (shared.lifecycle maps each
# state to IATI's ActivityStatus: 1 pipeline ... 5 cancelled, 6 suspended)
EXPORTED = frozenset({S.APPROVED, S.FUNDED, S.ON_GOING, S.SUSPENDED, S.OPERATIONALLY_CLOSED,
                      S.FINANCIALLY_CLOSED, S.CANCELLED, S.WITHDRAWN})
SECTOR_MIGRATION = "15190"


def exported(doc: dict[str, Any]) -> bool:
    """Approved programmes, whatever became of them (a withdrawal before the approval is
    not published)."""
    return doc.get("status") in EXPORTED and doc.get("approved_usd") is not None


@dataclass(frozen=True)
class Publisher:
    ref: str = "XM-DAC-41114"
    name: str = "UNDP Multi-Partner Trust Fund Office"
    fund_code: str = "MIG00"
    fund_name: str = "Migration Multi-Partner Trust Fund"


def _usd(x: Any) -> str:
    d = x.to_decimal() if isinstance(x, Decimal128) else Decimal(x or 0)
    return format(d.quantize(Decimal("0.01")), "f")


def _day(x: datetime | date) -> str:
    return (x.date() if isinstance(x, datetime) else x).isoformat()


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    ET.SubElement(el, "narrative").text = text
    return el


def _transaction(act: ET.Element, code: str, when: datetime, usd: Any, *,
                 provider: str | None = None, receiver: str | None = None,
                 receiver_type: str = "40") -> None:
    t = ET.SubElement(act, "transaction")
    ET.SubElement(t, "transaction-type", code=code)
    ET.SubElement(t, "transaction-date", {"iso-date": _day(when)})
    ET.SubElement(t, "value", {"currency": "USD", "value-date": _day(when)}).text = _usd(usd)
    if provider:
        _text(t, "provider-org", provider)
    if receiver:
        _text(t, "receiver-org", receiver, type=receiver_type)


def activity(doc: dict[str, Any], reports: list[dict[str, Any]], pub: Publisher,
             generated: datetime) -> ET.Element:
    pid = doc["_id"]
    act = ET.Element("iati-activity", {"last-updated-datetime": generated.isoformat(
        timespec="seconds"), "default-currency": "USD"})
    ET.SubElement(act, "iati-identifier").text = f"{pub.ref}-{pub.fund_code}-{pid}"
    _text(act, "reporting-org", pub.name, ref=pub.ref, type="40")
    _text(act, "title", doc.get("title") or pid)
    _text(act, "description", f"Joint programme of {', '.join(doc.get('punos', []))} funded "
                              f"by the {pub.fund_name}; GCM objectives "
                              f"{', '.join(str(o) for o in doc.get('gcm_objectives', []))}.")
    _text(act, "participating-org", pub.fund_name, role="1", type="40", ref=pub.ref)
    _text(act, "participating-org", pub.name, role="2", type="40", ref=pub.ref)
    for p in doc.get("punos", []):
        _text(act, "participating-org", NETWORK_MEMBERS.get(p, p), role="4", type="40")
    ET.SubElement(act, "activity-status", code=str(lifecycle.iati_status(doc["status"])))
    start, end = doc.get("start_date"), doc.get("end_date")
    if start:
        ET.SubElement(act, "activity-date", {"iso-date": _day(start), "type": "2"})
        if end:
            closed = doc["status"] in (S.OPERATIONALLY_CLOSED, S.FINANCIALLY_CLOSED)
            ET.SubElement(act, "activity-date", {"iso-date": _day(end),
                                                 "type": "4" if closed else "3"})
    else:
        ET.SubElement(act, "activity-date", {"iso-date": _day(
            doc.get("approved_at") or generated), "type": "1"})
    countries = doc.get("countries") or []
    if countries:
        share = (Decimal(100) / len(countries)).quantize(Decimal("0.01"))
        for i, c in enumerate(countries):
            pct = share if i < len(countries) - 1 else Decimal(100) - share * (len(countries) - 1)
            ET.SubElement(act, "recipient-country", code=c, percentage=str(pct))
    else:  # a regional programme: DAC region "developing countries, unspecified"
        ET.SubElement(act, "recipient-region", code="998", vocabulary="1", percentage="100")
    ET.SubElement(act, "sector", code=SECTOR_MIGRATION, vocabulary="1", percentage="100")
    if doc.get("approved_usd") is not None:
        first = start or doc.get("approved_at") or generated
        # the original budget (type 1) and, after an SC revision, the revised one (type 2)
        budgets = [("1", doc.get("original_approved_usd") or doc["approved_usd"])]
        if doc.get("revisions"):
            budgets.append(("2", doc["approved_usd"]))
        for kind, usd in budgets:
            b = ET.SubElement(act, "budget", type=kind, status="2")
            ET.SubElement(b, "period-start", {"iso-date": _day(first)})
            ET.SubElement(b, "period-end", {"iso-date": _day(end or first)})
            ET.SubElement(b, "value", {"currency": "USD", "value-date": _day(first)}).text = (
                _usd(usd))
        _transaction(act, "11", doc.get("approved_at") or generated, doc["approved_usd"],
                     provider=pub.fund_name)
    for f in doc.get("funded_by", []):
        _transaction(act, "1", doc["allocated_at"], f["usd"], provider=f["contributor"])
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


def export(docs: list[dict[str, Any]], reports: list[dict[str, Any]], pub: Publisher,
           generated: datetime) -> bytes:
    root = ET.Element("iati-activities", {"version": "2.03",
                                          "generated-datetime": generated.isoformat(
                                              timespec="seconds")})
    by_programme: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        by_programme.setdefault(r["programme_id"], []).append(r)
    for d in sorted(docs, key=lambda d: d["_id"]):
        if exported(d):
            root.append(activity(d, by_programme.get(d["_id"], []), pub, generated))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
