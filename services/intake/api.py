"""Intake's HTTP routes: thin, they translate to and from the service layer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel

from services.intake import service
from services.intake.store import IntakeStore
from shared.auth import require
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.errors import NotFound
from shared.http import PROBLEM
from shared.settings import Principal

router = APIRouter(prefix="/v1", tags=["concept notes"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {PROBLEM: {}}}
    for s, d in [(400, "Malformed body"), (401, "No or unknown token"),
                 (403, "Not a PUNO of this note / wrong role"), (404, "No such programme"),
                 (409, "Reference already used for other content"),
                 (413, "Body too large"), (422, "Invalid fields (named in errors[])")]
}


class SubmissionAccepted(BaseModel):
    programme_id: str
    created: bool
    status_url: str


def _store(request: Request) -> IntakeStore:
    return request.app.state.store


@router.post("/concept-notes", status_code=201, response_model=SubmissionAccepted,
             responses={200: {"description": "Identical resubmission: the same programme"},
                        **PROBLEMS},
             summary="Submit a concept note (role entity; the caller must be one of its PUNOs)")
async def submit_concept_note(
    note: Annotated[SubmitConceptNote, Body(openapi_examples={
        "philippines": {"summary": "A three-PUNO note", "value": CONCEPT_NOTE_EXAMPLE}})],
    request: Request, response: Response,
    who: Annotated[Principal, Depends(require("entity"))],
) -> SubmissionAccepted:
    outcome = await service.submit(_store(request), note, who.entity or "", "http")
    url = f"/v1/programmes/{outcome.programme_id}"
    response.headers["Location"] = url
    if not outcome.created:
        response.status_code = 200
    return SubmissionAccepted(programme_id=outcome.programme_id, created=outcome.created,
                              status_url=url)


@router.get("/programmes/{programme_id}", responses=PROBLEMS, tags=["programmes"],
            summary="A programme's status, history, PUNOs and budget")
async def get_programme(
    programme_id: str, request: Request,
    who: Annotated[Principal, Depends(require("entity", "fmu", "operator", "funder"))],
) -> dict[str, Any]:
    doc = await _store(request).get(programme_id)
    # an entity sees only programmes it takes part in; others learn nothing, not even existence
    if doc is None or (who.role == "entity" and (who.entity or "").upper() not in doc["punos"]):
        raise NotFound(f"no programme {programme_id}")
    doc["programme_id"] = doc.pop("_id")
    doc.pop("fingerprint", None)
    return doc
