"""The Mongo users of a deployment, as its administrator: each service's own user (svc-<service>,
in `admin`, SCRAM-SHA-256) with `readWrite` on its own database alone (mptf_<service>, and
that database rebuilt from the log, mptf_<service>_rebuilt: `roles`), and
the replica set initiated where it is not yet. Idempotent: a user that exists gets the
password and roles of the plan again. Used by docker-compose's mongo-init and Kubernetes'
mongo-init Job; the local stack's SecantusDB servers hold the same users from their start
(deploy/local/secantusd.py, which also needs no replica-set step).

Passwords live in a credentials file (JSON {user: password}, mode 0600) that `credentials`
creates with random passwords (mptf-admin's among them) and never overwrites (`apply` also
reads a folder of one file per user, its password: a Kubernetes Secret volume); `--split DIR`
also writes what each container may see and nothing more: DIR/mongo-<service>.json (that
service's own password alone), DIR/mongo-admin-password (mongod's first user) and
DIR/mongo-keyfile (the replica set members' shared key).

    python -m mptf_cli.mongo_users credentials FILE [--split DIR]
    MONGODB_URL=... python -m mptf_cli.mongo_users apply FILE [--replica-set rs0 --member h:p ...]
    (the members default to MONGODB_URL's first host)

Both take --admin USER (mptf-admin) and --tag T (users T.svc-<service> on T_<service>: an
isolated deployment's, a test's).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from mptf_cli.provision import _args, load_credentials, write_secret
from shared.kafka_acl import SERVICES

ADMIN = "mptf-admin"


def plan(tag: str = "", services: tuple[str, ...] = SERVICES) -> dict[str, str]:
    """Each service's Mongo user and the one database it may read and write; with a `tag` (an
    isolated deployment's, a test's), `<tag>.svc-<service>` on `<tag>_<service>`."""
    if tag:
        return {f"{tag}.svc-{s}": f"{tag}_{s}" for s in services}
    return {f"svc-{s}": f"mptf_{s}" for s in services}


def roles(database: str) -> list[dict[str, str]]:
    """A service user's roles: readWrite on its own database and on that database rebuilt from
    the log (`mptf rebuild` writes `<database>_rebuilt`, which the service may then be
    pointed at), on nothing else."""
    return [{"role": "readWrite", "db": database},
            {"role": "readWrite", "db": f"{database}_rebuilt"}]


def load_passwords(path: str | Path) -> dict[str, str]:
    """{user: password} from a credentials file, or from a folder holding a file per user
    whose content is the password (a Kubernetes Secret volume: deploy/k8s/mongodb.yaml)."""
    p = Path(path)
    if not p.is_dir():
        return load_credentials(p)
    return {f.name: f.read_text().strip() for f in sorted(p.iterdir())
            if not f.name.startswith(".") and f.is_file()}


def ensure_credentials(path: str | Path, *, tag: str = "", admin: str = ADMIN
                       ) -> dict[str, str]:
    """The credentials file with a random password for the administrator and every service's
    user; existing passwords are kept (a restarted deployment keeps its users)."""
    p = Path(path)
    creds = load_credentials(p) if p.exists() else {}
    wanted = [admin, *plan(tag)]
    if any(u not in creds for u in wanted) or not p.exists():
        for user in wanted:
            creds.setdefault(user, secrets.token_urlsafe(24))
        write_secret(p, json.dumps(creds, indent=1, sort_keys=True))
    return creds


def split(creds: dict[str, str], into: str | Path, admin: str = ADMIN) -> list[Path]:
    """What each container is given: a service its own password alone, mongod the
    administrator's first password and the replica set's key (made once, then kept)."""
    d = Path(into)
    out = []
    for user in plan():
        p = d / f"mongo-{user.removeprefix('svc-')}.json"
        write_secret(p, json.dumps({user: creds[user]}))
        out.append(p)
    write_secret(d / "mongo-admin-password", creds[admin])
    key = d / "mongo-keyfile"
    if not key.exists():  # 756 characters of base64 (the only ones mongod takes in one), as
        # MongoDB's guide makes one (openssl rand -base64 756)
        write_secret(key, base64.b64encode(secrets.token_bytes(567)).decode() + "\n")
    return [*out, d / "mongo-admin-password", key]


def ensure_user(client: Any, user: str, password: str, roles: list[dict[str, str]]) -> str:
    """`user` in `admin` with exactly this password and these roles: "created" or "updated"."""
    from pymongo.errors import OperationFailure

    try:
        client.admin.command("createUser", user, pwd=password, roles=roles)
        return "created"
    except OperationFailure as e:
        if e.code not in (11000, 51003):  # exists (mongod: 51003; SecantusDB: 11000)
            raise
    client.admin.command("updateUser", user, pwd=password, roles=roles)
    return "updated"


def initiate(client: Any, replica_set: str, members: list[str], timeout: float = 60.0) -> bool:
    """Initiate the replica set (`client` speaks to its first member alone) unless its members
    already form one; then wait until it has a primary. True when this call initiated it."""
    from pymongo.errors import OperationFailure

    started = False
    if not client.admin.command("hello").get("setName"):
        try:
            client.admin.command("replSetInitiate", {"_id": replica_set, "members": [
                {"_id": i, "host": h} for i, h in enumerate(members)]})
            started = True
        except OperationFailure as e:
            if e.code != 23:  # AlreadyInitialized (another init got there first)
                raise
    deadline = time.monotonic() + timeout
    while not client.admin.command("hello").get("primary"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"replica set {replica_set} has no primary after {timeout} s")
        time.sleep(0.5)
    return started


def apply(client: Any, creds: dict[str, str],
          users: dict[str, str] | None = None) -> dict[str, str]:
    """Every user of the plan (or `users`: {user: database}), as the administrator `client`."""
    return {user: ensure_user(client, user, creds[user], roles(db))
            for user, db in (plan() if users is None else users).items()}


def main(argv: list[str]) -> int:
    pos, opts = _args(argv)
    if len(pos) != 2 or pos[0] not in ("credentials", "apply"):
        print(__doc__, file=sys.stderr)
        return 2
    tag, admin = (opts.get("tag") or [""])[0], (opts.get("admin") or [ADMIN])[0]
    if pos[0] == "credentials":
        creds = ensure_credentials(pos[1], tag=tag, admin=admin)
        for d in opts.get("split", []):
            split(creds, d, admin)
        return 0
    from pymongo import MongoClient

    creds = load_passwords(pos[1])
    missing = [u for u in (admin, *plan(tag)) if not creds.get(u)]
    if missing:
        print(f"mongo_users: {pos[1]} holds no password for {', '.join(missing)}",
              file=sys.stderr)
        return 2
    auth = dict(username=admin, password=creds[admin], authSource="admin",
                authMechanism="SCRAM-SHA-256", serverSelectionTimeoutMS=30000)
    url = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
    initiated = False
    if opts.get("replica-set"):  # before the set exists, its first member is spoken to alone
        from pymongo.uri_parser import parse_uri

        members = opts.get("member") or [
            f"{h}:{p}" for h, p in parse_uri(url)["nodelist"][:1]]
        with MongoClient(f"mongodb://{members[0]}/", directConnection=True, **auth) as first:
            initiated = initiate(first, opts["replica-set"][0], members)
    # then the users, on the primary, wherever it is (MONGODB_URL names the replica set)
    with MongoClient(url, **auth) as client:
        done = apply(client, creds, plan(tag))
    print(json.dumps({"initiated": initiated, "users": done}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
