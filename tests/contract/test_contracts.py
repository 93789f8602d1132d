"""The contract registry: versioned types, one owner per topic, money without floats, and
the generated AsyncAPI document pinned so that a silent contract change fails CI.

After an intended change: `.venv/bin/python -m shared.asyncapi > docs/asyncapi.json`, and bump
the type's version if the change is not additive."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from shared import topics
from shared.asyncapi import document
from shared.contracts import REGISTRY
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote

ROOT = Path(__file__).resolve().parents[2]


def test_every_type_is_namespaced_and_versioned() -> None:
    for t in REGISTRY:
        assert re.fullmatch(r"org\.migrationmptf\.[a-z-]+\.[a-z-]+\.v\d+", t), t


def test_each_fact_topic_has_one_writer() -> None:
    owners: dict[str, set[str]] = {}
    for c in REGISTRY.values():
        owners.setdefault(c.topic, set()).add(c.owner)
    assert all(len(o) == 1 for o in owners.values()), owners
    assert owners[topics.PROGRAMMES] == {"intake"}
    assert owners[topics.NOTIFICATIONS] == {"notifications"}


def test_every_example_satisfies_the_contract_it_illustrates() -> None:
    for t, c in REGISTRY.items():
        event = c.model.model_validate(c.example)
        assert event.TYPE == t  # type: ignore[attr-defined]
        # and says what it says again after a trip over the wire
        assert c.model.model_validate_json(event.model_dump_json()) == event, t


def test_money_travels_as_exact_strings() -> None:
    note = SubmitConceptNote.model_validate(CONCEPT_NOTE_EXAMPLE)
    assert note.punos[0].budget_usd == Decimal("1200000.00")
    wire = json.loads(note.model_dump_json())
    assert wire["punos"][0]["budget_usd"] == "1200000.00"


def test_non_finite_and_over_precise_money_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    for bad in ("NaN", "Infinity", "1.001", "1e30"):
        body = {**CONCEPT_NOTE_EXAMPLE,
                "punos": [{"entity": "IOM", "convening": True, "budget_usd": bad}]}
        with pytest.raises(ValidationError):
            SubmitConceptNote.model_validate(body)


def test_unknown_fields_in_an_inbound_note_are_refused() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE, "migrant_names": ["x"]})


def test_asyncapi_lists_every_contract_with_its_example() -> None:
    doc = document()
    messages = doc["components"]["messages"]
    assert {m["title"] for m in messages.values()} == set(REGISTRY)
    for m in messages.values():
        assert m["examples"][0]["payload"] == REGISTRY[m["title"]].example
    # inbound kinds are one topic per entity: mptf.inbound.<kind>.{entity}
    assert {c["address"] for c in doc["channels"].values()} == {
        f"{t}.{{entity}}" if t in topics.INBOUND else t
        for c in REGISTRY.values() for t in c.topics}


def test_generated_asyncapi_matches_the_committed_document() -> None:
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert document() == committed, (
        "the event contracts changed: regenerate docs/asyncapi.json "
        "(python -m shared.asyncapi > docs/asyncapi.json) and version the change")


def test_what_input_models_refuse_in_text_is_in_their_documents() -> None:
    """The control characters and non-characters every input model refuses
    (shared.contracts.base.refuse_unsafe) are stated in the documents, as a pattern on each
    of its strings that has no narrower rule: the AsyncAPI payload of each inbound kind, and
    an HTTP body alike (tests/contract/test_openapi.py). The pattern and the model agree."""
    from pydantic import ValidationError

    from shared.contracts.base import SAFE_TEXT

    inbound = [c for c in REGISTRY.values() if c.inbound]
    assert inbound
    safe = re.compile(SAFE_TEXT)
    for bad in ("a\x00b", "\x1b[31m", "c1 \x85", "\uffff"):
        assert not safe.match(bad), repr(bad)
    for ok in ("Plain text, with a tab\tand lines\r\n", "Ciudad de México — 中文 😀"):
        assert safe.match(ok), repr(ok)
    for c in inbound:
        props = c.model.model_json_schema()["properties"]
        free = [name for name, p in props.items()
                if p.get("type") == "string" and p.get("pattern") == SAFE_TEXT]
        assert free, c.type
        for name, p in props.items():  # no string without a rule
            if p.get("type") == "string":
                assert {"pattern", "format", "enum", "const"} & set(p), (c.type, name)
        for name in free:
            with pytest.raises(ValidationError):
                c.model.model_validate({**c.example, name: "Migration\x00 data"})
