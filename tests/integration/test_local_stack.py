"""The local stack's Mongo servers (deploy/local/stack.sh): by default one SecantusDB per
service, each service's database on its own; `MPTF_MONGO_SERVERS=one` a single server for
all (the test suite's arrangement). Real servers, started and stopped by the script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pymongo import MongoClient

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
    # four servers, not four names of one: a document written on one is on no other
    clients = {s: MongoClient(u, serverSelectionTimeoutMS=5000) for s, u in by_service.items()}
    try:
        clients["funding"]["mptf_funding"].probe.insert_one({"_id": "only-here"})
        assert clients["funding"]["mptf_funding"].probe.find_one({"_id": "only-here"})
        for s in ("intake", "monitoring", "notifications"):
            assert clients[s]["mptf_funding"].probe.find_one({"_id": "only-here"}) is None
    finally:
        for c in clients.values():
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
    with MongoClient(urls["MONGODB_URL"], serverSelectionTimeoutMS=5000) as c:
        assert c.admin.command("ping")["ok"] == 1


def test_a_given_server_serves_every_service_and_none_is_started(run_dir: Path) -> None:
    given = "mongodb://db.example.org:27017/?replicaSet=rs0"
    up = stack(run_dir, "mongo-up", MONGODB_URL=given)
    assert up.returncode == 0 and "using MongoDB at" in up.stderr
    assert not (run_dir / "pids").exists() or not any((run_dir / "pids").iterdir())
    assert env_of(stack(run_dir, "env", MONGODB_URL=given).stdout)["MONGODB_URL"] == given
    assert env_of(stack(run_dir, "env", "notifications", MONGODB_URL=given).stdout)[
        "MONGODB_URL"] == given


def test_unknown_arrangements_and_services_are_refused(run_dir: Path) -> None:
    bad = stack(run_dir, "env", MPTF_MONGO_SERVERS="two")
    assert bad.returncode == 1 and "one or per-service" in bad.stderr and not bad.stdout
    nope = stack(run_dir, "env", "billing")
    assert nope.returncode == 1 and "no service billing" in nope.stderr and not nope.stdout
