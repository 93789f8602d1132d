"""JSON from outside nested deeper than MAX_DEPTH is refused before it is decoded, wherever
it comes in: a Kafka record's value (dead-lettered as malformed, not a RecursionError at
every delivery), a dead letter's redaction, a list cursor. (HTTP bodies: the integration
and hostile-input tests.)"""

from __future__ import annotations

import json

import pytest

from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.envelope import Envelope, decode
from shared.errors import BadRequest, PermanentMessageError
from shared.jsondepth import MAX_DEPTH, too_deep
from shared.paging import decode as decode_cursor
from shared.paging import encode as encode_cursor
from shared.privacy import redacted_bytes


def arrays(n: int) -> bytes:
    return b"[" * n + b"]" * n


def objects(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


def note_with(extra: bytes) -> bytes:
    """The example concept note with one more field holding `extra` (raw JSON)."""
    return json.dumps(CONCEPT_NOTE_EXAMPLE).encode()[:-1] + b', "x": ' + extra + b"}"


@pytest.mark.parametrize("make", [arrays, objects])
def test_nesting_up_to_the_limit_passes_and_one_level_more_does_not(make) -> None:  # type: ignore[no-untyped-def]
    assert not too_deep(make(MAX_DEPTH))
    assert too_deep(make(MAX_DEPTH + 1))
    assert too_deep(make(100_000))
    # mixed, and inside a document: the depth counts from the top
    assert too_deep(b'{"a": [' + make(MAX_DEPTH - 1) + b"]}")
    assert not too_deep(b'{"a": [' + make(MAX_DEPTH - 2) + b"]}")


def test_brackets_inside_strings_do_not_nest() -> None:
    deep_text = json.dumps({"t": "[" * 500 + '\\"{{{' + "{" * 500}).encode()
    assert not too_deep(deep_text)
    assert too_deep(b'["\\"[", ' + arrays(MAX_DEPTH) + b"]")  # an escaped quote ends nothing


def test_ordinary_messages_are_not_too_deep_however_many_brackets_they_have() -> None:
    assert not too_deep(json.dumps(CONCEPT_NOTE_EXAMPLE).encode())
    many = json.dumps({"items": [{"a": [1, {"b": 2}]} for _ in range(500)]}).encode()
    assert many.count(b"[") + many.count(b"{") > MAX_DEPTH  # (so each bracket is followed)
    assert not too_deep(many)


@pytest.mark.parametrize("extra", [arrays(MAX_DEPTH + 1), objects(2_000), arrays(60_000)])
def test_a_deep_record_is_named_malformed_not_a_recursion_error(extra: bytes) -> None:
    headers = Envelope(source="urn:mptf:entity:IOM", type=SubmitConceptNote.TYPE).headers()
    with pytest.raises(PermanentMessageError) as e:
        decode(headers, note_with(extra), max_bytes=1 << 20)
    assert e.value.reason == "malformed-json"
    assert f"deeper than {MAX_DEPTH}" in e.value.detail


def test_a_record_nested_to_the_limit_is_decoded() -> None:
    headers = Envelope(source="urn:mptf:entity:IOM", type=SubmitConceptNote.TYPE).headers()
    _, data = decode(headers, note_with(arrays(MAX_DEPTH - 1)), max_bytes=1 << 20)
    assert data["title"] == CONCEPT_NOTE_EXAMPLE["title"]


def test_a_deep_dead_letter_is_searched_as_text() -> None:
    value = b'{"summary": "Call Rosa on +33 6 12 34 56 78", "x": ' + arrays(50_000) + b"}"
    assert redacted_bytes(value) == b'"[redacted: personal data]"'
    assert redacted_bytes(b'{"x": ' + arrays(50_000) + b"}") is None


def test_a_deep_cursor_is_a_bad_request() -> None:
    import base64

    assert decode_cursor(encode_cursor(["a", 1]), 2) == ["a", 1]
    cursor = base64.urlsafe_b64encode(b"[" + arrays(5_000) + b", 1]").decode().rstrip("=")
    with pytest.raises(BadRequest):
        decode_cursor(cursor, 2)
