"""Intake's Kafka entrypoints: thin, they hand batches to the service layer."""

from __future__ import annotations

from services.intake import service
from services.intake.store import IntakeStore
from shared import topics
from shared.contracts.intake import SubmitConceptNote
from shared.runtime import Runtime


def register(runtime: Runtime, store: IntakeStore) -> None:
    async def on_concept_notes(batch):  # type: ignore[no-untyped-def]
        return await service.handle_inbound(store, batch)

    runtime.subscribe(topics.INBOUND_CONCEPT_NOTES, "concept-notes",
                      [SubmitConceptNote.TYPE], on_concept_notes)
