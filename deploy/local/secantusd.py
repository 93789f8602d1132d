"""SecantusDB's server (`secantusd-py`), with one workaround: a multi-document transaction's
cursors let go of their pages after each statement.

Why. SecantusDB runs each transaction on its own WiredTiger session and keeps that session's
cursors positioned between statements. A positioned cursor holds a hazard pointer on its page
(WiredTiger may not evict or split a page a hazard pointer is on). When a page of a hot table
(the `_id` index, `secantus_natural_seq`) grows past WiredTiger's in-memory split size, the
next thread to read it tries to evict it, finds the hazard pointer of an open transaction
and sleeps and retries, ten times per page access, while holding the server's global lock;
the transaction holding the pointer cannot go on without that lock. Every client stalls
with the CPUs idle until the evicting statement has crawled through: 4 to 14 s, in about
every third benchmark run (bursts at 9.7-24 programmes/s instead of 35-42).

Seen, not guessed (WiredTiger statistics, per file, ten bursts of 300 programmes): 7.8 to
16.6 s of "page acquire time sleeping" and 12,700 forced evictions of `natural_seq` pages
blocked by hazard pointers per run; with this workaround 0.03 s and none.

What. `Storage.use_user_transaction` (the context every statement of a transaction runs in)
resets the transaction's cursors when the statement ends. `WT_CURSOR::reset` releases the
cursor's position only: the transaction, its snapshot and its writes stay with its session,
and the next statement positions the cursors again (`Storage._cursor` resets a cached cursor
before each use anyway). Nothing of the wire protocol changes.

Applied only to the SecantusDB release it was checked against (`PATCHED_RELEASE`); under any
other the server runs as published and says so on stderr. Drop the workaround when
SecantusDB releases its transactions' pages itself. Test: tests/unit/test_secantusd_launcher.py.

For benchmarks, MPTF_SECANTUS_ACCOUNT=FILE also has the server write where its time goes, per
collection (`account_storage_calls`; tests/bench/spans.py --store).

Users. With MPTF_SECANTUS_USERS=FILE (a JSON object {user: password}, mode 0600) and
MPTF_SECANTUS_GRANTS="user=role-or-database ..." the server requires SCRAM-SHA-256 (`--auth`)
and holds exactly those users before it opens its port (`provision_users`): `root` makes the
user the server's administrator; a database name gives the user a service's roles on it
(`readWrite` on that database and on the same rebuilt from the log, nothing else:
mptf_cli.mongo_users.roles, as a deployment's). SecantusDB has no localhost exception (no way
to make the first user over the wire once `--auth` is on), so they are written into its user
table at start; a password changed in the file is the user's password from the next start.
Passwords never go on a command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

PATCHED_RELEASE = "0.7.0b3"


def release_pages_after_each_statement() -> bool:
    """Install the workaround on SecantusDB's Storage class; False if this release of
    SecantusDB is not the one it was checked against (then nothing is changed)."""
    if version("secantusdb") != PATCHED_RELEASE:
        return False
    from secantus import storage

    original = storage.Storage.use_user_transaction
    if getattr(original, "releases_pages", False):
        return True

    @contextlib.contextmanager
    def use_user_transaction(self: Any, handle: Any) -> Iterator[None]:
        try:
            with original(self, handle):
                yield
        finally:
            for cursor in list(handle.cursors.values()):
                with contextlib.suppress(Exception):  # a closed session's cursor: nothing held
                    cursor.reset()

    use_user_transaction.releases_pages = True  # type: ignore[attr-defined]
    storage.Storage.use_user_transaction = use_user_transaction  # type: ignore[method-assign]
    return True


# the storage engine's calls that statements come down to, each by database and collection
ACCOUNTED = ("insert", "update_matching", "delete_matching", "find_matching")


def account_storage_calls(path: str, every: float = 1.0) -> Callable[[], None]:
    """Where the server's time goes, per collection (benchmarks: MPTF_SECANTUS_ACCOUNT=path;
    tests/bench/spans.py --store). Each call of the storage engine's ACCOUNTED methods (the
    outermost: not those one makes itself) is counted with the CPU time its thread spent in
    it, by method and `database.collection`, written to `path` as JSON (`{key: [calls, cpu
    seconds]}`, totals since start) every `every` seconds. Returns the writer (for tests).
    Nothing of the wire protocol changes; what a statement costs outside these calls (the
    command's parsing, its transaction's commit) is not in it."""
    from secantus import storage

    totals: dict[str, list[float]] = {}
    lock, inside = threading.Lock(), threading.local()

    def counted(name: str, method: Any) -> Any:
        def call(self: Any, *args: Any, **kw: Any) -> Any:
            if getattr(inside, "depth", 0):
                return method(self, *args, **kw)
            inside.depth, began = 1, time.thread_time()
            try:
                return method(self, *args, **kw)
            finally:
                inside.depth = 0
                spent = time.thread_time() - began
                db = args[0] if args else kw.get("db")
                coll = args[1] if len(args) > 1 else kw.get("coll")
                with lock:
                    t = totals.setdefault(f"{name} {db}.{coll}", [0, 0.0])
                    t[0] += 1
                    t[1] += spent

        return call

    for name in ACCOUNTED:
        setattr(storage.Storage, name, counted(name, getattr(storage.Storage, name)))

    def write() -> None:
        with lock:
            out = json.dumps(totals)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(out)
        os.replace(tmp, path)  # a reader never sees half a file

    def keep_writing() -> None:
        while True:
            time.sleep(every)
            with contextlib.suppress(OSError):
                write()

    threading.Thread(target=keep_writing, name="account-storage", daemon=True).start()
    return write


def grants_of(spec: str) -> dict[str, list[dict[str, str]]]:
    """MPTF_SECANTUS_GRANTS ("admin=root svc-intake=mptf_intake") as each user's roles: a
    database gives a service's roles on it (mptf_cli.mongo_users.roles, as a deployment's)."""
    from mptf_cli.mongo_users import roles

    out: dict[str, list[dict[str, str]]] = {}
    for item in spec.split():
        user, sep, what = item.partition("=")
        if not (user and sep and what):
            raise ValueError(f"a grant is user=root or user=database, not {item!r}")
        out[user] = [{"role": "root", "db": "admin"}] if what == "root" else roles(what)
    return out


def provision_users(passwords: dict[str, str], grants: dict[str, list[dict[str, str]]]) -> None:
    """Have the server hold these users (in `admin`, SCRAM-SHA-256, each with its password
    from `passwords` and its roles from `grants`) before it opens its port, and require
    authentication: installed on SecantusDB's server class, run once its storage is open."""
    from secantus import server as secantus_server
    from secantus.auth import SCRAM_SHA_256, derive_credentials

    missing = sorted(u for u in grants if not passwords.get(u))
    if missing:
        raise ValueError(f"no password for {', '.join(missing)}")
    records = [{"_id": f"admin.{user}", "user": user, "db": "admin",
                "credentials": derive_credentials(passwords[user], mechanism=SCRAM_SHA_256,
                                                  username=user).to_doc(),
                "roles": roles, "mechanisms": [SCRAM_SHA_256]}
               for user, roles in grants.items()]
    cls = secantus_server.SecantusDBServer
    original = cls.start

    def start(self: Any) -> None:
        self.require_auth = True
        for record in records:
            self.storage.add_user("admin", record["user"], record, replace=True)
        original(self)

    cls.start = start  # type: ignore[method-assign]
    authorize_bulk_write_namespaces()


def authorize_bulk_write_namespaces() -> None:
    """Check a client-level `bulkWrite` against every namespace it writes, as mongod does.
    SecantusDB (0.7.0b3) authorizes it as a command on `admin` and then writes wherever its
    `nsInfo` says: a service's user could have written into another service's database on
    the same server. Each operation now needs its action (insert, update, remove; an upsert
    insert too) on its namespace's database, else the whole command is refused (13), before
    anything is written. Test: tests/integration/test_store_auth.py."""
    from secantus import commands, rbac

    original = commands._HANDLERS["bulkWrite"]

    def actions(op: Any) -> list[str]:
        if not isinstance(op, dict):
            return []
        if "insert" in op:
            return [rbac.A_INSERT]
        if "update" in op:
            return [rbac.A_UPDATE, *([rbac.A_INSERT] if op.get("upsert") else [])]
        if "delete" in op:
            return [rbac.A_REMOVE]
        return []

    def bulk_write(doc: dict[str, Any], ctx: Any) -> dict[str, Any]:
        auth = ctx.connection_auth
        ns_info, ops = doc.get("nsInfo"), doc.get("ops")
        if (ctx.require_auth and auth is not None and auth.is_authenticated
                and isinstance(ns_info, list) and isinstance(ops, list)):
            needed: set[tuple[str, str]] = set()  # (action, database), each checked once
            for op in ops:
                i = op.get("insert", op.get("update", op.get("delete"))) if isinstance(
                    op, dict) else None
                entry = ns_info[i] if isinstance(i, int) and 0 <= i < len(ns_info) else {}
                ns = entry.get("ns") if isinstance(entry, dict) else None
                if isinstance(ns, str):  # (malformed: the handler answers it)
                    needed.update((action, ns.split(".", 1)[0]) for action in actions(op))
            for action, db in sorted(needed):
                if not rbac.check_privilege(auth.effective_roles, action, target_db=db,
                                            cluster=False, role_resolver=ctx.storage.get_role):
                    return {"ok": 0.0, "code": 13, "codeName": "Unauthorized",
                            "errmsg": f"not authorized on {db} to execute command "
                                      f"(action: {action} in bulkWrite)"}
        return original(doc, ctx)

    commands._HANDLERS["bulkWrite"] = bulk_write


def main() -> int:
    if os.environ.get("MPTF_SECANTUS_USERS"):
        with open(os.environ["MPTF_SECANTUS_USERS"]) as f:
            passwords = json.load(f)
        provision_users(passwords, grants_of(os.environ.get("MPTF_SECANTUS_GRANTS", "")))
    if not release_pages_after_each_statement():
        print(f"secantusd: SecantusDB {version('secantusdb')} is not {PATCHED_RELEASE}; "
              "running it without the page-release workaround", file=sys.stderr)
    if os.environ.get("MPTF_SECANTUS_ACCOUNT"):
        account_storage_calls(os.environ["MPTF_SECANTUS_ACCOUNT"])
    from secantus.cli import main as serve

    sys.argv[0] = "secantusd-py"
    return serve()


if __name__ == "__main__":
    sys.exit(main())
