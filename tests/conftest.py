"""Suite-wide fixtures: the real infrastructure (started by the project's own stack script on
test ports, stopped at the end) unless KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL name servers that
already exist."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_RUN_DIR = ROOT / ".run" / "test"
TEST_ENV = {
    "MPTF_RUN_DIR": str(TEST_RUN_DIR),
    "MPTF_KAFKA_PORT": os.environ.get("MPTF_TEST_KAFKA_PORT", "29092"),
    "MPTF_KAFKA_CONTROLLER_PORT": os.environ.get("MPTF_TEST_KAFKA_CONTROLLER_PORT", "29093"),
    "MPTF_MONGO_PORT": os.environ.get("MPTF_TEST_MONGO_PORT", "28117"),
    "MPTF_PYTHON": sys.executable,
    # one SecantusDB for every service's database (the stack runs one per service by
    # default): tests read several services' databases through one MONGODB_URL
    "MPTF_MONGO_SERVERS": "one",
}


# HTTP identity: the suite signs its own tokens (tests.support.bearer) with a key made here;
# every service it builds or starts verifies them with the public half (production mode)
from shared.auth import make_keys  # noqa: E402

SIGNING_KEY, JWKS = make_keys(TEST_RUN_DIR / "auth")
os.environ["MPTF_AUTH_JWKS"] = str(JWKS)
os.environ["MPTF_AUTH_SIGNING_KEY"] = str(SIGNING_KEY)
os.environ.pop("MPTF_AUTH_MODE", None)


# whether the suite runs its own servers (else KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL named
# existing ones, which the suite must never stop or restart)
OWN_SERVERS = not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URL"))


from tests.support import mongo_admin_url  # noqa: E402


def _stack(cmd: str, *args: str) -> str:
    env = {**os.environ, **TEST_ENV}
    if OWN_SERVERS:  # the endpoints exported below are ours, not external ones
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        env.pop("MONGODB_URL", None)
        env.pop("MPTF_KAFKA_CREDENTIALS", None)
        env.pop("MPTF_MONGODB_CREDENTIALS", None)
    out = subprocess.run([str(ROOT / "deploy/local/stack.sh"), cmd, *args], env=env, check=True,
                         capture_output=True, text=True, timeout=600)
    return out.stdout + out.stderr


@pytest.fixture(scope="session")
def infra() -> dict[str, str]:
    """The endpoints of a real Kafka broker and a real MongoDB wire-protocol server."""
    _stack("down")  # whatever an interrupted run left behind
    # the servers this suite starts begin empty: old topics would slow the broker's start
    for sub in ("kafka", "kafka-2", "kafka-3", "mongo"):
        shutil.rmtree(TEST_RUN_DIR / sub, ignore_errors=True)
    try:
        _stack("infra-up")
    except subprocess.CalledProcessError as e:
        _stack("down")  # what did start is stopped, not left holding the ports
        raise RuntimeError(
            f"could not start the test infrastructure:\n{e.stdout}\n{e.stderr}") from e
    try:
        env = dict(line.split("=", 1) for line in _stack("env").splitlines() if "=" in line)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = env["KAFKA_BOOTSTRAP_SERVERS"]
        # the harness is the Mongo server's administrator (its services get users of their
        # own: tests.support.start_service): mptf-admin of the stack's credentials file, or,
        # against an external server without one, whoever MONGODB_URL names
        os.environ["MONGODB_URL"] = (
            mongo_admin_url(env["MONGODB_URL"], env["MPTF_MONGODB_CREDENTIALS"])
            if env.get("MPTF_MONGODB_CREDENTIALS") else env["MONGODB_URL"])
        # every principal's password (the services read theirs; the harness uses admin's)
        os.environ["MPTF_KAFKA_CREDENTIALS"] = env["MPTF_KAFKA_CREDENTIALS"]
        yield env
    finally:
        _stack("down")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # a run that collected nothing is a broken run, never a green one
    if session.testscollected == 0:
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def _deployments_removed_after_the_test() -> object:
    """The topics, ACLs and consumer groups of every deployment (tag) a test provisioned are
    removed when the test ends (after its own fixtures: autouse here, so set up first and
    torn down last). Kept, they added about 100 partitions per test to the suite's one
    broker until its heap was spent on them and it stopped answering (CI, stop 51)."""
    from tests import support

    before = set(support._provisioned)
    yield
    made = support._provisioned - before
    if not made or "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        return
    import warnings

    from mptf_cli.provision import admin_client, remove

    support._provisioned.difference_update(made)
    admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin",
                         support.credentials()["admin"])
    try:
        remove(admin, [f"{tag}." for tag in sorted(made)], entities=support.TEST_ENTITIES,
               funders=support.TEST_FUNDERS, timeout=20)
    except Exception as e:  # a test that stopped the broker: its tag is left, said so
        warnings.warn(f"could not remove the test's topics ({sorted(made)}): {e}",
                      stacklevel=1)
