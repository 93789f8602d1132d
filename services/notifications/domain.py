"""Notifications' rules as plain code: who is told of which fact, through which channel, and
the identity that makes each notification happen exactly once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from shared.contracts.intake import ProgrammeSubmitted


@dataclass(frozen=True)
class Notice:
    fact_id: str
    fact_type: str
    programme_id: str | None
    recipient: str  # entity code (or office / contributor id)
    channel: str  # inbox | webhook | email
    subject: str
    body: str

    @property
    def id(self) -> str:
        """One notification per (fact, recipient, channel), however often the fact arrives."""
        raw = f"{self.fact_id}|{self.recipient}|{self.channel}"
        return "n-" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def programme_view(fact: ProgrammeSubmitted) -> dict[str, Any]:
    """What notifications remembers of a programme, to address later facts about it."""
    note = fact.note
    return {
        "_id": fact.programme_id,
        "title": note.title,
        "countries": list(note.countries),
        "punos": [p.entity.upper() for p in note.punos],
        "convening": next((p.entity.upper() for p in note.punos if p.convening), None),
    }


def notices_for(fact_id: str, fact: Any) -> list[Notice]:
    if isinstance(fact, ProgrammeSubmitted):
        view = programme_view(fact)
        return [Notice(fact_id, fact.TYPE, fact.programme_id, puno, "inbox",
                       f"Concept note received: {view['title']}",
                       f"The concept note '{view['title']}' ({fact.programme_id}), submitted by "
                       f"{fact.submitted_by}, names {puno} as a participating organisation. "
                       "It is now being screened for eligibility; no action is needed yet.")
                for puno in view["punos"]]
    return []
