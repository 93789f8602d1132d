"""The local stack's Mongo servers (deploy/local/stack.sh): by default one SecantusDB per
service, each service's database on its own; `MPTF_MONGO_SERVERS=one` a single server for
all (the test suite's arrangement). Either way a server answers authenticated clients only,
and a service's user may read and write its own database alone. Real servers, started and
stopped by the script."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from tests.support import ROOT

SERVICES = ("intake", "funding", "monitoring", "notifications")
BASE = 26117  # below 32768, apart from the suite's own servers (28117, 29092)


def stack(run_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("MONGODB_URL", "KAFKA_BOOTSTRAP_SERVERS", "MPTF_MONGO_SERVERS")}
    full |= {"MPTF_RUN_DIR": str(run_dir), "MPTF_MONGO_PORT": str(BASE), **env}
    return subprocess.run([str(ROOT / "deploy/local/stack.sh"), *args], env=full,
                          capture_output=True, text=True, timeout=120)


def env_of(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def client(url: str, user: str | None = None, credentials: str = "") -> MongoClient[Any]:
    """A client of `url` as `user` (a password from the stack's file), or anonymous."""
    auth: dict[str, Any] = {} if user is None else {
        "username": user, "password": json.loads(Path(credentials).read_text())[user],
        "authSource": "admin"}
    return MongoClient(url, serverSelectionTimeoutMS=5000, **auth)


def refused(call: Any, code: int) -> None:
    """`call` is answered with the server's error `code` (13 Unauthorized, 18 AuthFailed)."""
    with pytest.raises(OperationFailure) as e:
        call()
    assert e.value.code == code, e.value


def check_credentials_file(path: str) -> dict[str, str]:
    """Every user's password is in one file only its owner may read."""
    creds = json.loads(Path(path).read_text())
    assert set(creds) == {"mptf-admin", *(f"svc-{s}" for s in SERVICES)}
    assert len(set(creds.values())) == len(creds) and all(len(p) >= 24 for p in creds.values())
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    return creds


@pytest.fixture
def run_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    stack(tmp_path, "down")


def test_each_service_gets_a_mongo_server_of_its_own_by_default(run_dir: Path) -> None:
    (run_dir / "mongo" / "data").mkdir(parents=True)  # an earlier run's one server for all
    up = stack(run_dir, "mongo-up")
    assert up.returncode == 0, up.stderr
    # its data is left where it is, and the operator told how to serve it
    assert "MPTF_MONGO_SERVERS=one serves them" in up.stderr
    assert (run_dir / "mongo" / "data").is_dir()
    urls = env_of(stack(run_dir, "env").stdout)
    assert "MONGODB_URL" not in urls  # no one server for all: one per service
    by_service = {s: urls[f"MONGODB_URL_{s.upper()}"] for s in SERVICES}
    assert by_service == {s: f"mongodb://127.0.0.1:{BASE + i}/?directConnection=true"
                          for i, s in enumerate(SERVICES, 1)}
    # a service's own environment names its server (what `mptf rebuild` reads)
    for s in SERVICES:
        assert env_of(stack(run_dir, "env", s).stdout)["MONGODB_URL"] == by_service[s]
    creds = urls["MPTF_MONGODB_CREDENTIALS"]
    check_credentials_file(creds)
    for s in SERVICES:  # the same file names each service's password
        assert env_of(stack(run_dir, "env", s).stdout)["MPTF_MONGODB_CREDENTIALS"] == creds
    # four servers, not four names of one: a document written on one is on no other
    admins = {s: client(u, "mptf-admin", creds) for s, u in by_service.items()}
    own = {s: client(u, f"svc-{s}", creds) for s, u in by_service.items()}
    try:
        own["funding"]["mptf_funding"].probe.insert_one({"_id": "only-here"})
        assert own["funding"]["mptf_funding"].probe.find_one({"_id": "only-here"})
        for s in ("intake", "monitoring", "notifications"):
            assert admins[s]["mptf_funding"].probe.find_one({"_id": "only-here"}) is None
        for s, url in by_service.items():
            # no anonymous client: not a read, not a write, not a list of databases
            with client(url) as anonymous:
                refused(lambda a=anonymous, s=s: a[f"mptf_{s}"].probe.find_one(), 13)
                refused(lambda a=anonymous, s=s: a[f"mptf_{s}"].probe.insert_one({}), 13)
                refused(lambda a=anonymous: a.list_database_names(), 13)
            # no other service's user is known to this server
            other = "intake" if s != "intake" else "funding"
            with client(url, f"svc-{other}", creds) as stranger:
                refused(lambda c=stranger, s=s: c[f"mptf_{s}"].probe.find_one(), 18)
            # a service's user: its own database, nothing else on its own server
            refused(lambda c=own[s]: c["mptf_other"].probe.find_one(), 13)
            refused(lambda c=own[s]: c.list_database_names(), 13)
    finally:
        for c in (*admins.values(), *own.values()):
            c.close()
    status = stack(run_dir, "status").stdout
    for s in SERVICES:
        assert f"mongo-{s}" in status and "running" in status.split(f"mongo-{s}", 1)[1]
    down = stack(run_dir, "down")
    assert down.returncode == 0, down.stderr
    assert all(f"mongo-{s}" in down.stderr for s in SERVICES)  # each stopped by name
    assert "running" not in stack(run_dir, "status").stdout


def test_one_server_for_all_when_asked(run_dir: Path) -> None:
    up = stack(run_dir, "mongo-up", MPTF_MONGO_SERVERS="one")
    assert up.returncode == 0, up.stderr
    assert "serves them" not in up.stderr
    urls = env_of(stack(run_dir, "env", MPTF_MONGO_SERVERS="one").stdout)
    assert urls["MONGODB_URL"] == f"mongodb://127.0.0.1:{BASE}/?directConnection=true"
    assert not any(k.startswith("MONGODB_URL_") for k in urls)
    for s in SERVICES:  # every service on it
        assert env_of(stack(run_dir, "env", s, MPTF_MONGO_SERVERS="one").stdout)[
            "MONGODB_URL"] == urls["MONGODB_URL"]
    creds = urls["MPTF_MONGODB_CREDENTIALS"]
    check_credentials_file(creds)
    with client(urls["MONGODB_URL"], "mptf-admin", creds) as c:
        assert c.admin.command("ping")["ok"] == 1
    with client(urls["MONGODB_URL"]) as anonymous:
        refused(lambda: anonymous["mptf_intake"].probe.find_one(), 13)
    # every service's database on one server, each readable and writable by its service only
    users = {s: client(urls["MONGODB_URL"], f"svc-{s}", creds) for s in SERVICES}
    try:
        for s, c in users.items():
            c[f"mptf_{s}"].probe.insert_one({"_id": s})
            assert c[f"mptf_{s}"].probe.find_one({"_id": s}) == {"_id": s}
            for other in SERVICES:
                if other != s:
                    refused(lambda c=c, o=other: c[f"mptf_{o}"].probe.find_one(), 13)
                    refused(lambda c=c, o=other: c[f"mptf_{o}"].probe.insert_one({}), 13)
                    refused(lambda c=c, o=other: c[f"mptf_{o}"].probe.drop(), 13)
    finally:
        for c in users.values():
            c.close()
    # the passwords are kept across a restart: the services' users still get in
    assert stack(run_dir, "restart-mongo", MPTF_MONGO_SERVERS="one").returncode == 0
    with client(urls["MONGODB_URL"], "svc-intake", creds) as c:
        assert c["mptf_intake"].probe.find_one({"_id": "intake"}) == {"_id": "intake"}


def test_a_given_server_serves_every_service_and_none_is_started(run_dir: Path) -> None:
    given = "mongodb://db.example.org:27017/?replicaSet=rs0"
    up = stack(run_dir, "mongo-up", MONGODB_URL=given)
    assert up.returncode == 0 and "using MongoDB at" in up.stderr
    assert not (run_dir / "pids").exists() or not any((run_dir / "pids").iterdir())
    given_env = env_of(stack(run_dir, "env", MONGODB_URL=given).stdout)
    assert given_env["MONGODB_URL"] == given
    # no credentials are made up for it: the URL (or MPTF_MONGODB_CREDENTIALS) carries them
    assert "MPTF_MONGODB_CREDENTIALS" not in given_env
    assert not (run_dir / "auth" / "mongo-credentials.json").exists()
    assert env_of(stack(run_dir, "env", "notifications", MONGODB_URL=given).stdout)[
        "MONGODB_URL"] == given


def test_unknown_arrangements_and_services_are_refused(run_dir: Path) -> None:
    bad = stack(run_dir, "env", MPTF_MONGO_SERVERS="two")
    assert bad.returncode == 1 and "one or per-service" in bad.stderr and not bad.stdout
    nope = stack(run_dir, "env", "billing")
    assert nope.returncode == 1 and "no service billing" in nope.stderr and not nope.stdout
