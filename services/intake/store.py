"""Intake's MongoDB adapter: the `programmes` collection in intake's own database.

A programme document is its read model: current status, history (every transition with who,
when and why), the note, PUNOs, budget. Documents are read and written through the
transaction's batched view (`UnitOfWork.docs`): a status change checks the status it read
and writes the document in the same transaction, and two concurrent changes of one
programme write the same document, so one of them conflicts and retries against the other's
result; they cannot both apply.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.intake.domain import (
    Status,
    Submission,
    SubmissionOutcome,
    fingerprint,
    resolve_duplicate,
)
from shared import lifecycle
from shared.contracts.intake import (
    BudgetLine,
    ProgrammeScreened,
    ProgrammeSubmitted,
    ProgrammeSummary,
    ProgrammeWithdrawn,
    Reason,
)
from shared.dec128 import d128
from shared.errors import NotFound
from shared.rebuild import chronological
from shared.store import Store, UnitOfWork


def summary_of(sub: Submission) -> ProgrammeSummary:
    note = sub.note
    return ProgrammeSummary(
        title=note.title, submitted_by=sub.submitted_by,
        countries=[c.upper() for c in note.countries], region=note.region,
        punos=[BudgetLine(entity=p.entity.upper(), convening=p.convening,
                          budget_usd=p.budget_usd) for p in note.punos],
        total_budget_usd=sum((p.budget_usd for p in note.punos), Decimal(0)),
        gcm_objectives=list(note.gcm_objectives),
        primary_thematic_area=note.primary_thematic_area,
        duration_months=note.duration_months)


class IntakeStore(Store):
    async def indexes(self) -> None:
        p = self.db.programmes
        await p.create_index([("submitted_by", ASCENDING), ("entity_reference", ASCENDING)],
                             unique=True)
        await p.create_index([("status", ASCENDING), ("submitted_at", DESCENDING)])
        await p.create_index([("punos", ASCENDING), ("submitted_at", DESCENDING)])
        await p.create_index([("countries", ASCENDING)])
        await p.create_index([("submitted_at", DESCENDING), ("_id", DESCENDING)])

    async def record_submission(self, uow: UnitOfWork, sub: Submission, reasons: list[Reason],
                                traceparent: str | None = None) -> SubmissionOutcome:
        """Store a new note with its screening (`reasons`, every failed rule: the caller
        screened it), and emit ProgrammeSubmitted and ProgrammeScreened, in the caller's
        transaction. An identical resubmission changes nothing."""
        programmes = uow.docs("programmes")
        existing = await programmes.get(sub.programme_id)
        if existing:
            return resolve_duplicate(existing["fingerprint"], sub)
        note = sub.note
        submitted = ProgrammeSubmitted(
            programme_id=sub.programme_id, submitted_by=sub.submitted_by,
            entity_reference=note.entity_reference, channel=sub.channel,  # type: ignore[arg-type]
            submitted_at=sub.at, note=note)
        screened = ProgrammeScreened(
            programme_id=sub.programme_id, eligible=not reasons, reasons=reasons,
            screened_at=sub.at, programme=summary_of(sub))
        first, second = (uow.emit(f, traceparent=traceparent) for f in (submitted, screened))
        await self.submitted(uow, submitted, first.id)
        status = await self.screened(uow, screened, second.id)
        return SubmissionOutcome(sub.programme_id, created=True, status=status,
                                 reasons=tuple(reasons))

    # -- our own facts, as made (above) or replayed (shared.rebuild) ---------------------------
    async def submitted(self, uow: UnitOfWork, f: ProgrammeSubmitted, fact_id: str) -> None:
        """A programme's document from its submission."""
        note = f.note
        record = lifecycle.replay([(ProgrammeSubmitted.TYPE, fact_id, f)])
        total = sum((p.budget_usd for p in note.punos), Decimal(0))
        await uow.docs("programmes").insert({
            "_id": f.programme_id,
            "submitted_by": f.submitted_by,
            "entity_reference": note.entity_reference,
            "fingerprint": fingerprint(note),
            "channel": f.channel,
            "title": note.title,
            "note": note.model_dump(mode="json"),
            "punos": [p.entity.upper() for p in note.punos],
            "convening": next((p.entity.upper() for p in note.punos if p.convening), None),
            "countries": [c.upper() for c in note.countries],
            "region": note.region,
            "gcm_objectives": list(note.gcm_objectives),
            "primary_thematic_area": note.primary_thematic_area,
            "requested_budget_usd": d128(total),
            "status": lifecycle.status(record),
            "lifecycle": record,
            "timeline": [lifecycle.timeline_entry(ProgrammeSubmitted.TYPE, fact_id,
                                                  f.submitted_at, f)],
            "history": [{"status": Status.SUBMITTED, "at": f.submitted_at,
                         "by": f.submitted_by, "via": f.channel}],
            "submitted_at": f.submitted_at,
            "updated_at": f.submitted_at,
        })

    async def screened(self, uow: UnitOfWork, f: ProgrammeScreened, fact_id: str) -> str:
        """The screening's verdict on the submitted programme; returns its status."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(f.programme_id)
        if doc is None:
            raise NotFound(f"no programme {f.programme_id}")
        record = lifecycle.fold(doc["lifecycle"], ProgrammeScreened.TYPE, fact_id, f, None)
        status = lifecycle.status(record) or doc["status"]
        await programmes.update(f.programme_id, {"$set": {
            "status": status, "lifecycle": record, "eligible": f.eligible,
            "reasons": [r.model_dump() for r in f.reasons], "updated_at": f.screened_at,
            "timeline": chronological([*doc["timeline"], lifecycle.timeline_entry(
                ProgrammeScreened.TYPE, fact_id, f.screened_at, f)]),
            "history": [*doc["history"], {"status": status, "at": f.screened_at,
                                          "by": "intake.screening",
                                          "reasons": [r.code for r in f.reasons]}]}})
        return status

    async def apply_fact(self, uow: UnitOfWork, programme_id: str, fact_type: str,
                         fact_id: str, event: Any, *, at: datetime, by: str,
                         detail: dict[str, Any] | None = None) -> tuple[str, str]:
        """Fold one lifecycle fact (ours or another service's) into the programme's record
        (shared.lifecycle: the same record whatever order the facts come in) and note it in
        the history; returns (previous status, status). NotFound / IllegalTransition
        leave everything unchanged."""
        programmes = uow.docs("programmes")
        doc = await programmes.get(programme_id)
        if doc is None:
            raise NotFound(f"no programme {programme_id}")
        current = doc["status"]
        record = lifecycle.fold(doc.get("lifecycle") or lifecycle.from_status(current),
                                fact_type, fact_id, event, getattr(event, "decision_id", None))
        status = lifecycle.status(record) or current
        at = lifecycle.ms(at)
        entry = {"status": status, "at": at, "by": by, "fact": fact_type, "fact_id": fact_id,
                 **(detail or {})}
        # in the facts' own order and as of their own times, not their arrival's: the same
        # document whatever order the topics delivered them in (shared.rebuild)
        timeline = doc.get("timeline", [])
        if fact_type in lifecycle.FACT_TYPES:
            timeline = chronological([*timeline, lifecycle.timeline_entry(
                fact_type, fact_id, at, event)])
        # written with the transaction: a concurrent change to this document conflicts with
        # it, and the transaction retries against the other's result
        await programmes.update(programme_id, {"$set": {
            "status": status, "lifecycle": record, "timeline": timeline,
            "updated_at": max(doc.get("updated_at") or at, at),
            "history": lifecycle.restated(chronological([*doc["history"], entry]), timeline)}})
        return current, status

    async def withdraw(self, uow: UnitOfWork, programme_id: str, entity: str, reason: str,
                       at: datetime, traceparent: str | None = None) -> str:
        doc = await uow.docs("programmes").get(programme_id)
        if doc is None or entity not in doc["punos"]:
            raise NotFound(f"no programme {programme_id}")
        lifecycle.check("withdraw", doc["status"], programme_id)
        fact = ProgrammeWithdrawn(programme_id=programme_id, withdrawn_by=entity,
                                  reason=reason, previous_status=doc["status"],
                                  withdrawn_at=at)
        env = uow.emit(fact, traceparent=traceparent)
        previous, _ = await self.apply_fact(uow, programme_id, env.type, env.id, fact, at=at,
                                            by=entity, detail={"reason": reason})
        return previous

    async def get(self, programme_id: str) -> dict[str, Any] | None:
        return await self.db.programmes.find_one({"_id": programme_id})

    async def status_of(self, uow: UnitOfWork, programme_id: str) -> str | None:
        doc = await uow.docs("programmes").get(programme_id)
        return doc["status"] if doc else None

    async def search(self, query: dict[str, Any], cursor: str | None, limit: int
                     ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, a page at a time (shared.paging: keyset on (submitted_at, _id))."""
        return await self.page("programmes", query, [("submitted_at", -1), ("_id", -1)],
                               cursor, limit, {"note": 0, "fingerprint": 0})
