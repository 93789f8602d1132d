"""Who may do what on the broker: the principals and their ACLs, as data.

Every client authenticates (SASL/SCRAM-SHA-512) and the broker runs KRaft's StandardAuthorizer
with `allow.everyone.if.no.acl.found=false`, so a principal can do exactly what is granted
here and nothing else. `mptf_cli.provision` applies this plan (users, topics, ACLs); the
contract tests keep it in step with what each service subscribes to and publishes.

Principals (SCRAM user names):
- `broker`, `admin`: super users (inter-broker traffic; provisioning). Nothing else uses them.
- `svc-<service>`: one per service. It reads the topics it subscribes to, writes the fact
  topics it owns and the dead-letter topics of what it reads, and uses its own groups.
- `entity-<CODE>`: one per entity system. It writes its own inbound topics only.
- `funder-<CODE>`: one per contributor. It reads `mptf.funders` with its own groups only.
- `operator`: the operators' tools (`mptf`, the console): reads every topic, describes the
  services' groups (lag), and writes inbound topics (a dead letter replayed to where it
  came from).

Prefixed ACLs match plain string prefixes, so every prefix here ends with a delimiter (`.`):
`entity-IOM` can never reach a topic of `IOMX`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from shared import topics as T

SERVICES = ("intake", "funding", "monitoring", "notifications")
SUPER_USERS = ("broker", "admin")
OPERATOR = "operator"

# what each service subscribes to (tests/contract checks this against the running wiring)
READS: dict[str, tuple[str, ...]] = {
    "intake": (T.INBOUND_CONCEPT_NOTES, T.FUNDING, T.MONITORING),
    "funding": (T.INBOUND_REFUNDS, T.PROGRAMMES, T.MONITORING),
    "monitoring": (T.INBOUND_PROGRESS_REPORTS, T.PROGRAMMES, T.FUNDING),
    "notifications": (T.PROGRAMMES, T.FUNDING, T.MONITORING),
}
# the fact topics each service alone writes (tests/contract checks them against the registry)
WRITES: dict[str, tuple[str, ...]] = {
    "intake": (T.PROGRAMMES,),
    "funding": (T.FUNDING, T.FUNDERS),
    "monitoring": (T.MONITORING,),
    "notifications": (T.NOTIFICATIONS,),
}

Operation = Literal["READ", "WRITE", "DESCRIBE"]
Resource = Literal["TOPIC", "GROUP"]
Pattern = Literal["LITERAL", "PREFIXED"]


@dataclass(frozen=True, order=True)
class Grant:
    principal: str  # SCRAM user name (the ACL's principal is User:<name>)
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation


def service_user(service: str) -> str:
    return f"svc-{service}"


def entity_user(code: str) -> str:
    return f"entity-{code}"


def funder_user(code: str) -> str:
    return f"funder-{code}"


def service_group_prefix(prefix: str, service: str) -> str:
    """Every consumer group of a service starts with this (shared.consumer names them)."""
    return f"{prefix}mptf-{service}."


def funder_group_prefix(prefix: str, code: str) -> str:
    return f"{prefix}funder-{code}."


def plan(prefix: str, entities: Iterable[str], funders: Iterable[str]) -> list[Grant]:
    """Every grant of a deployment whose topics begin with `prefix` ("" in production, a
    test's own tag in the test suite)."""
    p = prefix
    out: list[Grant] = []
    for svc in SERVICES:
        u = service_user(svc)
        for t in READS[svc]:
            if t in T.INBOUND:  # every entity's topic of that kind, present and future
                out.append(Grant(u, "TOPIC", f"{p}{t}.", "PREFIXED", "READ"))
            else:
                out.append(Grant(u, "TOPIC", f"{p}{t}", "LITERAL", "READ"))
            out.append(Grant(u, "TOPIC", f"{p}{T.dlq(t)}", "LITERAL", "WRITE"))
        for t in WRITES[svc]:
            out.append(Grant(u, "TOPIC", f"{p}{t}", "LITERAL", "WRITE"))
        out.append(Grant(u, "GROUP", service_group_prefix(p, svc), "PREFIXED", "READ"))
    for code in entities:
        for base in T.INBOUND:
            out.append(Grant(entity_user(code), "TOPIC", f"{p}{T.inbound_topic(base, code)}",
                             "LITERAL", "WRITE"))
    for code in funders:
        out.append(Grant(funder_user(code), "TOPIC", f"{p}{T.FUNDERS}", "LITERAL", "READ"))
        out.append(Grant(funder_user(code), "GROUP", funder_group_prefix(p, code), "PREFIXED",
                         "READ"))
    out += [
        Grant(OPERATOR, "TOPIC", f"{p}mptf.", "PREFIXED", "READ"),
        Grant(OPERATOR, "TOPIC", f"{p}mptf.inbound.", "PREFIXED", "WRITE"),
    ]
    out += [Grant(OPERATOR, "GROUP", service_group_prefix(p, svc), "PREFIXED", "DESCRIBE")
            for svc in SERVICES]
    return sorted(set(out))


def topics_of(prefix: str, entities: Iterable[str]) -> list[str]:
    """Every topic of a deployment: the fact topics, each entity's inbound topics, and the
    dead-letter topics of everything consumed."""
    names = [f"{prefix}{t}" for t in T.FACTS]
    names += [f"{prefix}{T.inbound_topic(b, e)}" for e in entities for b in T.INBOUND]
    names += [f"{prefix}{T.dlq(t)}" for t in T.CONSUMED]
    return names


def principals(entities: Iterable[str], funders: Iterable[str]) -> list[str]:
    """Every SCRAM user a deployment has (the super users included)."""
    return [*SUPER_USERS, *(service_user(s) for s in SERVICES), OPERATOR,
            *(entity_user(e) for e in entities), *(funder_user(f) for f in funders)]
