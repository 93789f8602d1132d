"""Retention in step across the broker, the topics and the stores: a consumed event id is
remembered for longer than a record can be handed to its consumer again. Inbound records are
kept for days (then the topic drops them); facts are kept for good, and a consumer is handed
one again only while its batch is uncommitted, or if its group lost its committed offsets,
which the broker keeps for about ten years."""

from __future__ import annotations

from shared import topics
from shared.settings import ServiceSettings
from tests.support import ROOT


def props() -> dict[str, str]:
    text = (ROOT / "deploy/kafka/server.properties.in").read_text()
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and ln[0] != "#")


def test_event_ids_are_kept_longer_than_inbound_topics_keep_records() -> None:
    assert ServiceSettings().inbox_keep_days > topics.INBOUND_RETENTION_DAYS
    assert ServiceSettings().inbox_keep_days * 24 > int(props()["log.retention.hours"])


def test_facts_are_kept_for_good_and_so_are_the_groups_offsets() -> None:
    for fact in topics.FACTS:
        assert topics.retention_ms(fact) == -1
        assert topics.retention_ms(f"t1.{fact}") == -1
    day = 86_400_000
    assert topics.retention_ms(topics.inbound_topic(topics.INBOUND_REFUNDS, "IOM")) == 7 * day
    assert topics.retention_ms("t1." + topics.dlq(topics.PROGRAMMES)) == 30 * day
    assert topics.retention_ms("x.mptf.inbound.concept-notes.dlq", dlq_days=2) == 2 * day
    assert int(props()["offsets.retention.minutes"]) >= 5 * 365 * 24 * 60
