"""Intake's wiring: settings (the Fund's screening parameters), store, runtime, handlers,
routes."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

from services.intake import api, handlers
from services.intake.screening import ScreeningRules
from services.intake.store import IntakeStore
from shared.http import create_app, include_api
from shared.reference import DEFAULT_AREA_OBJECTIVES, DEFAULT_REGIONS, NETWORK_MEMBERS
from shared.runtime import Runtime
from shared.settings import ServiceSettings

_R = ScreeningRules()


class IntakeSettings(ServiceSettings):
    """Screening parameters (domain.md marks them as parameters): env MPTF_<NAME>."""

    service_name: str = "intake"
    http_port: int = 8001

    # the defaults are the rules' own (services/intake/screening.py), stated once
    budget_ceiling_usd: Decimal = _R.budget_ceiling_usd
    # shared.budget: the same two parameters as funding's, by the same names
    support_cost_rate: Decimal = _R.support_cost_rate
    ceiling_includes_support_cost: bool = _R.ceiling_includes_support_cost
    max_duration_months: int = _R.max_duration_months
    marker_scale_max: int = _R.marker_scale_max
    min_gender_marker: int = _R.min_gender_marker
    min_human_rights_marker: int = _R.min_human_rights_marker
    min_child_sensitivity_marker: int = _R.min_child_sensitivity_marker
    require_rc_endorsement: bool = _R.require_rc_endorsement
    min_government_partners: int = Field(default=_R.min_government_partners, ge=0)
    min_stakeholder_partners: int = Field(default=_R.min_stakeholder_partners, ge=0)
    area_objectives: dict[int, list[int]] = Field(
        default_factory=lambda: dict(DEFAULT_AREA_OBJECTIVES))
    extra_entities: list[str] = Field(default_factory=list)
    extra_regions: list[str] = Field(default_factory=list)

    @field_validator("extra_entities")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [e.upper() for e in v]

    def rules(self) -> ScreeningRules:
        return ScreeningRules(
            budget_ceiling_usd=self.budget_ceiling_usd,
            support_cost_rate=self.support_cost_rate,
            ceiling_includes_support_cost=self.ceiling_includes_support_cost,
            max_duration_months=self.max_duration_months,
            marker_scale_max=self.marker_scale_max,
            min_gender_marker=self.min_gender_marker,
            min_human_rights_marker=self.min_human_rights_marker,
            min_child_sensitivity_marker=self.min_child_sensitivity_marker,
            require_rc_endorsement=self.require_rc_endorsement,
            min_government_partners=self.min_government_partners,
            min_stakeholder_partners=self.min_stakeholder_partners,
            area_objectives=dict(self.area_objectives),
            known_entities=frozenset(NETWORK_MEMBERS) | frozenset(self.extra_entities),
            regions=DEFAULT_REGIONS | frozenset(self.extra_regions),
        )


def build(settings: IntakeSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or IntakeSettings()
    rules = settings.rules()
    store = IntakeStore(settings)
    runtime = Runtime(settings, store)
    handlers.register(runtime, store, rules)
    app = create_app(runtime, title="Migration MPTF — intake",
                     description="Concept notes from entity systems and people, eligibility "
                                 "screening, and the programme pipeline.")
    app.state.store = store
    app.state.rules = rules
    include_api(app, api)
    return app, runtime


def main() -> None:
    from shared.runtime import run_service

    run_service(build, IntakeSettings)
