"""apply_update: the in-memory twin of the MongoDB updates our stores batch."""

from __future__ import annotations

from decimal import Decimal

import pytest
from bson import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _deep_apply(doc, key, update):  # type: ignore[no-untyped-def]
    """The reference: the same operators applied to a deep copy (what apply_update did
    before it copied only the updated paths)."""
    import copy

    out = copy.deepcopy(doc) if doc is not None else {"_id": key}
    for op, fields in update.items():
        if op == "$setOnInsert" and doc is not None:
            continue
        for path, value in fields.items():
            *head, last = path.split(".")
            parent = out
            for k in head:
                parent = parent.setdefault(k, {})
            if op in ("$set", "$setOnInsert"):
                parent[last] = copy.deepcopy(value)
            elif op == "$unset":
                parent.pop(last, None)
            elif op == "$inc":
                parent[last] = parent.get(last, 0) + value
            else:
                items = value["$each"] if isinstance(value, dict) and "$each" in value else [
                    value]
                current = parent.setdefault(last, [])
                for item in items:
                    if op == "$push" or item not in current:
                        current.append(copy.deepcopy(item))
    return out


_names = st.sampled_from(["a", "b", "c"])
_leaf = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none())
_tree = st.recursive(
    _leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                   st.dictionaries(_names, inner, max_size=3)), max_leaves=12)


@st.composite
def _doc_and_update(draw):  # type: ignore[no-untyped-def]
    """A document with nested dicts and lists, and an update whose paths the server would
    accept on it (containers where the path goes through one, numbers where it adds)."""
    doc = {"_id": 1, **draw(st.dictionaries(_names, _tree, max_size=3))}
    update: dict = {}
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["$set", "$unset", "$inc", "$push", "$addToSet",
                                   "$setOnInsert"]))
        path, node, ok = [], doc, True
        levels = draw(st.integers(1, 3))
        for depth in range(levels):
            name = draw(_names)
            path.append(name)
            last = depth == levels - 1 or draw(st.booleans())
            present = name in node
            child = node.get(name)
            if last:
                if op == "$inc" and present and not isinstance(child, int):
                    ok = False
                if op in ("$push", "$addToSet") and present and not isinstance(child, list):
                    ok = False
                break
            if present and not isinstance(child, dict):
                ok = False
                break
            node = child if present else {}
        dotted = ".".join(path)
        if not ok or any(dotted.startswith(p) or p.startswith(dotted)
                         for ops in update.values() for p in ops):
            continue  # the server refuses conflicting paths in one update
        value = (draw(st.integers(-3, 3)) if op == "$inc"
                 else {"$each": draw(st.lists(_tree, max_size=3))} if op == "$addToSet"
                 else draw(_tree))
        update.setdefault(op, {})[dotted] = value
    return doc, update


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_doc_and_update())
def test_copying_only_the_updated_paths_gives_the_same_document_and_leaves_the_input_alone(
        case) -> None:  # type: ignore[no-untyped-def]
    import copy

    doc, update = case
    before = copy.deepcopy(doc)
    after = apply_update(doc, 1, update)
    assert after == _deep_apply(before, 1, update)
    assert doc == before  # the input (a cached version a savepoint may return to) unchanged
    again = apply_update(after, 1, update)  # and an update of the result leaves it alone
    snapshot = copy.deepcopy(after)
    assert again == _deep_apply(snapshot, 1, update) and after == snapshot


def test_a_copied_document_shares_nothing_that_can_change() -> None:
    from collections import OrderedDict
    from datetime import UTC, datetime

    from shared.store import copy_tree

    when = datetime(2026, 1, 1, tzinfo=UTC)
    odd = bytearray(b"x")  # a mutable value of no document type: copied too
    doc = {"_id": "p1", "lines": [{"usd": Decimal128("1.50"), "tags": ["a"]}], "at": when,
           "raw": odd, "n": 3, "none": None, "ordered": OrderedDict(tags=["c"]),
           "flag": True}
    copied = copy_tree(doc)
    assert copied == doc
    copied["lines"][0]["tags"].append("b")
    copied["lines"].append({})
    copied["raw"].extend(b"y")
    copied["ordered"]["tags"].append("d")  # a dict of another type: copied all the way down
    assert doc["lines"] == [{"usd": Decimal128("1.50"), "tags": ["a"]}] and odd == b"x"
    assert doc["ordered"] == {"tags": ["c"]} and copied["flag"] is True
    assert copied["at"] is when  # immutable values are shared, as deepcopy shares them


def test_counters_are_raised_in_place_and_compared_by_value() -> None:
    """An aggregate's change is the `$inc` of its dotted counters (money as Decimal128); a
    shard is compared by its counters' values: one brought back to zero is as one never
    raised, whatever the order of the changes."""
    from shared.store import Aggregate, decimals

    assert Aggregate.increments({"status.approved.programmes": -1,
                                 "status.approved.allocated_usd": Decimal("-10.50")}) == {
        "c.status.approved.programmes": -1,
        "c.status.approved.allocated_usd": Decimal128("-10.50")}
    raised_and_back = {"_id": 3, "c": {"status": {
        "approved": {"programmes": 0, "allocated_usd": Decimal128("0.00")},
        "on-going": {"programmes": 2, "allocated_usd": Decimal128("21.00")}}}}
    never_raised = {"_id": 3, "c": {"status": {
        "on-going": {"allocated_usd": Decimal128("21.0"), "programmes": 2}}}}
    assert decimals(Aggregate.stored(raised_and_back)) == decimals(
        Aggregate.stored(never_raised)) == {
        "_id": 3, "c": {"status": {"on-going": {"allocated_usd": Decimal(21),
                                                "programmes": 2}}}}


def test_matches_decides_what_the_server_would_for_scalar_comparisons() -> None:
    from datetime import UTC, datetime

    from shared.store import matches

    doc = {"_id": "p", "pipeline": "waiting", "n": Decimal128("50.00"), "flag": True,
           "at": datetime(2026, 12, 1, tzinfo=UTC), "sub": {"x": 1}}
    assert matches(doc, {"pipeline": "waiting", "n": 50}) is True  # 50.00 == 50
    assert matches(doc, {"missing": None, "gone": {"$ne": "waiting"}}) is True
    assert matches(doc, {"missing": {"$gt": 0}}) is False  # null is not a number
    assert matches(doc, {"flag": 1}) is False  # a boolean is not a number
    assert matches(doc, {"n": {"$gt": "a"}}) is False  # compared within a type only
    assert matches(doc, {"sub.x": {"$in": [1, 2]}, "n": {"$nin": [1]}}) is True
    assert matches(doc, {"at": {"$lt": datetime(2026, 12, 2, tzinfo=UTC)}}) is True
    # what it cannot decide, it leaves to the server
    assert matches({"tags": ["x"]}, {"tags": "x"}) is None
    assert matches(doc, {"$or": [{"n": 1}]}) is None
    assert matches(doc, {"n": {"$exists": True}}) is None
    assert matches(doc, {"sub": {"x": 1}}) is None


def test_sort_keys_follow_the_servers_order_of_types() -> None:
    from datetime import UTC, datetime

    from shared.store import sort_key

    docs = [{"_id": 5, "k": "a"}, {"_id": 1, "k": 2}, {"_id": 2}, {"_id": 3, "k": True},
            {"_id": 4, "k": datetime(2026, 1, 1, tzinfo=UTC)}, {"_id": 6, "k": Decimal("1.5")}]
    ordered = sorted(docs, key=lambda d: sort_key(d, [("k", 1), ("_id", 1)]))  # type: ignore
    assert [d["_id"] for d in ordered] == [2, 6, 1, 5, 3, 4]
    assert sort_key(docs[0], [("k", -1)]) is None  # descending: left to the server
    assert sort_key({"k": [1]}, [("k", 1)]) is None
    assert sort_key({"k": [1]}, [("k", 1)], server=True) is not None
