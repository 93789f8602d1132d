"""Contracts owned by intake: the inbound concept note and the programme facts on
mptf.programmes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import topics
from shared.contracts.base import Command, Fact, Money, register

Text = Annotated[str, Field(min_length=1, max_length=300)]
LongText = Annotated[str, Field(min_length=1, max_length=5000)]
EntityCode = Annotated[str, Field(min_length=2, max_length=20, pattern=r"^[A-Za-z][A-Za-z0-9-]*$")]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Puno(_Part):
    """A participating UN organisation and its requested budget (USD, before the 7% support
    cost)."""

    entity: EntityCode
    convening: bool = False
    budget_usd: Money


class Markers(_Part):
    """Self-assessed markers on the UN system's 0-3 scale."""

    gender: int = Field(ge=0, le=9)
    human_rights: int = Field(ge=0, le=9)
    child_sensitivity: int = Field(ge=0, le=9)


class GovernmentEndorsement(_Part):
    authority: Text
    letter_reference: Text
    date: date


class RcEndorsement(_Part):
    office: Text
    date: date


class Partners(_Part):
    government: list[Text] = Field(default_factory=list, max_length=50)
    stakeholders: list[Text] = Field(default_factory=list, max_length=50)


CONCEPT_NOTE_EXAMPLE = {
    "entity_reference": "IOM-PHL-2026-014",
    "title": "Migration data governance in the Philippines",
    "countries": ["PH"],
    "region": None,
    "punos": [
        {"entity": "IOM", "convening": True, "budget_usd": "1200000.00"},
        {"entity": "ILO", "convening": False, "budget_usd": "600000.00"},
        {"entity": "UN-Women", "convening": False, "budget_usd": "400000.00"},
    ],
    "gcm_objectives": [1, 17, 23],
    "primary_thematic_area": 1,
    "duration_months": 30,
    "summary": "Builds a national migration data strategy with the statistics authority.",
    "expected_results": ["National data-governance strategy adopted",
                         "300 officials trained on migration data"],
    "markers": {"gender": 2, "human_rights": 2, "child_sensitivity": 2},
    "government_endorsement": {"authority": "Department of Migrant Workers",
                               "letter_reference": "DMW-2026-0311", "date": "2026-03-11"},
    "rc_endorsement": {"office": "RCO Philippines", "date": "2026-03-20"},
    "partners": {"government": ["Philippine Statistics Authority", "DMW"],
                 "stakeholders": ["Migrant workers' associations"]},
}


@register(topic=topics.INBOUND_CONCEPT_NOTES, owner="intake", key="entity_reference",
          example=CONCEPT_NOTE_EXAMPLE, inbound=True)
class SubmitConceptNote(Command):
    """A concept note for a joint programme, submitted by one of its PUNOs.

    Published by entity systems on mptf.inbound.concept-notes (the envelope's source names the
    entity, as `urn:mptf:entity:<CODE>` or the bare code) or POSTed to intake's
    /v1/concept-notes. The same body either way. Budgets are USD strings."""

    PRIVACY_BY_SERVICE = True  # refused with every other failed rule at once
    TYPE = "org.migrationmptf.concept-note.submit.v1"

    entity_reference: Annotated[str, Field(min_length=1, max_length=100)]
    title: Text
    countries: list[Annotated[str, Field(min_length=2, max_length=3)]] = Field(
        default_factory=list, max_length=30)
    region: Text | None = None
    punos: list[Puno] = Field(max_length=20)
    gcm_objectives: list[int] = Field(max_length=23)
    primary_thematic_area: int
    duration_months: int
    summary: LongText
    expected_results: list[LongText] = Field(default_factory=list, max_length=30)
    markers: Markers
    government_endorsement: GovernmentEndorsement | None = None
    rc_endorsement: RcEndorsement | None = None
    partners: Partners = Field(default_factory=Partners)


@register(topic=topics.PROGRAMMES, owner="intake", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "submitted_by": "IOM",
    "entity_reference": "IOM-PHL-2026-014", "channel": "http",
    "submitted_at": "2026-11-23T10:00:00Z", "note": CONCEPT_NOTE_EXAMPLE})
class ProgrammeSubmitted(Fact):
    """A concept note was received and given a programme id; screening follows."""

    TYPE = "org.migrationmptf.programme.submitted.v1"

    programme_id: str
    submitted_by: str
    entity_reference: str
    channel: Literal["http", "kafka"]
    submitted_at: datetime
    note: SubmitConceptNote


class Reason(BaseModel):
    """One failed screening rule: a stable code, the field it concerns, and words."""

    model_config = ConfigDict(frozen=True)
    code: str
    field: str = ""
    message: str


class BudgetLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    entity: str
    convening: bool = False
    budget_usd: Money


class ProgrammeSummary(BaseModel):
    """What other services need to know of a screened programme."""

    model_config = ConfigDict(frozen=True)
    title: str
    submitted_by: str
    countries: list[str]
    region: str | None = None
    punos: list[BudgetLine]
    total_budget_usd: Money
    gcm_objectives: list[int]
    primary_thematic_area: int
    duration_months: int


_SUMMARY_EXAMPLE = {
    "title": "Migration data governance in the Philippines", "submitted_by": "IOM",
    "countries": ["PH"], "region": None,
    "punos": [{"entity": "IOM", "convening": True, "budget_usd": "1200000.00"},
              {"entity": "ILO", "convening": False, "budget_usd": "600000.00"},
              {"entity": "UN-WOMEN", "convening": False, "budget_usd": "400000.00"}],
    "total_budget_usd": "2200000.00", "gcm_objectives": [1, 17, 23],
    "primary_thematic_area": 1, "duration_months": 30}


@register(topic=topics.PROGRAMMES, owner="intake", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "eligible": False,
    "reasons": [{"code": "budget.over-ceiling", "field": "punos",
                 "message": "total USD 3,200,000.00 exceeds the ceiling of USD 3,000,000.00"}],
    "screened_at": "2026-11-23T10:00:00Z", "programme": _SUMMARY_EXAMPLE})
class ProgrammeScreened(Fact):
    """A concept note was screened for eligibility: eligible, or not with every reason.

    Eligible programmes wait in the pipeline for the Steering Committee."""

    TYPE = "org.migrationmptf.programme.screened.v1"

    programme_id: str
    eligible: bool
    reasons: list[Reason] = Field(default_factory=list)
    screened_at: datetime
    programme: ProgrammeSummary


@register(topic=topics.PROGRAMMES, owner="intake", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "withdrawn_by": "IOM",
    "reason": "Merged into a regional programme", "previous_status": "screened-eligible",
    "withdrawn_at": "2026-11-23T10:00:00Z"})
class ProgrammeWithdrawn(Fact):
    """A PUNO of the programme withdrew it. After its allocation funding releases what was
    not transferred (AllocationReleased) and what was transferred is owed back."""

    TYPE = "org.migrationmptf.programme.withdrawn.v1"

    programme_id: str
    withdrawn_by: str
    reason: str
    previous_status: str
    withdrawn_at: datetime
