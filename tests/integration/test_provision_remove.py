"""`mptf_cli.provision.remove` takes a whole deployment (a prefix) off the broker: its topics,
its ACLs, its consumer groups, and nothing of any other deployment. The suite removes each
test's deployment with it when the test ends (tests/conftest.py)."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from mptf_cli.provision import admin_client, apply, remove
from shared import kafka_acl, topics
from tests.support import TEST_ENTITIES, TEST_FUNDERS, credentials, unique


def _acls(admin, name: str, pattern: str = "LITERAL") -> list:  # type: ignore[no-untyped-def]
    f = AclBindingFilter(ResourceType.ANY, name, ResourcePatternType[pattern], None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    return list(admin.describe_acls(f).result(timeout=20))


def _topics(admin, prefix: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {t for t in admin.list_topics(timeout=20).topics if t.startswith(prefix)}


def _groups(admin, prefix: str) -> set[str]:  # type: ignore[no-untyped-def]
    listed = admin.list_consumer_groups(request_timeout=20).result(timeout=20).valid
    return {g.group_id for g in listed if g.group_id.startswith(prefix)}


def test_remove_takes_one_deployment_away_whole_and_leaves_the_others() -> None:
    admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin", credentials()["admin"])
    gone, kept = f"{unique('rm')}.", f"{unique('keep')}."
    for prefix in (gone, kept):
        apply(admin, credentials(), prefix=prefix, entities=TEST_ENTITIES,
              funders=TEST_FUNDERS, users=False)
    expected = set(kafka_acl.topics_of(gone, TEST_ENTITIES))
    assert _topics(admin, gone) == expected
    # a consumer group of the deployment, with a committed offset (as a service leaves it)
    group = f"{kafka_acl.service_group_prefix(gone, 'funding')}ledger"
    topic = f"{gone}{topics.FACTS[0]}"
    consumer = Consumer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin",
                         "sasl.password": credentials()["admin"], "group.id": group,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    consumer.close()
    assert _groups(admin, gone) == {group}
    literal = f"{gone}{topics.FACTS[0]}"
    assert _acls(admin, literal)

    done = remove(admin, [gone], entities=TEST_ENTITIES, funders=TEST_FUNDERS)

    assert done["topics"] == len(expected) and done["groups"] == 1
    assert done["acls"] == len(kafka_acl.plan(gone, TEST_ENTITIES, TEST_FUNDERS))
    deadline = time.monotonic() + 20  # the broker applies the controller's records a moment later
    while (_topics(admin, gone) or _acls(admin, literal)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _topics(admin, gone) == set()
    assert _acls(admin, literal) == []
    assert _acls(admin, kafka_acl.service_group_prefix(gone, "funding"), "PREFIXED") == []
    assert _groups(admin, gone) == set()
    # the other deployment is untouched
    assert _topics(admin, kept) == set(kafka_acl.topics_of(kept, TEST_ENTITIES))
    assert _acls(admin, f"{kept}{topics.FACTS[0]}")
    # running it again finds nothing and says so; an empty prefix (everything) is refused
    assert remove(admin, [gone], entities=TEST_ENTITIES, funders=TEST_FUNDERS) == {
        "topics": 0, "acls": 0, "groups": 0}
    with pytest.raises(ValueError):
        remove(admin, [""], entities=TEST_ENTITIES, funders=TEST_FUNDERS)
    remove(admin, [kept], entities=TEST_ENTITIES, funders=TEST_FUNDERS)
