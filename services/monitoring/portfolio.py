"""The portfolio view: totals by status, country, thematic area, GCM objective and PUNO;
beneficiaries reached; which of the 23 objectives are served and with how much money; the
Fund's results as a time series.

It is a sum of counters, and each programme and each report adds its own (`programme_part`,
`report_part`: the rules, stated once). Monitoring keeps the sums as it writes: every
transaction that changes a programme or a report adds the change of their parts to the
`portfolio` aggregate documents, in the same transaction (shared.store.Aggregate), so the
route reads a few small documents however large the portfolio is. The aggregate is split
into shards by programme (or report) id, so concurrent transactions seldom write the same
one; each shard is a sum over its own programmes, the same in any order of events (a
rebuild compares it document by document). `portfolio(docs, reports)` computes the
same view from documents, for the portfolio as of a past instant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from services.monitoring.domain import ZERO, delivery_rate
from shared.dec128 import amount
from shared.reference import GCM_OBJECTIVES

COLLECTION = "portfolio"
FUNDED = {"funded", "on-going", "suspended", "operationally-closed", "financially-closed"}

Counters = dict[str, Any]  # dotted path -> int or Decimal


def _key(x: Any) -> str:
    """A counter path segment: MongoDB field names may not contain '.' or start with '$'."""
    return str(x).replace(".", "\uff0e").replace("$", "\uff04")


def split_evenly(total: Decimal, n: int) -> list[Decimal]:
    """`total` in n cent-exact parts that add up to it."""
    part = (total / n).quantize(Decimal("0.01"))
    return [part] * (n - 1) + [total - part * (n - 1)]


def programme_part(d: dict[str, Any] | None) -> Counters:
    """What one programme adds to the portfolio."""
    out: Counters = defaultdict(int)
    if not d:
        return out
    status = d.get("status") or "unknown"
    allocated = amount(d.get("allocated_usd"))
    out[f"status.{_key(status)}.programmes"] += 1
    out[f"status.{_key(status)}.allocated_usd"] += allocated
    if status in FUNDED:
        out["beneficiaries"] += d.get("beneficiaries_total", 0)
        for c in d.get("countries") or [d.get("region") or "(none)"]:
            out[f"country.{_key(c)}.programmes"] += 1
            out[f"country.{_key(c)}.allocated_usd"] += allocated
        if d.get("thematic_area"):
            out[f"area.{d['thematic_area']}.programmes"] += 1
            out[f"area.{d['thematic_area']}.allocated_usd"] += allocated
        for ln in d.get("lines", []):
            e = _key(ln["entity"])
            out[f"puno.{e}.programmes"] += 1
            out[f"puno.{e}.allocated_usd"] += amount(ln["total_usd"])
            out[f"puno.{e}.transferred_usd"] += amount((d.get("transferred") or {}).get(
                ln["entity"]))
            out[f"puno.{e}.spent_usd"] += amount((d.get("spent") or {}).get(ln["entity"]))
        objectives = sorted(set(d.get("gcm_objectives") or []))
        if objectives:  # a programme's money is shared evenly among its objectives
            for o, share in zip(objectives, split_evenly(allocated, len(objectives)),
                                strict=True):
                out[f"objective.{o}.programmes"] += 1
                out[f"objective.{o}.allocated_usd"] += share
    for t in d.get("transfers", []):
        out[f"year.{t['at'].year}.transfers"] += 1
        out[f"year.{t['at'].year}.transferred_usd"] += amount(t["usd"])
    return out


def report_part(r: dict[str, Any] | None) -> Counters:
    """What one report adds to the results by year."""
    out: Counters = defaultdict(int)
    if not r:
        return out
    year = r.get("year") or r["at"].year
    body = r["body"]
    out[f"year.{year}.reports"] += 1
    out[f"year.{year}.beneficiaries"] += (body.get("beneficiaries") or {}).get("total", 0)
    out[f"year.{year}.expenditure_usd"] += sum((Decimal(x["amount_usd"]) for x in body.get(
        "expenditure", [])), ZERO)
    return out


PARTS = {"programmes": programme_part, "reports": report_part}


def add(total: Counters, more: Counters) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def view(counters: Counters, at_risk: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The portfolio the counters make."""
    tree: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for path, v in counters.items():
        kind, _, rest = path.partition(".")
        if not rest:
            continue
        name, _, field = rest.rpartition(".")
        tree[kind][name.replace("\uff0e", ".").replace("\uff04", "$")][field] = v

    def buckets(kind: str, fields: tuple[str, ...]) -> dict[str, Any]:
        return {k: {f: c.get(f, ZERO if f.endswith("_usd") else 0) for f in fields}
                for k, c in tree[kind].items() if c.get("programmes", 0) > 0}

    by_puno = buckets("puno", ("programmes", "allocated_usd", "transferred_usd", "spent_usd"))
    for p in by_puno.values():
        p["delivery_rate"] = delivery_rate(p["spent_usd"], p["transferred_usd"])
    coverage = {o: {"title": t,
                    "programmes": tree["objective"].get(str(o), {}).get("programmes", 0),
                    "allocated_usd": tree["objective"].get(str(o), {}).get("allocated_usd",
                                                                           ZERO)}
                for o, t in GCM_OBJECTIVES.items()}
    series: dict[int, Any] = {}
    for y, c in tree["year"].items():
        if not c.get("reports", 0) and not c.get("transfers", 0):
            continue
        s = {"reports": c.get("reports", 0), "beneficiaries": c.get("beneficiaries", 0),
             "expenditure_usd": c.get("expenditure_usd", ZERO)}
        if c.get("transfers", 0):
            s["transferred_usd"] = c.get("transferred_usd", ZERO)
        series[int(y)] = s
    by_status = buckets("status", ("programmes", "allocated_usd"))
    return {
        "programmes": sum(b["programmes"] for b in by_status.values()),
        "by_status": by_status,
        "by_country": dict(sorted(buckets("country", ("programmes", "allocated_usd")).items())),
        "by_thematic_area": dict(sorted(
            (int(k), v) for k, v in buckets("area", ("programmes", "allocated_usd")).items())),
        "by_puno": dict(sorted(by_puno.items())),
        "beneficiaries_reached": counters.get("beneficiaries", 0),
        "gcm_objective_coverage": coverage,
        "objectives_served": sorted(o for o, c in coverage.items() if c["programmes"]),
        "objectives_not_served": sorted(o for o, c in coverage.items() if not c["programmes"]),
        "results_by_year": dict(sorted(series.items())),
        "at_risk": sorted(({"programme_id": d["_id"], "title": d.get("title"),
                            "flags": d["risk_flags"]} for d in at_risk if d.get("risk_flags")),
                          key=lambda x: x["programme_id"]),
    }


def portfolio(docs: list[dict[str, Any]], reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The portfolio computed from documents (as of a past instant, and to check the kept
    aggregate against)."""
    counters: Counters = {}
    for d in docs:
        add(counters, programme_part(d))
    for r in reports:
        add(counters, report_part(r))
    return view(counters, docs)
