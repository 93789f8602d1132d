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


def test_json_bytes_found_safe_as_a_whole_hold_nothing_the_search_refuses() -> None:
    """`raw_json_safe` lets the consumer skip the search value by value: it must never call
    safe the bytes of a value the search refuses, whichever way the JSON writes it
    (escaped, raw UTF-8, a surrogate passed through, in a key, a huge integer, UTF-16);
    and it must call ordinary notes safe, or it saves nothing."""
    from shared.contracts.base import _unsafe_char, raw_json_safe

    def encodings(value: object) -> list[bytes]:
        return [json.dumps(value).encode(),
                json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
                json.dumps(value).encode("utf-16"), json.dumps(value).encode("utf-32-le")]

    unsafe = [chr(o) for o in range(0x110000) if _unsafe_char(chr(o))]
    assert len(unsafe) > 2000
    for ch in unsafe:
        for raw in encodings({"t": f"a{ch}b"}) + encodings({f"k{ch}": 1}):
            assert not raw_json_safe(raw), (hex(ord(ch)), raw)
    for n in (2**63, -(2**63) - 1, 10**30):
        for raw in encodings({"n": [n]}):
            assert not raw_json_safe(raw), n
    # what they decode to, where the bytes were found safe, passes the search
    for raw in (json.dumps(CONCEPT_NOTE_EXAMPLE).encode(),
                json.dumps(CONCEPT_NOTE_EXAMPLE, ensure_ascii=False).encode(),
                json.dumps({"t": "Côte d'Ivoire — GCM 23 中文 العربية \U0001F30D\t\n",
                            "n": [10**18 - 1, -(10**18 - 1), 1.5e300]},
                           ensure_ascii=False).encode(),
                # escaped non-ASCII text, and raw UTF-8 that shares a lead byte with what is
                # refused (« » ° NBSP: C2; 한: ED; U+FFFD: EF)
                json.dumps({"t": "Côte d'Ivoire — «GCM» 23°\u00a0한\ufffd"}).encode(),
                json.dumps({"t": "Côte d'Ivoire — «GCM» 23°\u00a0한\ufffd"},
                           ensure_ascii=False).encode()):
        assert raw_json_safe(raw)
        refuse_unsafe(json.loads(raw))
    # a harmless escape or a large integer within int64 only costs the search value by value
    for harmless in ({"path": "C:\\bin"}, {"n": 2**63 - 1}):
        assert not raw_json_safe(json.dumps(harmless).encode())
        refuse_unsafe(harmless)


def test_a_note_decoded_from_bytes_found_safe_is_validated_without_the_search() -> None:
    """The validation context that skips the search: the note is the same either way."""
    from shared.contracts.base import RAW_CHECKED

    data = json.loads(json.dumps(CONCEPT_NOTE_EXAMPLE))
    assert (SubmitConceptNote.model_validate(data, context={RAW_CHECKED: True})
            == SubmitConceptNote.model_validate(data))
    # (only bytes found safe may skip it: the context is taken at its word)
    hostile = {**data, "title": "Data\x0b strategy"}
    assert SubmitConceptNote.model_validate(hostile, context={RAW_CHECKED: True})
    with pytest.raises(ValidationError):
        SubmitConceptNote.model_validate(hostile)
