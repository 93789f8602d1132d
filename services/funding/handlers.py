"""Funding's Kafka entrypoints."""

from __future__ import annotations

from services.funding import service
from services.funding.domain import FundingRules
from services.funding.store import FundingStore
from shared import topics
from shared.contracts.funding import SubmitRefund
from shared.contracts.intake import ProgrammeScreened, ProgrammeWithdrawn
from shared.contracts.monitoring import (
    ProgrammeFinanciallyClosed,
    ProgrammeOperationallyClosed,
)
from shared.runtime import Runtime


def register(runtime: Runtime, store: FundingStore, rules: FundingRules) -> None:
    async def on_programme_facts(batch):  # type: ignore[no-untyped-def]
        return await service.handle_programme_facts(store, rules, batch)

    async def on_refunds(batch):  # type: ignore[no-untyped-def]
        return await service.handle_refunds(store, rules, batch)

    runtime.subscribe(topics.INBOUND_REFUNDS, "refunds", [SubmitRefund.TYPE], on_refunds)
    runtime.subscribe(topics.PROGRAMMES, "programme-facts",
                      [ProgrammeScreened.TYPE, ProgrammeWithdrawn.TYPE], on_programme_facts,
                      strict_types=False)
    runtime.subscribe(topics.MONITORING, "closure-facts",
                      [ProgrammeOperationallyClosed.TYPE, ProgrammeFinanciallyClosed.TYPE],
                      on_programme_facts, strict_types=False)
