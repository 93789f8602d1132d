"""Monitoring's HTTP routes: reports in; the programme's calendar, delivery and risks; the
portfolio; the IATI export (open data, no token needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from services.monitoring import service
from services.monitoring.domain import delivery, reporting_calendar, unspent_balances
from services.monitoring.iati import EXPORTED, export
from services.monitoring.portfolio import portfolio
from services.monitoring.store import MonitoringStore, amounts, dates, net_funded
from shared import paging
from shared.access import may_see_programme
from shared.auth import require
from shared.contracts.monitoring import REPORT_EXAMPLE, SubmitProgressReport
from shared.envelope import utcnow
from shared.errors import InvalidInput, NotFound
from shared.http import AsOf, check_instant, exact
from shared.settings import Principal

router = APIRouter(prefix="/v1")
ANYONE = Depends(require("fmu", "operator", "funder", "entity"))


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {401: "No or unknown bearer token", 403: "Wrong role",
             404: "Unknown programme (or not yours)",
             409: "Not funded yet, or this period's report is already in",
             422: "Invalid or inconsistent figures, a period out of range, or personal data"}
    return {c: {"description": words[c]} for c in codes}  # (as problem+json: document_answers)


def _store(request: Request) -> MonitoringStore:
    return request.app.state.store


@router.post("/programmes/{programme_id}/reports", status_code=201, tags=["reports"],
             responses={200: {"description": "This report id was already accepted"},
                        **_problems(401, 403, 404, 409, 422)},
             summary="Submit a progress report (role entity, a PUNO of the programme)")
async def submit_report(
    programme_id: str, request: Request, response: Response,
    report: Annotated[SubmitProgressReport, Body(openapi_examples={
        "annual narrative": {"value": REPORT_EXAMPLE}})],
    who: Annotated[Principal, Depends(require("entity"))],
) -> dict[str, Any]:
    if report.programme_id != programme_id:
        raise InvalidInput("the body names another programme", errors=[
            {"field": "programme_id", "reason": f"must be {programme_id}"}])
    created, doc = await service.submit_report(_store(request), request.app.state.rules,
                                               report, who.entity or "",
                                               now=request.app.state.clock.now())
    if not created:
        response.status_code = 200
    return exact({"report_id": doc["_id"], "programme_id": programme_id, "kind": doc["kind"],
                  "year": doc["year"], "on_time": doc["on_time"], "created": created})


def _visible(doc: dict[str, Any], who: Principal) -> bool:
    """shared.access: entities their own, funders from approval on, the FMU and operators
    all."""
    return may_see_programme(who, doc.get("status"), doc.get("punos", []))


@router.get("/programmes/{programme_id}", tags=["programmes"], responses=_problems(401, 404),
            summary="A programme's implementation: calendar, reports in, delivery, risks")
async def get_programme(programme_id: str, request: Request,
                        who: Annotated[Principal, ANYONE],
                        as_of: AsOf = None) -> dict[str, Any]:
    """`as_of`: as monitoring held it at that instant (state from the facts it had, money
    moved and reports received by then)."""
    doc = await _store(request).programme(programme_id)
    if doc is None or not _visible(doc, who):
        raise NotFound(f"no programme {programme_id}")
    if as_of is not None:
        doc = await _store(request).programme_as_of(programme_id, check_instant(as_of))
        if doc is None:
            raise NotFound(f"no programme {programme_id} at {as_of.isoformat()}")
    start, end = dates(doc)
    received = doc.get("received", {})
    deadlines = reporting_calendar(start, end, request.app.state.rules) if start and end else []
    cal = [{"kind": d.kind, "year": d.year, "due": d.due, "received": d.key in received,
            "overdue": d.key not in received and d.due < (
                as_of or request.app.state.clock.now()).date()}
           for d in deadlines]
    return exact({
        "programme_id": programme_id, "title": doc.get("title"), "status": doc.get("status"),
        "punos": doc.get("punos", []), "start_date": start, "end_date": end,
        "calendar": cal, "reports": received, "risk_flags": doc.get("risk_flags", []),
        "transferred": amounts(doc, "transferred"), "refunded": amounts(doc, "refunded"),
        "expenditure": amounts(doc, "spent"),
        "delivery_rate": delivery(amounts(doc, "spent"), net_funded(doc)),
        "beneficiaries_reached": doc.get("beneficiaries_total", 0),
        "allocated": amounts(doc, "allocated"), "owed": amounts(doc, "owed"),
        "duration_months": doc.get("duration_months"),
        "extension_months": doc.get("extension_months", 0),
        # what each PUNO must refund before financial closure (above the threshold)
        "refunds_due": {r["entity"]: r["refund_usd"] for r in unspent_balances(
            net_funded(doc), amounts(doc, "spent"), amounts(doc, "transferred"),
            request.app.state.rules) if r["refund_usd"]}
        if "final-financial" in received else {},
        "closure": doc.get("closed", {}), "balances": doc.get("balances")})


@router.get("/programmes/{programme_id}/reports", tags=["reports"],
            responses=_problems(401, 404), summary="A programme's reports")
async def list_reports(programme_id: str, request: Request, response: Response,
                       who: Annotated[Principal, ANYONE], cursor: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = 100
                       ) -> list[dict[str, Any]]:
    """Oldest first; pages of `limit` (next page: the `Link` and `X-Next-Cursor` headers)."""
    doc = await _store(request).programme(programme_id)
    if doc is None or not _visible(doc, who):
        raise NotFound(f"no programme {programme_id}")
    reports, nxt = await _store(request).page("reports", {"programme_id": programme_id},
                                              [("at", 1)], cursor, limit)
    paging.link(request, response, nxt, limit)
    return exact([{**r["body"], "submitted_by": r["submitted_by"], "at": r["at"],
                   "on_time": r["on_time"]} for r in reports])


@router.get("/portfolio", tags=["portfolio"], responses=_problems(401),
            summary="Totals by status, country, thematic area, GCM objective and PUNO; "
                    "beneficiaries; objective coverage; results by year")
async def get_portfolio(request: Request, _: Annotated[Principal, ANYONE],
                        as_of: AsOf = None) -> dict[str, Any]:
    """`as_of`: the portfolio as it stood at that instant."""
    store = _store(request)
    if as_of is not None:
        docs, reports = await store.programmes_as_of(check_instant(as_of))
        return exact(portfolio(docs, reports))
    return exact(await store.portfolio())


@router.get("/export/iati", tags=["open data"], response_class=Response,
            responses={200: {"content": {"application/xml": {}},
                             "description": "IATI 2.03 activities"}},
            summary="The portfolio as an IATI activities XML document (public)")
async def iati(request: Request, cursor: str | None = None,
               limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = 100) -> Response:
    """A page of `limit` programmes (by id), a whole `iati-activities` document valid on its
    own; the first page also carries the Fund's own activity with its contributions. The
    next page: the `Link` and `X-Next-Cursor` headers."""
    store = _store(request)
    docs, nxt = await store.page("programmes", {"status": {"$in": sorted(EXPORTED)},
                                                "approved_usd": {"$ne": None}},
                                 [("_id", 1)], cursor, limit)
    reports = await store.reports({"programme_id": {"$in": [d["_id"] for d in docs]}})
    body = export(docs, reports, request.app.state.publisher, utcnow(),
                  None if cursor else await store.contributions())
    response = Response(body, media_type="application/xml")
    paging.link(request, response, nxt, limit)
    return response
