"""Notifications' Kafka entrypoints: every fact topic but its own."""

from __future__ import annotations

import asyncio

from services.notifications import service
from services.notifications.store import NotificationsStore
from shared import topics
from shared.contracts import REGISTRY
from shared.runtime import Runtime


def register(runtime: Runtime, store: NotificationsStore, *, digest_hour: int,
             wake: asyncio.Event) -> None:
    async def on_facts(batch):  # type: ignore[no-untyped-def]
        return await service.handle_facts(store, batch, digest_hour=digest_hour, wake=wake)

    # the three fact topics by one consumer: the facts of one SC decision (on two topics) are
    # not written by two transactions of ours at once, which conflicted
    facts = (topics.PROGRAMMES, topics.FUNDING, topics.MONITORING)
    runtime.subscribe(facts, "facts", [c.type for c in REGISTRY.values() if c.topic in facts],
                      on_facts, strict_types=False,
                      replaces=("programme-facts", "funding-facts", "monitoring-facts"))
