"""Funding's HTTP routes: thin; the FMU (Fund Management Unit / SC secretariat) writes,
funders read their own contributions and the allocations their money funded."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.funding import service
from services.funding.commands import (
    BudgetRevision,
    Decision,
    Deposit,
    Extension,
    Meeting,
    Pledge,
    Refund,
    ScDecision,
)
from services.funding.domain import fund_view
from services.funding.store import FundingStore
from services.funding.store import py as _py
from shared import paging
from shared.access import contributor_lines
from shared.auth import require
from shared.errors import Forbidden, NotFound
from shared.http import AsOf, check_instant, exact
from shared.settings import Principal

router = APIRouter(prefix="/v1")
Limit = Annotated[int, Query(ge=1, le=paging.MAX_LIMIT, description="Page size")]
FMU = Depends(require("fmu"))
ANYONE = Depends(require("fmu", "operator", "funder", "entity"))


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "Malformed body or query", 401: "No or unknown bearer token",
             403: "Wrong role", 404: "Unknown programme or contribution",
             409: "Conflicts with the current state (already decided, not eligible, "
                  "exceeds the pledge or the amount held)",
             422: "Invalid fields (each named in errors[])"}
    return {c: {"description": words[c]} for c in codes}  # (as problem+json: document_answers)


def _store(request: Request) -> FundingStore:
    return request.app.state.store


def _rules(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.rules


@router.post("/contributions", status_code=201, tags=["contributions"],
             responses={200: {"description": "Identical repeat"}, **_problems(401, 403, 409, 422)},
             summary="Record a pledge (role fmu)")
async def pledge(cmd: Pledge, request: Request, response: Response,
                 _: Annotated[Principal, FMU]) -> dict[str, Any]:
    if not await service.pledge(_store(request), cmd):
        response.status_code = 200
    return {"contribution_id": cmd.contribution_id, "status": "pledged"}


@router.post("/contributions/{contribution_id}/deposits", status_code=201,
             tags=["contributions"],
             responses={200: {"description": "This deposit id was already booked"},
                        **_problems(401, 403, 404, 409, 422)},
             summary="Record a deposit against a pledge (role fmu); funds the pipeline")
async def deposit(contribution_id: str, cmd: Deposit, request: Request, response: Response,
                  _: Annotated[Principal, FMU]) -> dict[str, Any]:
    fact, funded = await service.deposit(_store(request), _rules(request), contribution_id, cmd)
    if fact is None:
        response.status_code = 200
        return {"contribution_id": contribution_id, "deposit_id": cmd.deposit_id,
                "status": "already-booked"}
    return exact({"contribution_id": contribution_id, "deposit_id": cmd.deposit_id,
                  "fee_usd": fact.fee_usd, "net_usd": fact.net_usd,
                  "programmes_funded": funded})


@router.get("/contributions", tags=["contributions"], responses=_problems(401, 403),
            summary="Contributions (fmu, operator: all; funder: its own)")
async def contributions(request: Request, response: Response,
                        who: Annotated[Principal, Depends(require("fmu", "operator", "funder"))],
                        cursor: str | None = None, limit: Limit = paging.DEFAULT_LIMIT
                        ) -> list[dict[str, Any]]:
    """Oldest pledge first; pages of `limit` (next page: the `Link` and `X-Next-Cursor`
    headers)."""
    if who.role == "entity":
        raise Forbidden("entities do not read contributions")
    own = who.contributor if who.role == "funder" else None
    items, nxt = await _store(request).contributions(own, cursor, limit)
    paging.link(request, response, nxt, limit)
    return exact(items)


@router.post("/decisions", status_code=201, tags=["steering committee"],
             responses=_problems(401, 403, 404, 409, 422),
             summary="Record a Steering Committee decision (role fmu): approve, reject, defer")
async def decide(cmd: Decision, request: Request, _: Annotated[Principal, FMU]
                 ) -> dict[str, Any]:
    """An approval enters the funding pipeline at its priority and is allocated at once if
    the Fund's deposited balance covers it and nothing ranks above it."""
    status, funded = await service.decide(_store(request), _rules(request), cmd)
    return {"programme_id": cmd.programme_id, "status": status,
            "allocated": cmd.programme_id in funded, "programmes_funded": funded}


@router.post("/meetings", status_code=201, tags=["steering committee"],
             responses=_problems(401, 403, 409, 422),
             summary="Record a Steering Committee meeting's decisions together (role fmu)")
async def meet(cmd: Meeting, request: Request, _: Annotated[Principal, FMU]
               ) -> dict[str, Any]:
    """Each decision is checked as `POST /v1/decisions` would check it; one that the rules
    refuse changes nothing and comes back with `status: refused` and its problem, and the
    others stand. The pipeline is funded once, after all of them."""
    results, funded = await service.meet(_store(request), _rules(request), cmd)
    for r in results:
        r["allocated"] = r["programme_id"] in funded
    return {"meeting_id": cmd.meeting_id, "results": results, "programmes_funded": funded}


@router.get("/pipeline", tags=["steering committee"], responses=_problems(401),
            summary="Approved programmes waiting for money, in rank order")
async def pipeline(request: Request, response: Response, _: Annotated[Principal, ANYONE],
                   cursor: str | None = None, limit: Limit = paging.DEFAULT_LIMIT,
                   as_of: AsOf = None) -> list[dict[str, Any]]:
    """In rank order (priority, then approval time); pages of `limit` (next page: the
    `Link` and `X-Next-Cursor` headers), each item with its rank in the whole pipeline.
    `as_of`: the pipeline as it stood at that instant (from the facts funding had then)."""
    if as_of is not None:
        waiting = await _store(request).pipeline_as_of(check_instant(as_of))
        keys = [[d["priority"], d["approved_at"], d["_id"]] for d in waiting]
        start = keys.index(paging.decode(cursor, 3)) + 1 if cursor and paging.decode(
            cursor, 3) in keys else 0
        docs = waiting[start:start + limit]
        nxt = paging.encode(keys[start + limit - 1]) if start + limit < len(waiting) else None
        first = start
    else:
        docs, nxt, first = await _store(request).pipeline(cursor, limit)
    paging.link(request, response, nxt, limit)
    return exact([{"rank": first + i + 1, "programme_id": d["_id"], "title": d["title"],
                   "priority": d["priority"], "approved_at": d["approved_at"],
                   "total_usd": d["total_usd"]} for i, d in enumerate(docs)])


def _can_see(doc: dict[str, Any], who: Principal) -> bool:
    if who.role in ("fmu", "operator"):
        return True
    if who.role == "entity":
        return (who.entity or "").upper() in doc.get("punos", [])
    return any(s["contributor"] == who.contributor for s in doc.get("funded_by", []))


def _allocation(d: dict[str, Any]) -> dict[str, Any]:
    return {"programme_id": d["_id"], "title": d["title"], "status": d["status"],
            "pipeline": d.get("pipeline"), "priority": d.get("priority"),
            "lines": d.get("lines", []), "total_usd": d.get("total_usd"),
            "funded_by": d.get("funded_by", []), "allocated_at": d.get("allocated_at"),
            "tranches_released": d.get("tranches_released", 0),
            "transferred": d.get("transferred", {}), "refunded": d.get("refunded", {}),
            "allocated": d.get("allocated", {}), "owed": d.get("owed", {}),
            "topup_waiting": bool(d.get("topup_waiting")),
            "duration_months": d.get("duration_months"),
            "extension_months": d.get("extension_months", 0)}


@router.get("/allocations", tags=["allocations"], responses=_problems(401),
            summary="Allocations (funder: those its money helped fund; entity: its own)")
async def allocations(request: Request, response: Response,
                      who: Annotated[Principal, ANYONE], cursor: str | None = None,
                      limit: Limit = paging.DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """In allocation order; pages of `limit` (next page: the `Link` and `X-Next-Cursor`
    headers)."""
    q: dict[str, Any] = {"pipeline": {"$in": ["allocated", "released"]}}
    if who.role == "funder":
        q["funded_by.contributor"] = who.contributor
    elif who.role == "entity":
        q["punos"] = (who.entity or "").upper()
    docs, nxt = await _store(request).page("programmes", q, [("allocated_at", 1)], cursor,
                                           limit)
    paging.link(request, response, nxt, limit)
    return exact([_allocation(_py(d)) for d in docs])


@router.get("/programmes/{programme_id}/funding", tags=["allocations"],
            responses=_problems(401, 404),
            summary="A programme's decision, allocation, transfers and refunds")
async def programme_funding(programme_id: str, request: Request,
                            who: Annotated[Principal, ANYONE],
                            as_of: AsOf = None) -> dict[str, Any]:
    """`as_of`: as funding held it at that instant (state from the facts it had folded,
    money from the journal entries booked by then)."""
    doc = await _store(request).programme(programme_id)
    if doc is None or not _can_see(doc, who):
        raise NotFound(f"no programme {programme_id}")
    if as_of is not None:
        doc = await _store(request).programme_as_of(programme_id, check_instant(as_of))
        if doc is None:
            raise NotFound(f"no programme {programme_id} at {as_of.isoformat()}")
    return exact({**_allocation(doc), "history": doc.get("history", []),
                  "requested": doc.get("requested"),
                  "approved_budget": doc.get("approved_budget")})


@router.post("/programmes/{programme_id}/tranches", status_code=201, tags=["allocations"],
             responses=_problems(401, 403, 404, 409),
             summary="Transfer the next tranche of an allocation (role fmu)")
async def next_tranche(programme_id: str, request: Request, _: Annotated[Principal, FMU]
                       ) -> dict[str, Any]:
    n = await service.release_tranche(_store(request), _rules(request), programme_id)
    return {"programme_id": programme_id, "tranche": n}


@router.post("/programmes/{programme_id}/refunds", status_code=201, tags=["allocations"],
             responses={200: {"description": "This refund id was already booked"},
                        **_problems(401, 403, 404, 409, 422)},
             summary="Book a PUNO's refund of unspent money (role fmu)")
async def refund(programme_id: str, cmd: Refund, request: Request, response: Response,
                 _: Annotated[Principal, FMU]) -> dict[str, Any]:
    booked, funded = await service.refund(_store(request), _rules(request), programme_id, cmd)
    if not booked:
        response.status_code = 200
    return {"programme_id": programme_id, "refund_id": cmd.refund_id,
            "status": "booked" if booked else "already-booked", "programmes_funded": funded}


@router.get("/fund", tags=["fund"], responses=_problems(400, 401),
            summary="The Fund's status from its journal; as_of answers for a past moment")
async def fund(request: Request, who: Annotated[Principal, ANYONE],
               as_of: AsOf = None) -> dict[str, Any]:
    if as_of is not None:
        check_instant(as_of)
    store = _store(request)
    view = fund_view(await store.journal(as_of), await store.pledges(as_of), _rules(request))
    # another donor's money is not a funder's (or an entity's) to see
    view["by_contributor"] = contributor_lines(view.get("by_contributor", {}), who)
    return exact({"as_of": as_of, **view})


_CHANGES = {
    "suspension": ("suspend", ScDecision, "Suspend a programme (role fmu): no transfer, no "
                   "overdue flag until it resumes"),
    "resumption": ("resume", ScDecision, "Resume a suspended programme (role fmu)"),
    "cancellation": ("cancel", ScDecision, "Cancel an approved programme (role fmu): what is "
                     "not transferred returns to the Fund, what was is owed back"),
    "extensions": ("extend", Extension, "Record a no-cost extension (role fmu), within "
                   "the Fund's limit"),
    "budget-revisions": ("revise-budget", BudgetRevision, "Revise an approved budget "
                         "(role fmu): a top-up is allocated from deposited money at the "
                         "programme's rank; moves between PUNOs release what is not "
                         "transferred"),
}


def _change_route(path: str, command: str, model: type, summary: str) -> None:
    async def route(programme_id: str, cmd: Any, request: Request, response: Response,
                    _: Annotated[Principal, FMU]) -> dict[str, Any]:
        out, funded = await service.change(_store(request), _rules(request), programme_id,
                                           command, cmd)
        if out.get("recorded") is False:
            response.status_code = 200
        return exact({**out, "programmes_funded": funded})

    route.__annotations__["cmd"] = model
    route.__name__ = f"record_{command.replace('-', '_')}"
    router.post(f"/programmes/{{programme_id}}/{path}", status_code=201,
                tags=["steering committee"],
                responses={200: {"description": "This decision was already recorded"},
                           **_problems(401, 403, 404, 409, 422)},
                summary=summary)(route)


for _path, (_command, _model, _summary) in _CHANGES.items():
    _change_route(_path, _command, _model, _summary)
