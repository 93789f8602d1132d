"""Intake's MongoDB adapter: the `programmes` collection (its own database)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from services.intake.domain import Submission, SubmissionOutcome, resolve_duplicate
from shared.contracts.intake import ProgrammeSubmitted
from shared.store import Store, UnitOfWork


class IntakeStore(Store):
    async def indexes(self) -> None:
        await self.db.programmes.create_index(
            [("submitted_by", ASCENDING), ("entity_reference", ASCENDING)], unique=True)
        await self.db.programmes.create_index([("status", ASCENDING)])

    async def record_submission(self, uow: UnitOfWork, sub: Submission,
                                traceparent: str | None = None) -> SubmissionOutcome:
        existing = await self.db.programmes.find_one(
            {"_id": sub.programme_id}, {"fingerprint": 1}, session=uow.session)
        if existing:
            return resolve_duplicate(existing["fingerprint"], sub)
        await self.db.programmes.insert_one({
            "_id": sub.programme_id,
            "submitted_by": sub.submitted_by,
            "entity_reference": sub.note.entity_reference,
            "fingerprint": sub.fingerprint,
            "channel": sub.channel,
            "note": sub.note.model_dump(mode="json"),
            "punos": [p.entity.upper() for p in sub.note.punos],
            "status": "submitted",
            "history": [{"status": "submitted", "at": sub.at, "by": sub.submitted_by}],
            "submitted_at": sub.at,
        }, session=uow.session)
        uow.emit(ProgrammeSubmitted(
            programme_id=sub.programme_id, submitted_by=sub.submitted_by,
            entity_reference=sub.note.entity_reference, channel=sub.channel,
            submitted_at=sub.at, note=sub.note), traceparent=traceparent)
        return SubmissionOutcome(sub.programme_id, created=True)

    async def get(self, programme_id: str) -> dict[str, Any] | None:
        return await self.db.programmes.find_one({"_id": programme_id})
