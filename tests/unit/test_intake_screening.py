"""Every screening rule on both sides of its boundary, all reasons at once, and personal
data detection."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.intake.screening import ScreeningRules, screen
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.privacy import find_personal_data, redact

TODAY = date(2026, 11, 23)
RULES = ScreeningRules()


def note(**changes: Any) -> SubmitConceptNote:
    return SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE, **changes})


def codes(n: SubmitConceptNote, rules: ScreeningRules = RULES) -> list[str]:
    return [r.code for r in screen(n, rules, TODAY)]


def punos(*budgets: str, convening: int = 0, entities: tuple[str, ...] = ()) -> list[dict]:
    names = entities or ("IOM", "ILO", "UNDP", "UNICEF")[: len(budgets)]
    return [{"entity": e, "convening": i == convening, "budget_usd": b}
            for i, (e, b) in enumerate(zip(names, budgets, strict=True))]


def test_the_example_note_is_eligible() -> None:
    assert codes(note()) == []


# -- PUNOs ----------------------------------------------------------------------------------
def test_two_punos_are_enough_and_one_is_not() -> None:
    assert codes(note(punos=punos("100", "100"))) == []
    assert codes(note(punos=punos("100"))) == ["punos.too-few"]


def test_the_same_entity_twice_does_not_make_a_joint_programme() -> None:
    got = codes(note(punos=punos("1", "1", entities=("IOM", "iom"))))
    assert got == ["punos.too-few", "punos.duplicate"]


def test_punos_must_be_network_members() -> None:
    assert codes(note(punos=punos("1", "1", entities=("IOM", "UNCTAD")))) == []
    got = screen(note(punos=punos("1", "1", entities=("IOM", "ACME"))), RULES, TODAY)
    assert [(r.code, r.field) for r in got] == [("punos.unknown-entity", "punos.1.entity")]


def test_exactly_one_convening_agency() -> None:
    none = [{**p, "convening": False} for p in punos("1", "1")]
    both = [{**p, "convening": True} for p in punos("1", "1")]
    assert codes(note(punos=none)) == ["punos.convening-count"]
    assert codes(note(punos=both)) == ["punos.convening-count"]


# -- objectives and thematic area -----------------------------------------------------------
@pytest.mark.parametrize(("objectives", "expected"), [
    ([1], []), ([23, 1], []), ([0], ["objectives.out-of-range"]),
    ([24], ["objectives.out-of-range"]), ([], ["objectives.missing"])])
def test_objectives_are_1_to_23(objectives: list[int], expected: list[str]) -> None:
    area = {"primary_thematic_area": 1}
    got = codes(note(gcm_objectives=objectives, **area))
    if objectives in ([24], [0]):
        expected = [*expected, "thematic-area.inconsistent"]
    assert got == expected


def test_primary_area_must_cover_one_of_the_objectives() -> None:
    assert codes(note(gcm_objectives=[6], primary_thematic_area=4)) == []
    assert codes(note(gcm_objectives=[6], primary_thematic_area=1)) == [
        "thematic-area.inconsistent"]
    assert codes(note(gcm_objectives=[17], primary_thematic_area=5)) == []  # 17 is in two areas
    assert codes(note(primary_thematic_area=6)) == ["thematic-area.unknown"]


def test_the_objective_mapping_is_configuration() -> None:
    rules = ScreeningRules(area_objectives={1: [6]})
    assert codes(note(gcm_objectives=[6], primary_thematic_area=1), rules) == []


# -- budget and duration --------------------------------------------------------------------
def test_budget_ceiling_is_inclusive() -> None:
    assert codes(note(punos=punos("2000000.00", "1000000.00"))) == []
    assert codes(note(punos=punos("2000000.00", "1000000.01"))) == ["budget.over-ceiling"]


def test_the_ceiling_is_configuration() -> None:
    rules = ScreeningRules(budget_ceiling_usd=Decimal("5000000"))
    assert codes(note(punos=punos("4000000", "1000000")), rules) == []


def test_each_share_must_be_positive() -> None:
    assert codes(note(punos=punos("0.01", "5"))) == []
    got = screen(note(punos=punos("0", "5")), RULES, TODAY)
    assert [(r.code, r.field) for r in got] == [("budget.non-positive", "punos.0.budget_usd")]


@pytest.mark.parametrize(("months", "expected"), [
    (36, []), (37, ["duration.over-maximum"]), (1, []), (0, ["duration.non-positive"])])
def test_duration(months: int, expected: list[str]) -> None:
    assert codes(note(duration_months=months)) == expected


# -- markers --------------------------------------------------------------------------------
@pytest.mark.parametrize("marker", ["gender", "human_rights", "child_sensitivity"])
def test_each_marker_has_a_minimum_of_2(marker: str) -> None:
    base = {"gender": 3, "human_rights": 3, "child_sensitivity": 3}
    assert codes(note(markers={**base, marker: 2})) == []
    assert codes(note(markers={**base, marker: 1})) == [
        f"markers.{marker.replace('_', '-')}-below-minimum"]
    assert codes(note(markers={**base, marker: 4})) == [
        f"markers.{marker.replace('_', '-')}-out-of-scale"]


# -- geography and endorsements ------------------------------------------------------------
def test_countries_are_iso_codes_or_a_region_is_named() -> None:
    assert codes(note(countries=["za", "MX"])) == []
    assert codes(note(countries=["XX"])) == ["geography.unknown-country"]
    assert codes(note(countries=[], region="Western Africa")) == []
    assert codes(note(countries=[], region="Atlantis")) == ["geography.unknown-region"]
    assert codes(note(countries=[], region=None)) == ["geography.missing"]


def test_government_endorsement_is_required_and_not_in_the_future() -> None:
    assert codes(note(government_endorsement=None)) == ["endorsement.government-missing"]
    g = {**CONCEPT_NOTE_EXAMPLE["government_endorsement"], "date": "2026-11-23"}
    assert codes(note(government_endorsement=g)) == []
    g = {**g, "date": "2026-11-24"}
    assert codes(note(government_endorsement=g)) == ["endorsement.government-future-date"]


def test_rc_endorsement_only_where_configuration_requires_it() -> None:
    assert codes(note(rc_endorsement=None)) == []
    required = ScreeningRules(require_rc_endorsement=True)
    assert codes(note(rc_endorsement=None), required) == ["endorsement.rc-missing"]
    assert codes(note(), required) == []


def test_whole_of_government_needs_two_government_entities_the_endorser_included() -> None:
    dmw = {**CONCEPT_NOTE_EXAMPLE["government_endorsement"], "authority": "DMW"}
    one = {"government": ["DMW", " dmw "], "stakeholders": ["Migrant workers' associations"]}
    two = {**one, "government": ["Philippine Statistics Authority"]}
    assert codes(note(partners=one, government_endorsement=dmw)) == [
        "partners.whole-of-government"]  # the same body named twice is one entity
    assert codes(note(partners=two, government_endorsement=dmw)) == []
    got = screen(note(partners={**one, "government": []}, government_endorsement=dmw),
                 RULES, TODAY)
    assert [(r.code, r.field) for r in got] == [
        ("partners.whole-of-government", "partners.government")]
    assert "needs at least 2 government entities" in got[0].message
    assert codes(note(partners=one, government_endorsement=dmw),
                 ScreeningRules(min_government_partners=1)) == []


def test_whole_of_society_needs_a_stakeholder_partner() -> None:
    none = {"government": ["PSA", "DMW"], "stakeholders": []}
    assert codes(note(partners=none)) == ["partners.whole-of-society"]
    assert codes(note(partners={**none, "stakeholders": ["Returnee cooperative"]})) == []
    assert codes(note(partners=none), ScreeningRules(min_stakeholder_partners=0)) == []
    assert codes(note(partners=none), ScreeningRules(min_stakeholder_partners=2)) == [
        "partners.whole-of-society"]


def test_every_failed_rule_is_reported_at_once() -> None:
    bad = note(punos=punos("5000000"), gcm_objectives=[], duration_months=40,
               markers={"gender": 0, "human_rights": 1, "child_sensitivity": 1},
               countries=["QQ"], government_endorsement=None, partners={},
               summary="Contact Mr. Hassan at +33 6 12 34 56 78")
    assert codes(bad) == [
        "punos.too-few", "objectives.missing", "budget.over-ceiling", "duration.over-maximum",
        "markers.gender-below-minimum", "markers.human-rights-below-minimum",
        "markers.child-sensitivity-below-minimum", "geography.unknown-country",
        "endorsement.government-missing", "partners.whole-of-government",
        "partners.whole-of-society",
        "personal-data", "personal-data",  # a phone number and a name, both in `summary`
    ]


# -- personal data --------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "Call the family on +254 712 345 678",
    "phone: 0712345678",
    "Passport No. A1234567 was copied",
    "P<PHLSANTOS<<MARIA<<<<<<",
    "born on 12/03/1990 in Cebu",
    "date of birth: 3 March 1990",
    "The migrant named Amina returned",
    "Mrs. Santos was interviewed",
    "surname: Okafor",
])
def test_personal_data_of_individuals_is_detected(text: str) -> None:
    hits = find_personal_data({"summary": text})
    assert [h.field for h in hits] == ["summary"]
    assert text not in hits[0].message  # the reason never repeats the data


@pytest.mark.parametrize("text", [
    "Over 130,000 beneficiaries reached in 2021-2023",
    "296 officials trained; 52% women",
    "Budget of USD 1,200,000.00 over 30 months",
    "Partnership with the Ministry of Labour (2019-2024)",
    "Reached 12,345 migrants aged 18-24 and 1,000 children",
    "The national strategy was adopted on 12/03/2024",
])
def test_aggregate_figures_are_not_personal_data(text: str) -> None:
    assert find_personal_data({"summary": text}) == []


def test_redaction_replaces_exactly_the_named_fields() -> None:
    data = {"summary": "Mr. Smith", "title": "Fine", "expected_results": ["ok", "dob: 1/2/1990"]}
    hits = find_personal_data(data)
    assert redact(data, hits) == {"summary": "[redacted: personal data]", "title": "Fine",
                                  "expected_results": ["ok", "[redacted: personal data]"]}
