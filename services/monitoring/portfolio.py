"""The portfolio view, computed from monitoring's documents: totals by status, country,
thematic area, GCM objective and PUNO; beneficiaries reached; which of the 23 objectives are
served and with how much money; the Fund's results as a time series."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from bson import Decimal128

from services.monitoring.domain import ZERO, delivery_rate
from shared.reference import GCM_OBJECTIVES

FUNDED = {"funded", "on-going", "suspended", "operationally-closed", "financially-closed"}


def _d(x: Any) -> Decimal:
    return x.to_decimal() if isinstance(x, Decimal128) else Decimal(x or 0)


def split_evenly(total: Decimal, n: int) -> list[Decimal]:
    """`total` in n cent-exact parts that add up to it."""
    part = (total / n).quantize(Decimal("0.01"))
    return [part] * (n - 1) + [total - part * (n - 1)]


def portfolio(docs: list[dict[str, Any]], reports: list[dict[str, Any]]) -> dict[str, Any]:
    def bucket() -> dict[str, Any]:
        return {"programmes": 0, "allocated_usd": ZERO}

    by_status: dict[str, Any] = defaultdict(bucket)
    by_country: dict[str, Any] = defaultdict(bucket)
    by_area: dict[int, Any] = defaultdict(bucket)
    by_puno: dict[str, Any] = defaultdict(lambda: {"programmes": 0, "allocated_usd": ZERO,
                                                   "transferred_usd": ZERO, "spent_usd": ZERO})
    coverage = {o: {"title": t, "programmes": 0, "allocated_usd": ZERO}
                for o, t in GCM_OBJECTIVES.items()}
    beneficiaries = 0
    for d in docs:
        status = d.get("status", "unknown")
        allocated = _d(d.get("allocated_usd"))
        by_status[status]["programmes"] += 1
        by_status[status]["allocated_usd"] += allocated
        if status not in FUNDED:
            continue
        beneficiaries += d.get("beneficiaries_total", 0)
        for c in d.get("countries") or [d.get("region") or "(none)"]:
            by_country[c]["programmes"] += 1
            by_country[c]["allocated_usd"] += allocated
        if d.get("thematic_area"):
            by_area[d["thematic_area"]]["programmes"] += 1
            by_area[d["thematic_area"]]["allocated_usd"] += allocated
        for ln in d.get("lines", []):
            p = by_puno[ln["entity"]]
            p["programmes"] += 1
            p["allocated_usd"] += _d(ln["total_usd"])
            p["transferred_usd"] += _d((d.get("transferred") or {}).get(ln["entity"]))
            p["spent_usd"] += _d((d.get("spent") or {}).get(ln["entity"]))
        objectives = sorted(set(d.get("gcm_objectives") or []))
        if objectives:  # a programme's money is shared evenly among its objectives
            for o, share in zip(objectives, split_evenly(allocated, len(objectives)),
                                strict=True):
                coverage[o]["programmes"] += 1
                coverage[o]["allocated_usd"] += share
    for p in by_puno.values():
        p["delivery_rate"] = delivery_rate(p["spent_usd"], p["transferred_usd"])
    series: dict[int, Any] = defaultdict(lambda: {"reports": 0, "beneficiaries": 0,
                                                  "expenditure_usd": ZERO})
    for r in reports:
        year = r.get("year") or r["at"].year
        s = series[year]
        s["reports"] += 1
        body = r["body"]
        s["beneficiaries"] += (body.get("beneficiaries") or {}).get("total", 0)
        s["expenditure_usd"] += sum((Decimal(x["amount_usd"]) for x in body.get(
            "expenditure", [])), ZERO)
    for d in docs:
        for t in d.get("transfers", []):
            series[t["at"].year].setdefault("transferred_usd", ZERO)
            series[t["at"].year]["transferred_usd"] += _d(t["usd"])
    return {
        "programmes": len(docs),
        "by_status": dict(by_status),
        "by_country": dict(sorted(by_country.items())),
        "by_thematic_area": dict(sorted(by_area.items())),
        "by_puno": dict(sorted(by_puno.items())),
        "beneficiaries_reached": beneficiaries,
        "gcm_objective_coverage": coverage,
        "objectives_served": sorted(o for o, c in coverage.items() if c["programmes"]),
        "objectives_not_served": sorted(o for o, c in coverage.items() if not c["programmes"]),
        "results_by_year": dict(sorted(series.items())),
        "at_risk": sorted(({"programme_id": d["_id"], "title": d.get("title"),
                            "flags": d["risk_flags"]} for d in docs if d.get("risk_flags")),
                          key=lambda x: x["programme_id"]),
    }
