"""Monitoring's Kafka entrypoints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.monitoring import service
from services.monitoring.domain import MonitoringRules
from services.monitoring.store import MonitoringStore
from shared import topics
from shared.contracts.monitoring import SubmitProgressReport
from shared.runtime import Runtime


def register(runtime: Runtime, store: MonitoringStore, rules: MonitoringRules,
             clock: Callable[[], datetime]) -> None:
    async def on_facts(batch):  # type: ignore[no-untyped-def]
        return await service.handle_facts(store, batch)

    async def on_reports(batch):  # type: ignore[no-untyped-def]
        return await service.handle_reports(store, rules, batch, clock)

    runtime.subscribe(topics.PROGRAMMES, "programme-facts", service.PROGRAMME_FACTS, on_facts,
                      strict_types=False)
    runtime.subscribe(topics.FUNDING, "funding-facts", service.FUNDING_FACTS, on_facts,
                      strict_types=False)
    runtime.subscribe(topics.INBOUND_PROGRESS_REPORTS, "progress-reports",
                      [SubmitProgressReport.TYPE], on_reports)
