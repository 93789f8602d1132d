"""mptf_cli.mongo_users' files: the credentials file keeps its passwords, and `--split` gives
each container what it may see and nothing more (docker-compose mounts these as secrets)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from mptf_cli.mongo_users import ADMIN, ensure_credentials, plan, split


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_credentials_are_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    first = ensure_credentials(path)
    assert set(first) == {ADMIN, "svc-intake", "svc-funding", "svc-monitoring",
                          "svc-notifications"}
    assert len(set(first.values())) == len(first) and min(map(len, first.values())) >= 24
    assert mode(path) == 0o600
    assert ensure_credentials(path) == first


def test_split_gives_each_service_its_own_password_alone(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path / "creds.json")
    files = split(creds, tmp_path / "secrets")
    for user in plan():
        own = tmp_path / "secrets" / f"mongo-{user.removeprefix('svc-')}.json"
        assert json.loads(own.read_text()) == {user: creds[user]}
    assert (tmp_path / "secrets/mongo-admin-password").read_text() == creds[ADMIN]
    key = (tmp_path / "secrets/mongo-keyfile").read_text().strip()
    assert len(key) == 756 and re.fullmatch(r"[A-Za-z0-9+/=]+", key)  # mongod's key alphabet
    assert all(mode(f) == 0o600 for f in files)
    # the replica set's key is kept across runs (its members must agree)
    split(creds, tmp_path / "secrets")
    assert (tmp_path / "secrets/mongo-keyfile").read_text().strip() == key


def test_a_tag_names_an_isolated_deployments_users_and_databases() -> None:
    assert plan("t1") == {"t1.svc-intake": "t1_intake", "t1.svc-funding": "t1_funding",
                          "t1.svc-monitoring": "t1_monitoring",
                          "t1.svc-notifications": "t1_notifications"}
