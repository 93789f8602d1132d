"""Topic names: the public surface. One writer per fact topic; inbound topics are separate.

Key = the programme id (the contribution id for money that is not yet a programme's).

Inbound topics are one per entity system: `mptf.inbound.concept-notes.<ENTITY>`, written only
by that entity's principal (a literal ACL, shared.kafka_acl). Kafka does not tell a consumer
who produced a record, so the topic is what binds a record to its authenticated sender: the
reading service takes the sender from the topic name and refuses a record whose CloudEvents
`source` claims anybody else. Their dead letters share one topic per kind
(`mptf.inbound.concept-notes.dlq`), which entity systems cannot write.
"""

from __future__ import annotations

import re

INBOUND_CONCEPT_NOTES = "mptf.inbound.concept-notes"  # entity systems -> intake (per entity)
INBOUND_PROGRESS_REPORTS = "mptf.inbound.progress-reports"  # entity systems -> monitoring
INBOUND_REFUNDS = "mptf.inbound.refunds"  # entity systems -> funding: refunds they made
PROGRAMMES = "mptf.programmes"  # written by intake
FUNDING = "mptf.funding"  # written by funding; read by the services and operators
FUNDERS = "mptf.funders"  # written by funding: what every funder may see (no contributions)
MONITORING = "mptf.monitoring"  # written by monitoring
NOTIFICATIONS = "mptf.notifications"  # written by notifications

INBOUND = (INBOUND_CONCEPT_NOTES, INBOUND_PROGRESS_REPORTS, INBOUND_REFUNDS)
FACTS = (PROGRAMMES, FUNDING, FUNDERS, MONITORING, NOTIFICATIONS)
# the topics consumers read, each with a dead-letter companion
CONSUMED = (*INBOUND, PROGRAMMES, FUNDING, MONITORING)

ALL = (
    INBOUND_CONCEPT_NOTES,
    INBOUND_PROGRESS_REPORTS,
    INBOUND_REFUNDS,
    PROGRAMMES,
    FUNDING,
    FUNDERS,
    MONITORING,
    NOTIFICATIONS,
)

# How long each kind of topic keeps its records (the broker's topic config `retention.ms`,
# set by mptf_cli.provision and in the Strimzi resources). The facts are the Fund's memory:
# kept for good, so any service can be rebuilt and any funder can read from the first one;
# not compacted, because every event matters (a key's latest event is not its history).
# Inbound topics only carry commands until their service has consumed them, and dead letters
# until an operator has dealt with them: a stated, configurable time.
INBOUND_RETENTION_DAYS = 7  # MPTF_INBOUND_RETENTION_DAYS
DLQ_RETENTION_DAYS = 30  # MPTF_DLQ_RETENTION_DAYS
FOREVER = -1


def retention_ms(topic: str, *, inbound_days: float = INBOUND_RETENTION_DAYS,
                 dlq_days: float = DLQ_RETENTION_DAYS) -> int:
    """`retention.ms` of a topic (prefixed or not): facts for good, inbound and dead letters
    for their configured days."""
    if topic.endswith(".dlq"):
        return int(dlq_days * 86_400_000)
    if inbound_sender(topic) is not None:
        return int(inbound_days * 86_400_000)
    return FOREVER


ENTITY_URN = "urn:mptf:entity:"  # the CloudEvents source of an entity system, + its code

# UN entity codes as the reference list writes them (upper case, digits, hyphens)
ENTITY_CODE = r"[A-Z0-9][A-Z0-9-]{0,31}"
_INBOUND_TOPIC = re.compile(
    rf"^(?P<base>.*(?:{'|'.join(re.escape(b) for b in INBOUND)}))\.(?P<entity>{ENTITY_CODE})$")


def inbound_topic(base: str, entity: str) -> str:
    """An entity system's own inbound topic of kind `base` (unprefixed)."""
    if base not in INBOUND:
        raise ValueError(f"{base} is not an inbound topic")
    if not re.fullmatch(ENTITY_CODE, entity):
        raise ValueError(f"{entity!r} is not a UN entity code")
    return f"{base}.{entity}"


def inbound_pattern(prefixed_base: str) -> str:
    """The pattern a reading service subscribes with: every entity's topic of one kind."""
    return rf"^{re.escape(prefixed_base)}\.{ENTITY_CODE}$"


def inbound_sender(topic: str) -> str | None:
    """The entity whose principal alone may write `topic`, or None for other topics."""
    m = _INBOUND_TOPIC.match(topic)
    return m["entity"] if m else None


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic` (an entity's inbound topic: its kind's one)."""
    m = _INBOUND_TOPIC.match(topic)
    return f"{m['base'] if m else topic}.dlq"
