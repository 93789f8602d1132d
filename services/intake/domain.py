"""Intake's rules as plain code (no I/O): programme identity, idempotent submission, who may
submit. Screening rules live here too."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import topics
from shared.contracts.intake import SubmitConceptNote
from shared.errors import Conflict, Forbidden

_NS = uuid.UUID("6f1d7a52-5b8e-4c59-9a55-3b0b0c6b9f10")
ENTITY_URN = topics.ENTITY_URN


def programme_id(submitted_by: str, entity_reference: str) -> str:
    """Deterministic: the same entity's same reference always names the same programme, so a
    resubmission (or a race of two) cannot create a second one."""
    return "jp-" + uuid.uuid5(_NS, f"{submitted_by.upper()}\n{entity_reference}").hex[:16]


def fingerprint(note: SubmitConceptNote) -> str:
    """Content hash of a note, insensitive to key order and number formatting."""
    return hashlib.sha256(note.model_dump_json().encode()).hexdigest()


def entity_from_source(source: str) -> str:
    """The submitting entity named by an inbound envelope's source."""
    code = source.removeprefix(ENTITY_URN).strip()
    return code.upper()


def check_submitter(note: SubmitConceptNote, entity: str) -> None:
    """The caller's entity must be one of the note's PUNOs."""
    if entity.upper() not in {p.entity.upper() for p in note.punos}:
        raise Forbidden(f"entity {entity} is not a participating organisation of this note")


@dataclass(frozen=True)
class Submission:
    programme_id: str
    submitted_by: str
    fingerprint: str
    note: SubmitConceptNote
    channel: str
    at: datetime


@dataclass(frozen=True)
class SubmissionOutcome:
    programme_id: str
    created: bool  # False: an identical earlier submission; nothing new happened
    status: str = ""
    reasons: tuple[Any, ...] = ()


def resolve_duplicate(existing_fingerprint: str, new: Submission) -> SubmissionOutcome:
    """Same reference, same content: the same programme comes back. Same reference, other
    content: refused (a changed note needs a new reference, or a withdrawal first)."""
    if existing_fingerprint != new.fingerprint:
        raise Conflict(
            f"reference {new.note.entity_reference!r} of {new.submitted_by} was already used "
            "for a different concept note", programme_id=new.programme_id)
    return SubmissionOutcome(new.programme_id, created=False)


# --- the programme lifecycle ----------------------------------------------------------------

class Status:
    SUBMITTED = "submitted"
    ELIGIBLE = "screened-eligible"
    INELIGIBLE = "screened-ineligible"
    WITHDRAWN = "withdrawn"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    FUNDED = "funded"
    ON_GOING = "on-going"
    OPERATIONALLY_CLOSED = "operationally-closed"
    FINANCIALLY_CLOSED = "financially-closed"


S = Status
TRANSITIONS: dict[str, frozenset[str]] = {
    S.SUBMITTED: frozenset({S.ELIGIBLE, S.INELIGIBLE, S.WITHDRAWN}),
    S.ELIGIBLE: frozenset({S.APPROVED, S.REJECTED, S.DEFERRED, S.WITHDRAWN}),
    S.INELIGIBLE: frozenset({S.WITHDRAWN}),
    S.DEFERRED: frozenset({S.APPROVED, S.REJECTED, S.DEFERRED, S.WITHDRAWN}),
    S.APPROVED: frozenset({S.FUNDED, S.WITHDRAWN}),
    S.FUNDED: frozenset({S.ON_GOING}),
    S.ON_GOING: frozenset({S.OPERATIONALLY_CLOSED}),
    S.OPERATIONALLY_CLOSED: frozenset({S.FINANCIALLY_CLOSED}),
    S.REJECTED: frozenset(),
    S.WITHDRAWN: frozenset(),
    S.FINANCIALLY_CLOSED: frozenset(),
}
ALL_STATUSES = frozenset(TRANSITIONS)
WITHDRAWABLE = frozenset(s for s, nxt in TRANSITIONS.items() if S.WITHDRAWN in nxt)

# The Administrative Agent's Gateway shows four statuses; ours map onto them.
GATEWAY_STATUS = {
    S.SUBMITTED: "Pipeline", S.ELIGIBLE: "Pipeline", S.DEFERRED: "Pipeline",
    S.APPROVED: "Pipeline", S.FUNDED: "On Going", S.ON_GOING: "On Going",
    S.OPERATIONALLY_CLOSED: "Operationally Closed",
    S.FINANCIALLY_CLOSED: "Financially Closed",
}


def transition(current: str, target: str) -> str:
    """The new status, or IllegalTransition naming both ends and what is allowed."""
    from shared.errors import IllegalTransition

    allowed = TRANSITIONS.get(current)
    if allowed is None:
        raise IllegalTransition(f"unknown status {current!r}")
    if target not in allowed:
        raise IllegalTransition(
            f"a programme that is {current} cannot become {target}",
            current=current, target=target, allowed=sorted(allowed))
    return target


def _fact_targets() -> dict[str, str]:
    from shared.contracts.funding import (
        AllocationMade,
        FundsTransferred,
        ProgrammeApproved,
        ProgrammeDeferred,
        ProgrammeRejected,
    )
    from shared.contracts.monitoring import (
        ProgrammeFinanciallyClosed,
        ProgrammeOperationallyClosed,
    )

    return {
        ProgrammeOperationallyClosed.TYPE: S.OPERATIONALLY_CLOSED,
        ProgrammeFinanciallyClosed.TYPE: S.FINANCIALLY_CLOSED,
        ProgrammeApproved.TYPE: S.APPROVED,
        ProgrammeRejected.TYPE: S.REJECTED,
        ProgrammeDeferred.TYPE: S.DEFERRED,
        AllocationMade.TYPE: S.FUNDED,
        FundsTransferred.TYPE: S.ON_GOING,
    }


FACT_TARGETS = _fact_targets()


def target_for(fact_type: str, current: str | None) -> str | None:
    """The status another service's fact moves a programme to; None when it changes nothing
    (the second tranche of a programme already on-going). Unknown programme: NotFound."""
    from shared.errors import NotFound

    if current is None:
        raise NotFound("intake knows no such programme")
    target = FACT_TARGETS[fact_type]
    if target == S.ON_GOING and current in (S.ON_GOING, S.OPERATIONALLY_CLOSED,
                                             S.FINANCIALLY_CLOSED):
        return None
    return target
