"""Intake's rules as plain code (no I/O): programme identity, idempotent submission, who may
submit. Screening rules live here too."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import lifecycle, topics
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


# --- the programme lifecycle: defined once, in shared.lifecycle ------------------------------
Status = lifecycle.S
ALL_STATUSES = lifecycle.ALL_STATES
GATEWAY_STATUS = lifecycle.GATEWAY_STATUS
