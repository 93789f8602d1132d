"""Notifications' rules: who is told of a submission, and notification identity."""

from __future__ import annotations

from services.notifications.domain import Notice, notices_for
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted

FACT = ProgrammeSubmitted.model_validate(
    {"programme_id": "jp-1", "submitted_by": "IOM", "entity_reference": "R", "channel": "http",
     "submitted_at": "2026-11-23T10:00:00Z", "note": CONCEPT_NOTE_EXAMPLE})


def test_every_puno_of_a_submitted_note_is_told_once() -> None:
    notices = notices_for("evt-1", FACT)
    assert sorted(n.recipient for n in notices) == ["ILO", "IOM", "UN-WOMEN"]
    assert len({n.id for n in notices}) == 3
    assert all("jp-1" in n.body and n.channel == "inbox" for n in notices)


def test_notice_identity_is_fact_recipient_and_channel() -> None:
    a = Notice("f", "t", "p", "IOM", "inbox", "s", "b")
    assert a.id == Notice("f", "t", "p", "IOM", "inbox", "other", "text").id
    assert a.id != Notice("f", "t", "p", "IOM", "email", "s", "b").id
    assert a.id != Notice("g", "t", "p", "IOM", "inbox", "s", "b").id


def test_facts_without_rules_notify_nobody() -> None:
    assert notices_for("evt-2", object()) == []
