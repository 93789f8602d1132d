"""Notifications' Kafka entrypoints."""

from __future__ import annotations

from services.notifications import service
from services.notifications.store import NotificationsStore
from shared import topics
from shared.contracts.intake import ProgrammeSubmitted
from shared.runtime import Runtime


def register(runtime: Runtime, store: NotificationsStore) -> None:
    async def on_programme_facts(batch):  # type: ignore[no-untyped-def]
        await service.handle_facts(store, batch)

    # fact topics carry many types; those this service does not act on are skipped
    runtime.subscribe(topics.PROGRAMMES, "programme-facts", [ProgrammeSubmitted.TYPE],
                      on_programme_facts, strict_types=False)
