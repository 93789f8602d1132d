"""mptf_cli.mongo_users, the Mongo users of a deployment (docker-compose's mongo-init and the
Kubernetes Job run it): each service's user may read and write its own database alone, and
running it again changes nothing but what the credentials file says. Run as a process, as
its containers do, against the suite's real server (a tagged set of users, so that the
server's own are left alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from mptf_cli.mongo_users import ensure_user, plan
from tests.support import unique


def without_user(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('@', 1)[-1]}"


def cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "mptf_cli.mongo_users", *args],
                         env={**os.environ, "MONGODB_URL": without_user(os.environ["MONGODB_URL"])},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_apply_gives_each_service_its_own_database_alone_and_runs_again_safely(
        tmp_path: Path) -> None:
    tag = unique("mu")
    admin, creds = f"{tag}.admin", tmp_path / "mongo-credentials.json"
    cli("credentials", str(creds), "--tag", tag, "--admin", admin)
    passwords = json.loads(creds.read_text())
    assert set(passwords) == {admin, *plan(tag)}
    # this deployment's administrator, made by the server's (the harness)
    with MongoClient(os.environ["MONGODB_URL"]) as root:
        ensure_user(root, admin, passwords[admin], [{"role": "root", "db": "admin"}])

    # a set that already exists (SecantusDB is one; a new mongod's is initiated) is left as is
    first = cli("apply", str(creds), "--tag", tag, "--admin", admin, "--replica-set", "rs0")
    assert first == {"initiated": False, "users": {u: "created" for u in plan(tag)}}
    again = cli("apply", str(creds), "--tag", tag, "--admin", admin)
    assert again["users"] == {u: "updated" for u in plan(tag)}

    url = without_user(os.environ["MONGODB_URL"])
    for user, database in plan(tag).items():
        with MongoClient(url, username=user, password=passwords[user], authSource="admin",
                         authMechanism="SCRAM-SHA-256") as c:
            c[database].probe.insert_one({"_id": user})
            assert c[database].probe.find_one({"_id": user}) == {"_id": user}
            theirs = c[next(d for d in plan(tag).values() if d != database)].probe
            for refused in (lambda: theirs.find_one({}),  # noqa: B023 (called at once)
                            lambda: theirs.insert_one({"_id": "not-mine"}),  # noqa: B023
                            c.list_database_names):
                with pytest.raises(OperationFailure) as e:
                    refused()
                assert e.value.code == 13


def test_a_changed_password_is_the_users_password_after_apply(tmp_path: Path) -> None:
    tag = unique("mu")
    admin, creds = f"{tag}.admin", tmp_path / "mongo-credentials.json"
    cli("credentials", str(creds), "--tag", tag, "--admin", admin)
    passwords = json.loads(creds.read_text())
    with MongoClient(os.environ["MONGODB_URL"]) as root:
        ensure_user(root, admin, passwords[admin], [{"role": "root", "db": "admin"}])
    cli("apply", str(creds), "--tag", tag, "--admin", admin)
    user = f"{tag}.svc-funding"
    old, passwords[user] = passwords[user], "rotated-" + passwords[user]
    creds.write_text(json.dumps(passwords))
    cli("apply", str(creds), "--tag", tag, "--admin", admin)
    url = without_user(os.environ["MONGODB_URL"])
    with MongoClient(url, username=user, password=passwords[user], authSource="admin") as c:
        c[f"{tag}_funding"].probe.insert_one({"_id": "rotated"})
    with MongoClient(url, username=user, password=old, authSource="admin",
                     serverSelectionTimeoutMS=3000) as c:
        with pytest.raises(OperationFailure) as e:
            c[f"{tag}_funding"].probe.find_one({})
        assert e.value.code == 18  # AuthenticationFailed
