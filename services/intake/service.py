"""Intake's use cases, called by both entrypoints (HTTP routes and the inbound-topic handler)
so a concept note is treated the same however it arrives."""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from services.intake.domain import (
    Submission,
    SubmissionOutcome,
    check_submitter,
    fingerprint,
    programme_id,
)
from services.intake.store import IntakeStore
from shared.consumer import Incoming, Rejection
from shared.contracts.intake import SubmitConceptNote
from shared.envelope import utcnow
from shared.errors import MptfError
from shared.store import UnitOfWork
from shared.telemetry import tag_programme

INBOUND_CONSUMER = "intake.concept-notes"


def make_submission(note: SubmitConceptNote, entity: str, channel: str) -> Submission:
    check_submitter(note, entity)
    entity = entity.upper()
    return Submission(programme_id(entity, note.entity_reference), entity, fingerprint(note),
                      note, channel, utcnow())


async def submit(store: IntakeStore, note: SubmitConceptNote, entity: str,
                 channel: str = "http") -> SubmissionOutcome:
    sub = make_submission(note, entity, channel)
    tag_programme(sub.programme_id)
    for attempt in range(2):
        try:
            outcome, _ = await store.transaction(lambda uow: store.record_submission(uow, sub))
            return outcome
        except DuplicateKeyError:
            if attempt:  # a concurrent identical submission committed first: now we see it
                raise
    raise AssertionError("unreachable")


async def handle_inbound(store: IntakeStore, batch: list[Incoming]) -> list[Rejection]:
    """One transaction for the whole batch: redeliveries are skipped, refused notes are
    dead-lettered with their reason, the rest are recorded with their facts."""
    from services.intake.domain import entity_from_source

    rejections: list[Rejection] = []

    async def work(uow: UnitOfWork) -> None:
        rejections.clear()
        fresh = await uow.unseen(INBOUND_CONSUMER, [i.id for i in batch])
        done: list[str] = []
        for inc in batch:
            if inc.id not in fresh or inc.id in done:
                continue
            note = inc.event
            assert isinstance(note, SubmitConceptNote)
            try:
                sub = make_submission(note, entity_from_source(inc.envelope.source), "kafka")
                await store.record_submission(uow, sub, traceparent=inc.traceparent)
            except MptfError as e:
                rejections.append(Rejection(inc, e.code, e.detail))
                continue
            done.append(inc.id)
        await uow.mark_seen(INBOUND_CONSUMER, done)

    await store.transaction(work)
    return rejections
