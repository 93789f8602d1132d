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

    # the programme and funding facts by one consumer: the facts of one SC decision (on both
    # topics) are not written by two transactions of ours at once, which conflicted
    runtime.subscribe((topics.PROGRAMMES, topics.FUNDING), "facts",
                      [*service.PROGRAMME_FACTS, *service.FUNDING_FACTS], on_facts,
                      strict_types=False, replaces=("programme-facts", "funding-facts"))
    runtime.subscribe(topics.INBOUND_PROGRESS_REPORTS, "progress-reports",
                      [SubmitProgressReport.TYPE], on_reports)
