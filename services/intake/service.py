"""Intake's use cases, called by both entrypoints (HTTP routes and Kafka handlers) so a
concept note is treated the same however it arrives."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.intake.domain import (
    Submission,
    SubmissionOutcome,
    check_submitter,
    entity_from_source,
    fingerprint,
    programme_id,
)
from services.intake.screening import ScreeningRules, screen
from services.intake.store import IntakeStore
from shared import lifecycle, topics
from shared.consumer import Incoming, Rejection, apply_each, programmes_of
from shared.contracts.intake import (
    ProgrammeScreened,
    ProgrammeSubmitted,
    ProgrammeWithdrawn,
    Reason,
    SubmitConceptNote,
)
from shared.envelope import utcnow
from shared.errors import PersonalData
from shared.metrics import BUSINESS
from shared.privacy import PERSONAL_DATA, redact
from shared.rebuild import Plan, runs
from shared.store import UnitOfWork, is_duplicate
from shared.telemetry import tag_programme

INBOUND_CONSUMER = "intake.concept-notes"
FACTS_CONSUMER = "intake.lifecycle-facts"


def make_submission(note: SubmitConceptNote, entity: str, channel: str) -> Submission:
    check_submitter(note, entity)
    entity = entity.upper()
    return Submission(programme_id(entity, note.entity_reference), entity, fingerprint(note),
                      note, channel, utcnow())


def screen_at_the_door(note: SubmitConceptNote, rules: ScreeningRules, today: date
                       ) -> list[Reason]:
    """The note screened: every failed rule, what record_submission stores (one screening
    per note: the personal-data search was done twice, here and in the store). Personal data
    of individuals is refused here and never stored; the answer still lists every other
    failed rule, so the sender can fix everything at once."""
    reasons = screen(note, rules, today)
    hits = [r for r in reasons if r.code == PERSONAL_DATA]
    if not hits:
        return reasons
    others = [r for r in reasons if r.code != PERSONAL_DATA]
    raise PersonalData(
        f"{len(hits)} field(s) carry personal data of individuals; nothing was stored",
        errors=[{"field": r.field, "code": r.code, "reason": r.message} for r in hits + others],
        redacted=json.dumps(redact(note.model_dump(mode="json"), hits)).encode())


async def submit(store: IntakeStore, rules: ScreeningRules, note: SubmitConceptNote,
                 entity: str, channel: str = "http") -> SubmissionOutcome:
    sub = make_submission(note, entity, channel)
    tag_programme(sub.programme_id)
    reasons = screen_at_the_door(note, rules, sub.at.date())
    for attempt in range(2):
        try:
            outcome, _ = await store.transaction(
                lambda uow: store.record_submission(uow, sub, reasons))
            break
        except (DuplicateKeyError, BulkWriteError) as e:
            # a concurrent identical submission committed first: the retry sees it
            if not is_duplicate(e) or attempt:
                raise
    if outcome.created:
        BUSINESS.labels("notes_received").inc()
        BUSINESS.labels("notes_eligible" if not outcome.reasons else "notes_ineligible").inc()
    else:
        doc = await store.get(outcome.programme_id)
        outcome = replace(outcome, status=doc["status"] if doc else "")
    return outcome


async def withdraw(store: IntakeStore, programme_id: str, entity: str, reason: str) -> str:
    tag_programme(programme_id)
    at = utcnow()
    previous, _ = await store.transaction(
        lambda uow: store.withdraw(uow, programme_id, entity.upper(), reason, at))
    return previous


async def handle_inbound(store: IntakeStore, rules: ScreeningRules, batch: list[Incoming]
                         ) -> list[Rejection]:
    """Concept notes from entity systems: one transaction per batch."""

    async def preload(uow: UnitOfWork, events: list[Incoming]) -> None:
        await uow.docs("programmes").load(
            programme_id(entity_from_source(i.envelope.source).upper(),
                         i.event.entity_reference) for i in events)

    async def apply(uow: UnitOfWork, inc: Incoming) -> None:
        note = inc.event
        assert isinstance(note, SubmitConceptNote)
        sub = make_submission(note, entity_from_source(inc.envelope.source), "kafka")
        reasons = screen_at_the_door(note, rules, sub.at.date())
        out = await store.record_submission(uow, sub, reasons, traceparent=inc.traceparent)
        if out.created:
            BUSINESS.labels("notes_received").inc()

    return await apply_each(store, INBOUND_CONSUMER, batch, apply, preload)


async def handle_facts(store: IntakeStore, batch: list[Incoming]) -> list[Rejection]:
    """Other services' facts move the programme's status in intake's read model."""
    return await apply_each(store, FACTS_CONSUMER, batch, _apply_fact(store), programmes_of())


# -- rebuilt from the log (shared.rebuild; `mptf rebuild intake`) -----------------------------
OWN_FACTS_CONSUMER = "intake.own-facts"


async def project(store: IntakeStore, batch: list[Incoming]) -> list[Rejection]:
    """Our facts as they were made (the same store code, given the fact), and the others'
    lifecycle facts as the live consumer applies them."""

    async def own(uow: UnitOfWork, inc: Incoming) -> None:
        ev = inc.event
        if isinstance(ev, ProgrammeSubmitted):
            await store.submitted(uow, ev, inc.id)
        elif isinstance(ev, ProgrammeScreened):
            await store.screened(uow, ev, inc.id)
        elif isinstance(ev, ProgrammeWithdrawn):
            await store.apply_fact(uow, ev.programme_id, inc.type, inc.id, ev,
                                   at=ev.withdrawn_at, by=ev.withdrawn_by,
                                   detail={"reason": ev.reason})

    def mine(i: Incoming) -> bool:
        return i.record.topic.endswith(topics.PROGRAMMES)

    out: list[Rejection] = []
    for ours, run in runs(batch, own=mine,
                          wanted=lambda i: mine(i) or i.type in lifecycle.HISTORY_TYPES):
        out += await apply_each(store, OWN_FACTS_CONSUMER if ours else FACTS_CONSUMER, run,
                                own if ours else _apply_fact(store), programmes_of())
    return out


def _apply_fact(store: IntakeStore):  # type: ignore[no-untyped-def]
    async def apply(uow: UnitOfWork, inc: Incoming) -> None:
        pid = getattr(inc.event, "programme_id", None) or inc.subject or ""
        await store.apply_fact(uow, pid, inc.type, inc.id, inc.event, at=inc.envelope.time,
                               by=inc.envelope.source)

    return apply


REBUILD = Plan(topics=(topics.PROGRAMMES, topics.FUNDING, topics.MONITORING),
               project=project,  # type: ignore[arg-type]
               read_models=("programmes",))
