"""Hostile values in inbound models are refused with the field named: integers the store
cannot hold, invalid Unicode, control characters."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.contracts.base import refuse_unsafe
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote


@pytest.mark.parametrize(("value", "fragment"), [
    (2**64, "integer out of range"),
    (-(2**63) - 1, "integer out of range"),
    ("ok\x00", "control character U+0000"),
    ("bell\x07", "control character U+0007"),
    ("c1\x85", "control character U+0085"),
    ("\ud800", "lone surrogate"),
    ("x\uffff", "non-character U+FFFF"),
    ({"k\x01": 1}, "(key)"),
])
def test_unsafe_values_are_refused(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as e:
        refuse_unsafe({"a": [value]})
    assert fragment in str(e.value) and str(e.value).startswith("a[0]")


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), True, "tab\tnew\nline\r",
                                   "Côte d'Ivoire — GCM 23", "中文 العربية", 1.5, None])
def test_ordinary_values_pass(value: object) -> None:
    refuse_unsafe({"a": [value]})


def test_a_note_with_a_huge_integer_or_a_control_character_names_the_field() -> None:
    with pytest.raises(ValidationError) as e:
        SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE, "duration_months": 2**64})
    assert e.value.errors()[0]["loc"] == ("duration_months",)
    with pytest.raises(ValidationError) as e:
        SubmitConceptNote.model_validate(json.loads(json.dumps(
            {**CONCEPT_NOTE_EXAMPLE, "title": "Data\x0b strategy"})))
    assert e.value.errors()[0]["loc"] == ("title",)
    assert "U+000B" in e.value.errors()[0]["msg"]
    nested = {**CONCEPT_NOTE_EXAMPLE, "punos": [
        {"entity": "IOM", "convening": True, "budget_usd": "1"},
        {"entity": "ILO\ud800", "budget_usd": "1"}]}
    with pytest.raises(ValidationError) as e:
        SubmitConceptNote.model_validate(nested)
    assert e.value.errors()[0]["loc"] == ("punos",)
    assert "punos[1].entity" in e.value.errors()[0]["msg"]


def test_the_refusal_searches_exactly_the_characters_it_names() -> None:
    """Every code point: refused (with its own wording) if and only if `_unsafe_char`
    names it; found wherever it sits in a string."""
    from shared.contracts.base import _unsafe_char

    for o in range(0x110000):
        ch = chr(o)
        why = _unsafe_char(ch)
        if why is None:
            refuse_unsafe(f"a{ch}b")
        else:
            with pytest.raises(ValueError) as e:
                refuse_unsafe(f"text {ch} more")
            assert str(e.value) == f"value: {why} is not allowed"
