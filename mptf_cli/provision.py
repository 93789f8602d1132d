"""Provision a secured Kafka deployment as its admin: SCRAM users, topics and ACLs
(shared.kafka_acl's plan), idempotently. Used by the local stack, the test suite and
docker-compose's init container; `mptf kafka provision` runs it by hand.

It speaks librdkafka (confluent-kafka), whose admin API creates SCRAM credentials and ACLs;
aiokafka's has neither. Passwords live in a credentials file (JSON {user: password}, mode
0600) that `credentials` creates with random passwords and never overwrites; `--split DIR`
also writes each service's own password alone (DIR/kafka-<service>.json).

    python -m mptf_cli.provision credentials FILE [--entity ...] [--funder ...] [--split DIR]
    python -m mptf_cli.provision apply FILE [--prefix P] [--entity ...] [--funder ...]
    python -m mptf_cli.provision strimzi > deploy/k8s/kafka-access.yaml
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared import kafka_acl
from shared.reference import NETWORK_MEMBERS
from shared.topics import DLQ_RETENTION_DAYS, INBOUND_RETENTION_DAYS, retention_ms

# the contributors the local stack knows (mptf seed's Member States and the dev token's)
DEFAULT_FUNDERS = ("DEU", "NLD", "NOR", "DNK", "ESP", "GBR", "USA", "MAR")
DEFAULT_ENTITIES = tuple(NETWORK_MEMBERS)
INBOUND_PARTITIONS = 3  # per entity system: its own order, and room for 3 readers
SCRAM_ITERATIONS = 8192


def load_credentials(path: str | Path) -> dict[str, str]:
    return json.loads(Path(path).read_text())


def ensure_credentials(path: str | Path, entities: Iterable[str] = DEFAULT_ENTITIES,
                       funders: Iterable[str] = DEFAULT_FUNDERS) -> dict[str, str]:
    """The credentials file with a random password for every principal; existing passwords
    are kept (a restarted stack keeps its users)."""
    p = Path(path)
    creds = load_credentials(p) if p.exists() else {}
    for user in kafka_acl.principals(entities, funders):
        creds.setdefault(user, secrets.token_urlsafe(24))
    write_secret(p, json.dumps(creds, indent=1, sort_keys=True))
    return creds


def write_secret(path: Path, text: str) -> None:
    """`text` at `path`, readable by its owner alone, replaced whole (never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def split(creds: dict[str, str], into: str | Path) -> list[Path]:
    """Each service's own password alone, DIR/kafka-<service>.json (what docker-compose gives
    the service: never another principal's)."""
    out = []
    for service in kafka_acl.SERVICES:
        user = kafka_acl.service_user(service)
        path = Path(into) / f"kafka-{service}.json"
        write_secret(path, json.dumps({user: creds[user]}))
        out.append(path)
    return out


def admin_client(bootstrap: str, user: str, password: str, *,
                 protocol: str = "SASL_PLAINTEXT", ca_file: str = "") -> Any:
    from confluent_kafka.admin import AdminClient

    conf = {"bootstrap.servers": bootstrap, "security.protocol": protocol,
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": password, "socket.timeout.ms": 10000}
    if ca_file:
        conf["ssl.ca.location"] = ca_file
    return AdminClient(conf)


def retention_days(inbound_days: float | None = None, dlq_days: float | None = None
                   ) -> dict[str, float]:
    """How long inbound topics and dead letters keep records: the arguments, else
    MPTF_INBOUND_RETENTION_DAYS and MPTF_DLQ_RETENTION_DAYS, else shared.topics' defaults."""
    return {"inbound_days": inbound_days if inbound_days is not None else float(
                os.environ.get("MPTF_INBOUND_RETENTION_DAYS", INBOUND_RETENTION_DAYS)),
            "dlq_days": dlq_days if dlq_days is not None else float(
                os.environ.get("MPTF_DLQ_RETENTION_DAYS", DLQ_RETENTION_DAYS))}


def _wait(futures: dict[Any, Any], ignore: tuple[str, ...] = ()) -> None:
    for what, fut in futures.items():
        try:
            fut.result(timeout=30)
        except Exception as e:
            code = getattr(getattr(e, "args", [None])[0], "name", lambda: "")
            name = code() if callable(code) else str(code)
            if name in ignore:
                continue
            raise RuntimeError(f"provisioning {what} failed: {e}") from e


def apply(admin: Any, creds: dict[str, str], *, prefix: str = "",
          entities: Iterable[str] = DEFAULT_ENTITIES, funders: Iterable[str] = DEFAULT_FUNDERS,
          partitions: int = 6, replication: int | None = None, users: bool = True,
          inbound_days: float | None = None, dlq_days: float | None = None) -> dict[str, int]:
    """Users (all at once), then missing topics, then each topic's retention (facts for
    good, inbound and dead letters for their days: shared.topics.retention_ms), then the ACLs
    of `prefix`: one round trip each. Safe to run again: what exists is left as it is, its
    retention set as stated.

    Replication, unless stated, is what the cluster allows up to 3 (one broker: 1; three or
    more: 3, with min.insync.replicas=2, so that an acknowledged write (acks=all) is on two
    brokers and one broker may be down without stopping producers)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    entities, funders = list(entities), list(funders)
    out = {"users": 0, "topics": 0, "acls": 0}
    if users:
        wanted = [u for u in kafka_acl.principals(entities, funders)
                  if u not in kafka_acl.SUPER_USERS]
        ups = [UserScramCredentialUpsertion(
            u, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            creds[u].encode()) for u in wanted]
        _wait(admin.alter_user_scram_credentials(ups))
        out["users"] = len(ups)
    meta = admin.list_topics(timeout=20)
    existing = set(meta.topics)
    if replication is None:
        replication = min(3, max(len(meta.brokers), 1))
    min_isr = {"min.insync.replicas": "2"} if replication >= 3 else {}
    inbound = {f"{prefix}{kafka_acl.T.inbound_topic(b, e)}" for e in entities
               for b in kafka_acl.T.INBOUND}
    days = retention_days(inbound_days, dlq_days)
    wanted_topics = kafka_acl.topics_of(prefix, entities)
    missing = [t for t in wanted_topics if t not in existing]
    if missing:
        try:
            _wait(admin.create_topics([
                NewTopic(t, num_partitions=INBOUND_PARTITIONS if t in inbound else partitions,
                         replication_factor=replication,
                         config={"retention.ms": str(retention_ms(t, **days)), **min_isr})
                for t in missing]), ignore=("TOPIC_ALREADY_EXISTS",))
        except KafkaException as e:  # pragma: no cover - reported with context
            raise RuntimeError(f"creating topics failed: {e}") from e
        out["topics"] = len(missing)
    kept = [t for t in wanted_topics if t in existing]
    if kept:  # topics made before (or by an older plan): their retention as stated now
        _wait(admin.incremental_alter_configs([ConfigResource(
            "topic", t, incremental_configs=[ConfigEntry(
                "retention.ms", str(retention_ms(t, **days)),
                incremental_operation=AlterConfigOpType.SET)]) for t in kept]))
    bindings = [AclBinding(ResourceType[g.resource], g.name, ResourcePatternType[g.pattern],
                           f"User:{g.principal}", "*", AclOperation[g.operation],
                           AclPermissionType.ALLOW)
                for g in kafka_acl.plan(prefix, entities, funders)]
    _wait(admin.create_acls(bindings))
    _until_in_force(admin, bindings)
    out["acls"] = len(bindings)
    return out


def remove(admin: Any, prefixes: Iterable[str], *, entities: Iterable[str] = DEFAULT_ENTITIES,
           funders: Iterable[str] = DEFAULT_FUNDERS, timeout: float = 30.0) -> dict[str, int]:
    """The inverse of `apply` for whole deployments named by a non-empty prefix (a test's
    tag, a retired tenant): every topic whose name begins with a prefix, the plan's ACLs of
    each, and every consumer group whose id begins with one. All prefixes in one round trip
    of each kind; what is already gone is not an error.

    The test suite removes each test's deployment when the test ends: a broker holding every
    earlier test's topics (about 100 partitions each, thousands in all) spent its heap on
    them, collected garbage back to back and stopped answering for a minute."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    prefixes = list(prefixes)
    if not prefixes or any(not p for p in prefixes):
        raise ValueError("remove needs prefixes, none of them empty (it never removes all)")
    entities, funders = list(entities), list(funders)
    out = {"topics": 0, "acls": 0, "groups": 0}
    topics = [t for t in admin.list_topics(timeout=timeout).topics
              if t.startswith(tuple(prefixes))]
    if topics:
        _wait(admin.delete_topics(topics, operation_timeout=timeout),
              ignore=("UNKNOWN_TOPIC_OR_PART",))
        out["topics"] = len(topics)
    filters = sorted({(g.resource, g.name, g.pattern) for p in prefixes
                      for g in kafka_acl.plan(p, entities, funders)})
    if filters:
        deleted = admin.delete_acls([AclBindingFilter(
            ResourceType[r], name, ResourcePatternType[pattern], None, None,
            AclOperation.ANY, AclPermissionType.ANY) for r, name, pattern in filters])
        out["acls"] = sum(len(f.result(timeout=timeout)) for f in deleted.values())
    groups = [g.group_id for g in admin.list_consumer_groups(
        request_timeout=timeout).result(timeout=timeout).valid
        if g.group_id.startswith(tuple(prefixes))]
    if groups:
        _wait(admin.delete_consumer_groups(groups, request_timeout=timeout),
              ignore=("GROUP_ID_NOT_FOUND", "NON_EMPTY_GROUP"))
        out["groups"] = len(groups)
    return out


def _until_in_force(admin: Any, bindings: list[Any], timeout: float = 30.0) -> None:
    """Wait until the broker's authorizer holds every binding: create_acls returns once the
    controller has committed them, and the broker applies its metadata a moment later (a
    client starting in between is refused).

    Asked resource by resource, all at once, and only for the resources not yet seen whole:
    a filter matching every ACL returned the whole cluster's (every tenant's, every earlier
    plan's: thousands on a test broker), 20 times a second, until one reply took longer
    than the request's timeout."""
    import time

    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType

    def key(b: Any) -> tuple[Any, ...]:
        return b.restype, b.name, b.resource_pattern_type, b.principal, b.operation

    pending: dict[tuple[Any, ...], set[tuple[Any, ...]]] = {}
    for b in bindings:
        pending.setdefault((b.restype, b.name, b.resource_pattern_type), set()).add(key(b))
    deadline = time.monotonic() + timeout
    while True:
        asked = {r: admin.describe_acls(AclBindingFilter(
            *r, None, None, AclOperation.ANY, AclPermissionType.ANY)) for r in pending}
        for r, future in asked.items():
            if pending[r] <= {key(b) for b in future.result(timeout=30)}:
                del pending[r]
        if not pending:
            return
        if time.monotonic() > deadline:
            missing = sum(len(v) for v in pending.values())
            raise RuntimeError(f"{missing} ACLs not in force after {timeout} s")
        time.sleep(0.05)


# how Strimzi's KafkaUser spells the ACL pattern types (its CRD: literal | prefix)
STRIMZI_PATTERN = {"LITERAL": "literal", "PREFIXED": "prefix"}


def strimzi(entities: Iterable[str] = DEFAULT_ENTITIES, funders: Iterable[str] = DEFAULT_FUNDERS,
            *, cluster: str = "mptf-kafka", partitions: int = 12, replication: int = 3
            ) -> list[dict[str, Any]]:
    """The same plan as Strimzi resources (deploy/k8s/kafka-access.yaml): a KafkaTopic per
    topic and a KafkaUser (SCRAM-SHA-512, simple authorization) per principal, whose
    password the user operator keeps in a Secret of the user's name."""
    entities, funders = list(entities), list(funders)
    labels = {"strimzi.io/cluster": cluster}
    inbound = {kafka_acl.T.inbound_topic(b, e) for e in entities for b in kafka_acl.T.INBOUND}
    out: list[dict[str, Any]] = []
    for t in kafka_acl.topics_of("", entities):
        out.append({"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic",
                    "metadata": {"name": t.lower().replace(".", "-").replace("_", "-"),
                                 "labels": labels},
                    "spec": {"topicName": t,
                             "partitions": INBOUND_PARTITIONS if t in inbound else partitions,
                             "replicas": replication,
                             "config": {"retention.ms": retention_ms(t)}}})
    grants = kafka_acl.plan("", entities, funders)
    for user in kafka_acl.principals(entities, funders):
        if user in kafka_acl.SUPER_USERS:
            continue
        acls = [{"resource": {"type": g.resource.lower(), "name": g.name,
                              "patternType": STRIMZI_PATTERN[g.pattern]},
                 "operations": [g.operation.capitalize()], "host": "*"}
                for g in grants if g.principal == user]
        out.append({"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser",
                    "metadata": {"name": user.lower(), "labels": labels},
                    "spec": {"authentication": {"type": "scram-sha-512"},
                             "authorization": {"type": "simple", "acls": acls}}})
    return out


def _args(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    pos: list[str] = []
    opts: dict[str, list[str]] = {}
    it = iter(argv)
    for a in it:
        if a.startswith("--"):
            opts.setdefault(a[2:], []).append(next(it))
        else:
            pos.append(a)
    return pos, opts


def main(argv: list[str]) -> int:
    pos, opts = _args(argv)
    if pos == ["strimzi"]:
        import yaml

        print("# Generated by `python -m mptf_cli.provision strimzi` from shared/kafka_acl.py:"
              " do not edit.\n# Topics, and users with their ACLs, for Strimzi's operators.")
        print(yaml.safe_dump_all(strimzi(), sort_keys=False), end="")
        return 0
    if len(pos) != 2 or pos[0] not in ("credentials", "apply"):
        print(__doc__, file=sys.stderr)
        return 2
    entities = opts.get("entity") or list(DEFAULT_ENTITIES)
    funders = opts.get("funder") or list(DEFAULT_FUNDERS)
    if pos[0] == "credentials":
        creds = ensure_credentials(pos[1], entities, funders)
        for d in opts.get("split", []):
            split(creds, d)
        return 0
    creds = load_credentials(pos[1])
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    admin = admin_client(bootstrap, "admin", creds["admin"],
                         protocol=os.environ.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                         ca_file=os.environ.get("KAFKA_CA_FILE", ""))
    done = apply(admin, creds, prefix=(opts.get("prefix") or [""])[0], entities=entities,
                 funders=funders,
                 partitions=int((opts.get("partitions") or ["6"])[0]),
                 replication=int(opts["replication"][0]) if opts.get("replication") else None)
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
