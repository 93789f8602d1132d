"""A service's fact topics are read by one subscription (one consumer group, one handler);
the subscriptions it replaced are named so their offsets can be carried over, and each
topic still lists only its own types in the AsyncAPI document. Inbound kinds, read by
pattern, keep a subscription each. The broker-backed carry-over is in
tests/integration/test_consumer.py."""

from __future__ import annotations

from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from shared import topics
from shared.consumer import PromptBatchSubscriber, carry_offsets, group_of, subscribe
from shared.contracts import REGISTRY
from shared.runtime import Runtime
from shared.settings import ServiceSettings
from shared.store import Store

FACT_TOPICS = (topics.PROGRAMMES, topics.FUNDING, topics.MONITORING)


def _subscribers(broker: KafkaBroker) -> list[PromptBatchSubscriber]:
    return [s for s in broker.subscribers if isinstance(s, PromptBatchSubscriber)]


def test_several_fact_topics_are_one_consumer_in_one_group() -> None:
    broker = KafkaBroker("127.0.0.1:9", logger=None)  # (never connected)
    settings = ServiceSettings(service_name="notifications", topic_prefix="t.")
    sub = subscribe(broker, settings, topic=FACT_TOPICS, name="facts", accepts=[],
                    handler=None, dead_letters=lambda: None,  # type: ignore[arg-type]
                    replaces=("programme-facts", "funding-facts"))
    (subscriber,) = _subscribers(broker)
    assert [t.name for t in subscriber.topics] == [f"t.{t}" for t in FACT_TOPICS]
    assert sub.topics == tuple(f"t.{t}" for t in FACT_TOPICS)
    assert sub.replaces == ("programme-facts", "funding-facts")
    assert group_of(settings, "facts") == "t.mptf-notifications.facts"


def test_an_inbound_kind_is_not_read_together_with_other_topics() -> None:
    broker = KafkaBroker("127.0.0.1:9", logger=None)
    with pytest.raises(ValueError, match="pattern"):
        subscribe(broker, ServiceSettings(service_name="intake"),
                  topic=(topics.INBOUND_CONCEPT_NOTES, topics.FUNDING), name="x",
                  accepts=[], handler=None, dead_letters=lambda: None)  # type: ignore[arg-type]


def test_each_topic_of_a_shared_subscription_lists_only_its_own_types() -> None:
    settings = ServiceSettings(service_name="notifications")
    runtime = Runtime(settings, Store(settings))
    types = [c.type for c in REGISTRY.values() if c.topic in FACT_TOPICS]

    async def handler(batch: list[Any]) -> None:
        return None

    runtime.subscribe(FACT_TOPICS, "facts", types, handler, strict_types=False)
    for t in FACT_TOPICS:
        assert runtime.receives[t] == [x for x in types if REGISTRY[x].topic == t]
        assert runtime.receives[t]  # (each topic has facts of its own)


async def test_a_subscription_that_replaces_nothing_carries_nothing_without_asking() -> None:
    broker = KafkaBroker("127.0.0.1:9", logger=None)
    settings = ServiceSettings(service_name="intake", kafka_bootstrap_servers="127.0.0.1:9")
    sub = subscribe(broker, settings, topic=topics.FUNDING, name="facts", accepts=[],
                    handler=None, dead_letters=lambda: None)  # type: ignore[arg-type]
    # (no broker is listening: asking it anything would fail)
    assert await carry_offsets(settings, sub) == {}
