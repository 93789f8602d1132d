"""deploy/local/secantusd.py: the local stack's SecantusDB server releases a multi-document
transaction's pages after each statement (so that WiredTiger can split a hot page while the
transaction is open: the benchmark's 4-14 s stalls), and a transaction still reads its own
writes, keeps them from others until it commits, and commits them.

SecantusDB's storage engine is driven in-process here (no server): the workaround is a
change to it, and what it changes (a cursor's position) is not visible over the wire."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from secantus import storage

ROOT = Path(__file__).resolve().parents[2]


def launcher() -> Any:
    spec = importlib.util.spec_from_file_location(
        "secantusd_launcher", ROOT / "deploy/local/secantusd.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # whatever a test installs on the Storage class is undone after it
    monkeypatch.setattr(storage.Storage, "use_user_transaction",
                        storage.Storage.use_user_transaction)
    st = storage.Storage(str(tmp_path / "data"))
    st.insert("db", "things", [{"_id": f"t{i:03}", "n": i} for i in range(200)])
    yield st
    st.close()


def positioned(cursor: Any) -> bool:
    """Whether a cursor holds a position (and so a hazard pointer on its page). Asking an
    unpositioned cursor for its key is an error that dooms its transaction: callers abort."""
    try:
        cursor.get_key()
    except Exception:
        return False
    return True


def one_statement(st: Any) -> Any:
    handle = st.begin_user_transaction()
    with st.use_user_transaction(handle):
        st.insert("db", "things", [{"_id": "new", "n": -1}])
        assert st.find_matching("db", "things", {"_id": "t042"}) == [{"_id": "t042", "n": 42}]
    return handle


def test_as_published_a_transaction_keeps_pages_between_statements(engine: Any) -> None:
    """What the workaround is for: without it, cursors of an open transaction stay on
    their pages after a statement (this test fails once SecantusDB releases them itself,
    and then the workaround can go)."""
    handle = one_statement(engine)
    assert any(positioned(c) for c in handle.cursors.values())
    engine.abort_user_transaction(handle)


def test_with_the_workaround_no_cursor_of_an_open_transaction_holds_a_page(engine: Any) -> None:
    assert launcher().release_pages_after_each_statement()
    handle = one_statement(engine)
    assert handle.cursors  # the statement used cursors...
    assert not any(positioned(c) for c in handle.cursors.values())  # ...and let go of them
    engine.abort_user_transaction(handle)


def test_with_the_workaround_a_transaction_reads_its_writes_and_commits_them(
        engine: Any) -> None:
    module = launcher()
    assert module.release_pages_after_each_statement()
    assert module.release_pages_after_each_statement()  # installing twice wraps once
    handle = engine.begin_user_transaction()
    with engine.use_user_transaction(handle):
        engine.insert("db", "things", [{"_id": "new", "n": -1}])
    with engine.use_user_transaction(handle):  # the next statement: its own write is there
        assert engine.find_matching("db", "things", {"_id": "new"}) == [{"_id": "new", "n": -1}]
        engine.update_matching("db", "things", {"_id": "t007"}, {"$set": {"n": 70}})
    assert engine.find_matching("db", "things", {"_id": {"$in": ["new", "t007"]}}) == [
        {"_id": "t007", "n": 7}]  # others see nothing before the commit
    engine.commit_user_transaction(handle)
    assert sorted(engine.find_matching("db", "things", {"_id": {"$in": ["new", "t007"]}}),
                  key=lambda d: d["_id"]) == [{"_id": "new", "n": -1}, {"_id": "t007", "n": 70}]


def test_under_another_release_of_secantusdb_nothing_is_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    module = launcher()
    monkeypatch.setattr(module, "version", lambda name: "0.8.0")
    before = storage.Storage.use_user_transaction
    assert not module.release_pages_after_each_statement()
    assert storage.Storage.use_user_transaction is before


def test_accounting_counts_each_statement_once_by_collection_with_its_cpu(
        engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MPTF_SECANTUS_ACCOUNT (benchmarks): each storage call counted by method and
    collection with its thread's CPU time, the calls a call makes itself not again; the
    documents it returns and changes are the engine's own."""
    module = launcher()
    for name in module.ACCOUNTED:  # undone after the test, as the fixture's workaround is
        monkeypatch.setattr(storage.Storage, name, getattr(storage.Storage, name))
    out = tmp_path / "account.json"
    write = module.account_storage_calls(str(out), every=3600)
    engine.insert("db", "other", [{"_id": 1}, {"_id": 2}])
    for i in range(3):
        engine.update_matching("db", "things", {"_id": f"t{i:03}"}, {"$inc": {"n": 1000}})
    assert engine.find_matching(db="db", coll="things", filter={"_id": "t001"}) == [
        {"_id": "t001", "n": 1001}]
    engine.delete_matching("db", "other", {"_id": 1})
    write()
    got = json.loads(out.read_text())
    assert {k: v[0] for k, v in got.items()} == {
        "insert db.other": 1, "update_matching db.things": 3,
        "find_matching db.things": 1, "delete_matching db.other": 1}
    assert all(v[1] >= 0 for v in got.values())
    assert got["update_matching db.things"][1] > 0  # three updates take some CPU
