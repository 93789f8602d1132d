"""The broker keeps what the README says: every fact topic for good, inbound topics and dead
letters for their stated days; a topic made before (with the broker's default) is brought in
line when provisioning runs again."""

from __future__ import annotations

import os

from confluent_kafka.admin import ConfigResource

from mptf_cli.provision import admin_client, apply, remove
from shared import topics
from tests.support import TEST_ENTITIES, TEST_FUNDERS, credentials, unique


def retention(admin, names: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    fs = admin.describe_configs([ConfigResource("topic", n) for n in names])
    return {r.name: int(f.result()["retention.ms"].value) for r, f in fs.items()}


def test_facts_are_kept_for_good_inbound_and_dead_letters_for_days() -> None:
    tag = unique("keep")
    admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin", credentials()["admin"])
    apply(admin, credentials(), prefix=f"{tag}.", entities=TEST_ENTITIES,
          funders=TEST_FUNDERS, users=False, inbound_days=3, dlq_days=10)
    day = 86_400_000
    facts = [f"{tag}.{t}" for t in topics.FACTS]
    inbound = [f"{tag}.{topics.inbound_topic(k, 'IOM')}" for k in topics.INBOUND]
    dead = [f"{tag}.{topics.dlq(t)}" for t in topics.CONSUMED]
    got = retention(admin, facts + inbound + dead)
    assert {got[t] for t in facts} == {-1}
    assert {got[t] for t in inbound} == {3 * day}
    assert {got[t] for t in dead} == {10 * day}
    # provisioning again with other days brings existing topics in line
    apply(admin, credentials(), prefix=f"{tag}.", entities=TEST_ENTITIES,
          funders=TEST_FUNDERS, users=False, inbound_days=7, dlq_days=30)
    got = retention(admin, facts + inbound + dead)
    assert {got[t] for t in facts} == {-1} and {got[t] for t in inbound} == {7 * day}
    assert {got[t] for t in dead} == {30 * day}
    remove(admin, [f"{tag}."], entities=TEST_ENTITIES, funders=TEST_FUNDERS)
