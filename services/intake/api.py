"""Intake's HTTP routes: thin, they translate to and from the service layer."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.intake import service
from services.intake.domain import ALL_STATUSES, GATEWAY_STATUS, Status
from services.intake.store import IntakeStore
from shared import lifecycle, paging
from shared.access import FUNDER_VISIBLE, may_see_programme
from shared.auth import require
from shared.contracts.base import SafeInput
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, Reason, SubmitConceptNote
from shared.errors import NotFound
from shared.http import AsOf, check_instant, exact
from shared.settings import Principal

router = APIRouter(prefix="/v1")
StatusName = StrEnum("StatusName", {s: s for s in sorted(ALL_STATUSES)})  # type: ignore[misc]


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "Malformed body or cursor", 401: "No or unknown bearer token",
             403: "Wrong role, or not a PUNO of this note", 404: "No such programme (or not "
             "yours to see)", 409: "Conflicts with the programme's state", 413: "Body too large",
             422: "Invalid fields, or personal data (each named in errors[])"}
    return {c: {"description": words[c]} for c in codes}  # (as problem+json: document_answers)


class SubmissionAccepted(BaseModel):
    programme_id: str
    created: bool = Field(description="false: an identical earlier submission")
    status: str
    eligible: bool | None = None
    reasons: list[Reason] = Field(default_factory=list)
    status_url: str


class Withdrawal(SafeInput):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"reason": "Merged into the regional programme for the Guinea-Liberia border"}]})

    reason: str = Field(min_length=1, max_length=1000)


def _store(request: Request) -> IntakeStore:
    return request.app.state.store


def _visible(doc: dict[str, Any], who: Principal) -> bool:
    """shared.access: entities their own, funders from approval on, the FMU and operators
    all."""
    return may_see_programme(who, doc["status"], doc["punos"])


def _out(doc: dict[str, Any]) -> dict[str, Any]:
    # the lifecycle record is how the status is kept (shared.lifecycle), not part of it
    doc = {k: v for k, v in doc.items() if k not in ("fingerprint", "lifecycle", "timeline")}
    doc["programme_id"] = doc.pop("_id")
    doc["gateway_status"] = GATEWAY_STATUS.get(doc["status"])
    return exact(doc)


def as_of_view(doc: dict[str, Any], instant: datetime) -> dict[str, Any] | None:
    """The programme as it stood at `instant`, from the facts it had then (its timeline;
    for a programme kept before timelines, its history); None before it was submitted."""
    if doc["submitted_at"] > instant:
        return None
    history = [h for h in doc.get("history", []) if h["at"] <= instant]
    if doc.get("timeline"):
        status = lifecycle.status_as_of(doc["timeline"], instant)
    else:
        status = history[-1]["status"] if history else doc["status"]
    return {**doc, "status": status, "history": history}


@router.post("/concept-notes", status_code=201, response_model=SubmissionAccepted,
             tags=["concept notes"],
             responses={200: {"description": "Identical resubmission: the same programme"},
                        **_problems(400, 401, 403, 409, 413, 422)},
             summary="Submit a concept note (role entity; the caller must be one of its PUNOs)")
async def submit_concept_note(
    note: Annotated[SubmitConceptNote, Body(openapi_examples={
        "philippines": {"summary": "A three-PUNO note", "value": CONCEPT_NOTE_EXAMPLE}})],
    request: Request, response: Response,
    who: Annotated[Principal, Depends(require("entity"))],
) -> SubmissionAccepted:
    """The note is screened at once: the answer says whether it is eligible and, if not,
    gives every failed rule with its code. Personal data of individuals is refused (422)."""
    out = await service.submit(_store(request), request.app.state.rules, note,
                               who.entity or "", "http")
    url = f"/v1/programmes/{out.programme_id}"
    response.headers["Location"] = url
    if not out.created:
        response.status_code = 200
    return SubmissionAccepted(
        programme_id=out.programme_id, created=out.created, status=out.status,
        eligible=(not out.reasons) if out.created else None, reasons=list(out.reasons),
        status_url=url)


@router.get("/programmes/{programme_id}", tags=["programmes"], responses=_problems(401, 404),
            summary="A programme: status, history, PUNOs, budget, screening reasons")
async def get_programme(
    programme_id: str, request: Request,
    who: Annotated[Principal, Depends(require("entity", "fmu", "operator", "funder"))],
    as_of: AsOf = None,
) -> dict[str, Any]:
    doc = await _store(request).get(programme_id)
    # what a caller may not see is answered exactly like what does not exist
    if doc is None or not _visible(doc, who):
        raise NotFound(f"no programme {programme_id}")
    if as_of is not None:
        past = as_of_view(doc, check_instant(as_of))
        if past is None:
            raise NotFound(f"no programme {programme_id} at {as_of.isoformat()}")
        return _out(past)
    return _out(doc)


@router.get("/programmes", tags=["programmes"], responses=_problems(400, 401),
            summary="Programmes, newest first, with filters and cursor pagination")
async def list_programmes(
    request: Request, response: Response,
    who: Annotated[Principal, Depends(require("entity", "fmu", "operator", "funder"))],
    status: StatusName | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    thematic_area: Annotated[int | None, Query(ge=1, le=5)] = None,
    objective: Annotated[int | None, Query(ge=1, le=23)] = None,
    puno: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Newest first; pages of `limit`: the next page's cursor is `next_cursor` in the body,
    and the `Link` and `X-Next-Cursor` headers name it too, as on every list route."""
    q: dict[str, Any] = {}
    status = status.value if status else None
    if status:
        q["status"] = status
    if country:
        q["countries"] = country.upper()
    if thematic_area:
        q["primary_thematic_area"] = thematic_area
    if objective:
        q["gcm_objectives"] = objective
    punos = [puno.upper()] if puno else []
    if who.role == "entity":
        punos.append((who.entity or "").upper())
    if punos:
        q["punos"] = {"$all": punos}
    if who.role == "funder":
        q["status"] = {"$in": [s for s in sorted(FUNDER_VISIBLE) if status in (None, s)]}
    docs, nxt = await _store(request).search(q, cursor, limit)
    paging.link(request, response, nxt, limit)  # the headers every list route gives
    return {"items": [_out(d) for d in docs], "next_cursor": nxt}


@router.post("/programmes/{programme_id}/withdraw", tags=["programmes"],
             responses=_problems(401, 403, 404, 409, 422),
             summary="Withdraw a programme (role entity, a PUNO of it) until it closes; "
                     "after its allocation, funding releases what is not transferred and "
                     "what was transferred is owed back")
async def withdraw_programme(
    programme_id: str, body: Withdrawal, request: Request,
    who: Annotated[Principal, Depends(require("entity"))],
) -> dict[str, Any]:
    previous = await service.withdraw(_store(request), programme_id, who.entity or "",
                                      body.reason)
    return {"programme_id": programme_id, "status": Status.WITHDRAWN,
            "previous_status": previous}
