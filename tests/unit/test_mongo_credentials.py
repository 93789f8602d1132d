"""Who a service is to its Mongo server (shared.settings.ServiceSettings.mongo_options) and
which users the local stack's SecantusDB servers hold (deploy/local/secantusd.py, grants_of).
That the servers refuse anyone else is proven over the wire: tests/integration/
test_store_auth.py and test_local_stack.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import ServiceSettings
from tests.unit.test_secantusd_launcher import launcher


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MONGODB_USERNAME", "MPTF_MONGODB_USERNAME", "MONGODB_PASSWORD",
                 "MPTF_MONGODB_PASSWORD", "MPTF_MONGODB_CREDENTIALS", "MONGODB_URL",
                 "MPTF_MONGODB_URL"):
        monkeypatch.delenv(name, raising=False)


def credentials_file(tmp_path: Path, users: dict[str, str]) -> str:
    path = tmp_path / "mongo-credentials.json"
    path.write_text(json.dumps(users))
    return str(path)


def test_without_a_password_the_client_uses_what_the_url_says() -> None:
    s = ServiceSettings(service_name="funding",
                        mongodb_url="mongodb://ops:secret@db:27017/?authSource=admin")
    assert s.mongo_options() == {}


def test_the_service_user_is_its_own_and_its_password_comes_from_the_file(
        tmp_path: Path) -> None:
    path = credentials_file(tmp_path, {"svc-funding": "f-pass", "svc-intake": "i-pass"})
    s = ServiceSettings(service_name="funding", mongodb_credentials=path)
    assert s.mongo_user == "svc-funding"
    assert s.mongo_options() == {"username": "svc-funding", "password": "f-pass",
                                 "authMechanism": "SCRAM-SHA-256", "authSource": "admin"}


def test_a_password_given_outright_wins_over_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = credentials_file(tmp_path, {"svc-funding": "from-file"})
    monkeypatch.setenv("MONGODB_USERNAME", "funding-ops")
    monkeypatch.setenv("MONGODB_PASSWORD", "from-env")
    s = ServiceSettings(service_name="funding", mongodb_credentials=path)
    assert s.mongo_options()["username"] == "funding-ops"
    assert s.mongo_options()["password"] == "from-env"
    assert "from-env" not in repr(s)  # a secret, never printed with the settings


def test_the_urls_own_auth_source_is_kept(tmp_path: Path) -> None:
    s = ServiceSettings(service_name="intake", mongodb_password="pw",
                        mongodb_url="mongodb://db:27017/?authSource=users")
    assert "authSource" not in s.mongo_options()


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"svc-intake": "x"})])
def test_an_unreadable_file_or_a_missing_user_gives_no_credentials(
        tmp_path: Path, content: str | None) -> None:
    # the server then refuses the client (code 13), which names what is wrong; a password
    # is never guessed
    path = tmp_path / "creds.json"
    if content is not None:
        path.write_text(content)
    s = ServiceSettings(service_name="funding", mongodb_credentials=str(path))
    assert s.mongo_options() == {}


def test_grants_give_root_or_read_write_on_a_services_own_database_and_its_rebuild() -> None:
    grants = launcher().grants_of("mptf-admin=root svc-intake=mptf_intake svc-funding=mptf_funding")
    assert grants == {
        "mptf-admin": [{"role": "root", "db": "admin"}],
        "svc-intake": [{"role": "readWrite", "db": "mptf_intake"},
                       {"role": "readWrite", "db": "mptf_intake_rebuilt"}],
        "svc-funding": [{"role": "readWrite", "db": "mptf_funding"},
                        {"role": "readWrite", "db": "mptf_funding_rebuilt"}],
    }


@pytest.mark.parametrize("spec", ["svc-intake", "=mptf_intake", "svc-intake="])
def test_a_malformed_grant_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="a grant is"):
        launcher().grants_of(spec)


def test_every_granted_user_needs_a_password() -> None:
    with pytest.raises(ValueError, match="no password for svc-intake"):
        launcher().provision_users({"mptf-admin": "pw"}, launcher().grants_of(
            "mptf-admin=root svc-intake=mptf_intake"))
