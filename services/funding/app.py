"""Funding's wiring: settings (the Fund's money parameters), store, runtime, routes."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from services.funding import api, handlers
from services.funding.domain import FundingRules
from services.funding.store import FundingStore
from shared.http import create_app, include_api
from shared.runtime import Runtime
from shared.settings import ServiceSettings

_R = FundingRules()


class FundingSettings(ServiceSettings):
    """Money parameters (domain.md): env MPTF_<NAME>."""

    service_name: str = "funding"
    http_port: int = 8002

    # the defaults are the rules' own (services/funding/domain.py), stated once
    aa_fee_rate: Decimal = _R.aa_fee_rate
    support_cost_rate: Decimal = _R.support_cost_rate
    budget_ceiling_usd: Decimal = _R.budget_ceiling_usd
    ceiling_includes_support_cost: bool = _R.ceiling_includes_support_cost  # shared.budget
    max_extension_months: int = Field(default=_R.max_extension_months, ge=0)
    transfer_tranches: list[Decimal] = Field(default_factory=lambda: [Decimal("1")])
    funding_targets_usd: dict[int, Decimal] = Field(default_factory=lambda: {
        2019: Decimal("25000000"), 2023: Decimal("20000000"), 2024: Decimal("25000000")})

    def rules(self) -> FundingRules:
        if sum(self.transfer_tranches) != 1 or any(t <= 0 for t in self.transfer_tranches):
            raise ValueError("MPTF_TRANSFER_TRANCHES must be positive shares summing to 1")
        return FundingRules(aa_fee_rate=self.aa_fee_rate,
                            support_cost_rate=self.support_cost_rate,
                            budget_ceiling_usd=self.budget_ceiling_usd,
                            ceiling_includes_support_cost=self.ceiling_includes_support_cost,
                            max_extension_months=self.max_extension_months,
                            tranches=tuple(self.transfer_tranches),
                            targets_usd=dict(self.funding_targets_usd))


def build(settings: FundingSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or FundingSettings()
    rules = settings.rules()
    store = FundingStore(settings)
    runtime = Runtime(settings, store)
    handlers.register(runtime, store, rules)
    app = create_app(runtime, title="Migration MPTF — funding",
                     description="The Fund's ledger, Steering Committee decisions, "
                                 "allocations and transfers.")
    app.state.store = store
    app.state.rules = rules
    include_api(app, api)
    return app, runtime


def main() -> None:
    from shared.runtime import run_service

    run_service(build, FundingSettings)
