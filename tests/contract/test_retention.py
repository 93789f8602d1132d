"""Retention settings in step with the broker's: a consumed event id is remembered for longer
than any topic keeps the record, so a record a consumer can still be handed is recognised."""

from __future__ import annotations

from shared.settings import ServiceSettings
from tests.support import ROOT


def test_event_ids_are_kept_longer_than_the_topics_keep_records() -> None:
    props = (ROOT / "deploy/kafka/server.properties.in").read_text()
    hours = next(int(ln.split("=")[1]) for ln in props.splitlines()
                 if ln.startswith("log.retention.hours="))
    assert ServiceSettings().inbox_keep_days * 24 > hours
