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

    for topic, name in ((topics.PROGRAMMES, "programme-facts"),
                        (topics.FUNDING, "funding-facts"),
                        (topics.MONITORING, "monitoring-facts")):
        types = [c.type for c in REGISTRY.values() if c.topic == topic]
        runtime.subscribe(topic, name, types, on_facts, strict_types=False)
