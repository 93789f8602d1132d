"""The broker's ACL plan (shared.kafka_acl) is in step with the code: each service is granted
exactly the topics it subscribes to and the fact topics it publishes, and no prefix can
reach a neighbour's names."""

from __future__ import annotations

import importlib

import pytest

from shared import kafka_acl
from shared import topics as T
from shared.contracts import REGISTRY


@pytest.mark.parametrize("service", kafka_acl.SERVICES)
def test_a_service_is_granted_what_it_subscribes_to(service: str) -> None:
    app = importlib.import_module(f"services.{service}.app")
    _, runtime = app.build()
    assert set(runtime.receives) == set(kafka_acl.READS[service])


def test_the_fact_topics_each_service_writes_are_those_of_its_contracts() -> None:
    written: dict[str, set[str]] = {s: set() for s in kafka_acl.SERVICES}
    for c in REGISTRY.values():
        if not c.inbound:
            written[c.owner] |= set(c.topics)
    assert {s: set(t) for s, t in kafka_acl.WRITES.items()} == written


def test_every_prefixed_grant_ends_with_a_delimiter() -> None:
    """A prefix `...IOM` would also match `...IOMX`: every prefix ends with '.'."""
    grants = kafka_acl.plan("t1.", ["IOM", "UN-WOMEN"], ["DEU"])
    assert all(g.name.endswith(".") for g in grants if g.pattern == "PREFIXED")


def test_entities_write_only_their_own_inbound_topics_and_funders_read_only_theirs() -> None:
    grants = kafka_acl.plan("", ["IOM", "ILO"], ["DEU"])
    iom = {(g.name, g.operation) for g in grants if g.principal == "entity-IOM"}
    assert iom == {(f"{T.INBOUND_CONCEPT_NOTES}.IOM", "WRITE"),
                   (f"{T.INBOUND_PROGRESS_REPORTS}.IOM", "WRITE"),
                   (f"{T.INBOUND_REFUNDS}.IOM", "WRITE")}
    deu = {(g.resource, g.name, g.pattern, g.operation) for g in grants
           if g.principal == "funder-DEU"}
    assert deu == {("TOPIC", T.FUNDERS, "LITERAL", "READ"),
                   ("GROUP", "funder-DEU.", "PREFIXED", "READ")}
    # only funding writes the money topics
    writers = {g.principal for g in grants if g.operation == "WRITE"
               and g.name in (T.FUNDING, T.FUNDERS)}
    assert writers == {"svc-funding"}


def test_the_sender_of_an_inbound_topic_is_its_entity_and_dead_letters_are_shared() -> None:
    t = T.inbound_topic(T.INBOUND_CONCEPT_NOTES, "UN-WOMEN")
    assert T.inbound_sender(f"tag.{t}") == "UN-WOMEN"
    assert T.inbound_sender(f"{T.INBOUND_CONCEPT_NOTES}.dlq") is None
    assert T.inbound_sender(T.FUNDING) is None
    assert T.dlq(f"tag.{t}") == f"tag.{T.INBOUND_CONCEPT_NOTES}.dlq"
    assert T.dlq(T.FUNDING) == f"{T.FUNDING}.dlq"
    with pytest.raises(ValueError):
        T.inbound_topic(T.INBOUND_CONCEPT_NOTES, "iom.x")


def test_the_kubernetes_users_and_topics_are_generated_from_the_plan() -> None:
    """deploy/k8s/kafka-access.yaml (Strimzi KafkaTopic and KafkaUser resources) is exactly
    what `python -m mptf_cli.provision strimzi` makes of shared/kafka_acl.py."""
    from pathlib import Path

    import yaml

    from mptf_cli.provision import strimzi

    committed = list(yaml.safe_load_all(
        (Path(__file__).resolve().parents[2] / "deploy/k8s/kafka-access.yaml").read_text()))
    assert committed == strimzi(), (
        "regenerate: python -m mptf_cli.provision strimzi > deploy/k8s/kafka-access.yaml")
    users = {d["metadata"]["name"]: d for d in committed if d["kind"] == "KafkaUser"}
    assert {"svc-intake", "svc-funding", "operator", "entity-iom", "funder-deu"} <= set(users)
    assert all(u["spec"]["authentication"]["type"] == "scram-sha-512" for u in users.values())
