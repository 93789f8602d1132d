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
    # both topics by one consumer (one transaction at a time writes a programme's record)
    runtime.subscribe((topics.PROGRAMMES, topics.MONITORING), "facts",
                      [ProgrammeScreened.TYPE, ProgrammeWithdrawn.TYPE,
                       ProgrammeOperationallyClosed.TYPE, ProgrammeFinanciallyClosed.TYPE],
                      on_programme_facts, strict_types=False,
                      replaces=("programme-facts", "closure-facts"))
