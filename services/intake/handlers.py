"""Intake's Kafka entrypoints: thin, they hand batches to the service layer."""

from __future__ import annotations

from services.intake import service
from services.intake.screening import ScreeningRules
from services.intake.store import IntakeStore
from shared import lifecycle, topics
from shared.contracts.intake import SubmitConceptNote
from shared.runtime import Runtime


def register(runtime: Runtime, store: IntakeStore, rules: ScreeningRules) -> None:
    async def on_concept_notes(batch):  # type: ignore[no-untyped-def]
        return await service.handle_inbound(store, rules, batch)

    async def on_lifecycle_facts(batch):  # type: ignore[no-untyped-def]
        return await service.handle_facts(store, batch)

    runtime.subscribe(topics.INBOUND_CONCEPT_NOTES, "concept-notes",
                      [SubmitConceptNote.TYPE], on_concept_notes)
    # decisions, allocations, transfers and closures move the status in our read model
    # (shared.lifecycle): every fact of the lifecycle, and the changes the history shows;
    # both topics by one consumer (one transaction at a time writes a programme's record)
    runtime.subscribe((topics.FUNDING, topics.MONITORING), "facts",
                      sorted(lifecycle.HISTORY_TYPES), on_lifecycle_facts, strict_types=False,
                      replaces=("lifecycle-facts", "closure-facts"))
