"""apply_update: the in-memory twin of the MongoDB updates our stores batch."""

from __future__ import annotations

from decimal import Decimal

import pytest
from bson import Decimal128

from shared.store import apply_update


def test_an_absent_document_is_upserted_with_set_on_insert() -> None:
    doc = apply_update(None, "p1", {"$setOnInsert": {"status": "new"},
                                    "$set": {"title": "T"}, "$inc": {"n": 2}})
    assert doc == {"_id": "p1", "status": "new", "title": "T", "n": 2}


def test_set_on_insert_leaves_an_existing_document_alone() -> None:
    before = {"_id": "p1", "status": "old"}
    assert apply_update(before, "p1", {"$setOnInsert": {"status": "new"}}) == before


def test_dotted_paths_and_decimal_increments_add_exactly() -> None:
    before = {"_id": "p1", "transferred": {"IOM": Decimal128("0.10")}}
    after = apply_update(before, "p1", {"$inc": {"transferred.IOM": Decimal128("0.20"),
                                                 "transferred.ILO": Decimal128("5")}})
    assert after["transferred"]["IOM"].to_decimal() == Decimal("0.30")
    assert after["transferred"]["ILO"].to_decimal() == Decimal("5")
    assert before["transferred"]["IOM"].to_decimal() == Decimal("0.10")  # a copy


def test_push_appends_and_add_to_set_skips_what_is_there() -> None:
    before = {"_id": "p1", "history": [1], "contributors": ["DEU"]}
    after = apply_update(before, "p1", {
        "$push": {"history": 2},
        "$addToSet": {"contributors": {"$each": ["DEU", "NLD"]}}})
    assert after["history"] == [1, 2] and after["contributors"] == ["DEU", "NLD"]


def test_unset_removes_and_unknown_operators_are_refused() -> None:
    assert apply_update({"_id": 1, "a": 1, "b": 2}, 1, {"$unset": {"a": ""}}) == {
        "_id": 1, "b": 2}
    with pytest.raises(ValueError, match=r"\$rename"):
        apply_update({"_id": 1}, 1, {"$rename": {"a": "b"}})
