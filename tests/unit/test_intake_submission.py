"""Intake's submission rules: programme identity, idempotency, who may submit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake.domain import (
    Submission,
    check_submitter,
    entity_from_source,
    fingerprint,
    programme_id,
    resolve_duplicate,
)
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.errors import Conflict, Forbidden

NOTE = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)


def test_programme_id_is_stable_per_entity_and_reference() -> None:
    assert programme_id("IOM", "R-1") == programme_id("iom", "R-1")
    assert programme_id("IOM", "R-1") != programme_id("IOM", "R-2")
    assert programme_id("IOM", "R-1") != programme_id("ILO", "R-1")
    assert programme_id("IOM", "R-1").startswith("jp-")


def test_fingerprint_ignores_number_formatting_but_not_content() -> None:
    same = SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE, "punos": [
        {**p, "budget_usd": p["budget_usd"]} for p in CONCEPT_NOTE_EXAMPLE["punos"]]})
    assert fingerprint(same) == fingerprint(NOTE)
    other = NOTE.model_copy(update={"title": "Another title"})
    assert fingerprint(other) != fingerprint(NOTE)


def _sub(note: SubmitConceptNote) -> Submission:
    return Submission(programme_id("IOM", note.entity_reference), "IOM", fingerprint(note), note,
                      "http", datetime.now(UTC))


def test_identical_resubmission_returns_the_same_programme() -> None:
    out = resolve_duplicate(fingerprint(NOTE), _sub(NOTE))
    assert out.programme_id == programme_id("IOM", NOTE.entity_reference)
    assert out.created is False


def test_reused_reference_with_other_content_is_a_conflict() -> None:
    changed = NOTE.model_copy(update={"title": "Changed"})
    with pytest.raises(Conflict):
        resolve_duplicate(fingerprint(NOTE), _sub(changed))


def test_only_a_puno_of_the_note_may_submit_it() -> None:
    check_submitter(NOTE, "IOM")
    check_submitter(NOTE, "un-women")
    with pytest.raises(Forbidden):
        check_submitter(NOTE, "UNDP")


@pytest.mark.parametrize(("source", "code"), [
    ("urn:mptf:entity:IOM", "IOM"), ("IOM", "IOM"), ("urn:mptf:entity:un-women", "UN-WOMEN")])
def test_entity_is_read_from_the_envelope_source(source: str, code: str) -> None:
    assert entity_from_source(source) == code


def test_a_note_is_screened_once_and_personal_data_refused_with_every_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the door screens is what is stored (the store no longer screens again), and the
    personal-data search runs once per note, eligible or not."""
    from datetime import date

    from services.intake import screening
    from services.intake.screening import ScreeningRules, screen
    from services.intake.service import screen_at_the_door
    from shared.errors import PersonalData

    rules, today = ScreeningRules(), date(2026, 11, 23)
    searched = []
    real = screening.find_personal_data
    monkeypatch.setattr(screening, "find_personal_data",
                        lambda data: searched.append(1) or real(data))
    assert screen_at_the_door(NOTE, rules, today) == screen(NOTE, rules, today) == []
    assert len(searched) == 2  # once at the door, once for the comparison

    searched.clear()
    odd = NOTE.model_copy(update={"summary": "Contact Maria Gonzalez Perez at +34 612 345 678",
                                  "duration_months": 999})
    with pytest.raises(PersonalData) as refused:
        screen_at_the_door(odd, rules, today)
    assert len(searched) == 1
    codes = [e["code"] for e in refused.value.errors]
    # its hits first, then the other failed rules (listed too)
    assert codes[0] == "personal-data" and codes == sorted(codes, key=lambda c: c != codes[0])
    assert any(c != "personal-data" for c in codes)
    assert b"Maria" not in refused.value.redacted
