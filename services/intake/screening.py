"""Eligibility screening: the Fund's rules for a concept note, as plain code.

Every rule runs; an ineligible note gets ALL its failed reasons, each with a stable code.
The parameters (ceiling, duration, marker minimums, objective clusters, known entities,
regions, whether the RC must endorse, the whole-of-government and whole-of-society
minimums) come from IntakeSettings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from shared import budget
from shared.contracts.intake import Reason, SubmitConceptNote
from shared.privacy import find_personal_data
from shared.reference import (
    DEFAULT_AREA_OBJECTIVES,
    DEFAULT_REGIONS,
    ISO_COUNTRIES,
    NETWORK_MEMBERS,
)


@dataclass(frozen=True)
class ScreeningRules:
    budget_ceiling_usd: Decimal = budget.CEILING_USD
    support_cost_rate: Decimal = budget.SUPPORT_COST_RATE
    ceiling_includes_support_cost: bool = budget.INCLUDES_SUPPORT_COST
    max_duration_months: int = 36
    marker_scale_max: int = 3
    min_gender_marker: int = 2
    min_human_rights_marker: int = 2
    min_child_sensitivity_marker: int = 2
    require_rc_endorsement: bool = False
    # whole-of-government: more than one government entity takes part (the endorsing
    # authority counts); whole-of-society: civil society, migrants or affected communities.
    # 0 turns a check off.
    min_government_partners: int = 2
    min_stakeholder_partners: int = 1
    area_objectives: dict[int, list[int]] = field(
        default_factory=lambda: dict(DEFAULT_AREA_OBJECTIVES))
    known_entities: frozenset[str] = frozenset(NETWORK_MEMBERS)
    regions: frozenset[str] = DEFAULT_REGIONS

    @property
    def ceiling(self) -> budget.Ceiling:
        return budget.Ceiling(self.budget_ceiling_usd, self.support_cost_rate,
                              self.ceiling_includes_support_cost)


def _usd(d: Decimal) -> str:
    return f"USD {d:,.2f}"


def _r(code: str, field: str, message: str) -> Reason:
    return Reason(code=code, field=field, message=message)


def _punos(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    codes = [p.entity.upper() for p in note.punos]
    if len(set(codes)) < 2:
        yield _r("punos.too-few", "punos",
                 f"a joint programme needs at least 2 participating UN organisations; "
                 f"this note names {len(set(codes))}")
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        yield _r("punos.duplicate", "punos", f"listed more than once: {', '.join(dupes)}")
    for i, c in enumerate(codes):
        if c not in rules.known_entities:
            yield _r("punos.unknown-entity", f"punos.{i}.entity",
                     f"{c} is not a member of the UN Network on Migration")
    convening = sum(1 for p in note.punos if p.convening)
    if convening != 1:
        yield _r("punos.convening-count", "punos",
                 f"exactly one convening agency is required; found {convening}")


def _objectives(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    objs = note.gcm_objectives
    if not objs:
        yield _r("objectives.missing", "gcm_objectives",
                 "name at least one GCM objective (1-23)")
    bad = [o for o in objs if not 1 <= o <= 23]
    if bad:
        yield _r("objectives.out-of-range", "gcm_objectives",
                 f"GCM objectives are numbered 1-23; got {bad}")
    area = note.primary_thematic_area
    if area not in rules.area_objectives:
        yield _r("thematic-area.unknown", "primary_thematic_area",
                 f"thematic area {area} does not exist (1-{max(rules.area_objectives)})")
    elif objs and not set(objs) & set(rules.area_objectives[area]):
        yield _r("thematic-area.inconsistent", "primary_thematic_area",
                 f"thematic area {area} covers objectives {rules.area_objectives[area]}; "
                 f"none of {sorted(set(objs))} is among them")


def _budget(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    for i, p in enumerate(note.punos):
        if p.budget_usd <= 0:
            yield _r("budget.non-positive", f"punos.{i}.budget_usd",
                     f"{p.entity}'s share must be positive; got {_usd(p.budget_usd)}")
    excess = rules.ceiling.excess(p.budget_usd for p in note.punos)
    if excess:
        yield _r("budget.over-ceiling", "punos", excess)


def _duration(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    if note.duration_months <= 0:
        yield _r("duration.non-positive", "duration_months", "duration must be positive")
    elif note.duration_months > rules.max_duration_months:
        yield _r("duration.over-maximum", "duration_months",
                 f"{note.duration_months} months exceeds the maximum of "
                 f"{rules.max_duration_months}")


def _markers(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    for name, minimum in (("gender", rules.min_gender_marker),
                          ("human_rights", rules.min_human_rights_marker),
                          ("child_sensitivity", rules.min_child_sensitivity_marker)):
        value = getattr(note.markers, name)
        code = name.replace("_", "-")
        if value > rules.marker_scale_max:
            yield _r(f"markers.{code}-out-of-scale", f"markers.{name}",
                     f"the {name.replace('_', '-')} marker is on a 0-{rules.marker_scale_max} "
                     f"scale; got {value}")
        elif value < minimum:
            yield _r(f"markers.{code}-below-minimum", f"markers.{name}",
                     f"the {name.replace('_', '-')} marker is {value}; the Fund's minimum is "
                     f"{minimum}")


def _geography(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    if not note.countries and not note.region:
        yield _r("geography.missing", "countries",
                 "name at least one country (ISO 3166-1 alpha-2) or a region")
    for i, c in enumerate(note.countries):
        if c.upper() not in ISO_COUNTRIES:
            yield _r("geography.unknown-country", f"countries.{i}",
                     f"{c!r} is not an ISO 3166-1 alpha-2 country code")
    if note.region and note.region not in rules.regions:
        yield _r("geography.unknown-region", "region",
                 f"{note.region!r} is not a region the Fund recognises")


def _endorsements(note: SubmitConceptNote, rules: ScreeningRules, today: date
                  ) -> Iterator[Reason]:
    g = note.government_endorsement
    if g is None:
        yield _r("endorsement.government-missing", "government_endorsement",
                 "the recipient government's endorsement (letter and date) is required")
    elif g.date > today:
        yield _r("endorsement.government-future-date", "government_endorsement.date",
                 f"the endorsement is dated {g.date}, after today")
    if rules.require_rc_endorsement and note.rc_endorsement is None:
        yield _r("endorsement.rc-missing", "rc_endorsement",
                 "the Resident Coordinator's endorsement is required")


def _names(names: list[str]) -> set[str]:
    return {" ".join(n.split()).casefold() for n in names}


def _partners(note: SubmitConceptNote, rules: ScreeningRules) -> Iterator[Reason]:
    endorsing = [note.government_endorsement.authority] if note.government_endorsement else []
    government = _names([*note.partners.government, *endorsing])
    if len(government) < rules.min_government_partners:
        yield _r("partners.whole-of-government", "partners.government",
                 f"a whole-of-government approach needs at least "
                 f"{rules.min_government_partners} government entities (the endorsing "
                 f"authority counts); this note names {len(government)}")
    society = _names(note.partners.stakeholders)
    if len(society) < rules.min_stakeholder_partners:
        yield _r("partners.whole-of-society", "partners.stakeholders",
                 f"a whole-of-society approach needs at least "
                 f"{rules.min_stakeholder_partners} stakeholder partner(s) (civil society, "
                 f"migrants' associations, affected communities); this note names "
                 f"{len(society)}")


def screen(note: SubmitConceptNote, rules: ScreeningRules, today: date) -> list[Reason]:
    """Every failed rule, in a stable order; empty means eligible."""
    return [
        *_punos(note, rules),
        *_objectives(note, rules),
        *_budget(note, rules),
        *_duration(note, rules),
        *_markers(note, rules),
        *_geography(note, rules),
        *_endorsements(note, rules, today),
        *_partners(note, rules),
        *find_personal_data(note.model_dump(mode="json")),
    ]
