"""Hostile HTTP input gets a clear 4xx (problem+json naming the field), never a 5xx, and
nothing is stored: a body over the limit sent chunked, integers the store cannot hold,
invalid Unicode, control characters."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE
from tests.integration.conftest import running
from tests.support import IOM, OPERATOR, isolated


async def test_hostile_bodies_are_answered_and_nothing_is_stored() -> None:
    s = isolated(IntakeSettings)
    async with running(build_intake, s) as (_, rt, http):
        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: streamed
            yield b'{"title": "'
            for _ in range(40):
                yield b"a" * 8192
            yield b'"}'

        r = await http.post("/v1/concept-notes", headers={**IOM, "content-type":
                                                          "application/json"},
                            content=chunked())
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"

        big = {**CONCEPT_NOTE_EXAMPLE, "entity_reference": "HOSTILE-1",
               "duration_months": 2**64}
        r = await http.post("/v1/concept-notes", headers=IOM, json=big)
        assert r.status_code == 422, r.text
        assert any("duration_months" in e["field"] for e in r.json()["errors"])

        ctl = {**CONCEPT_NOTE_EXAMPLE, "entity_reference": "HOSTILE-2",
               "title": "Migration data\x00\x1b[31m"}
        r = await http.post("/v1/concept-notes", headers=IOM, json=ctl)
        assert r.status_code == 422, r.text
        assert any(e["field"] == "title" for e in r.json()["errors"])

        body = (b'{"title": "\\ud800 lone", "entity_reference": "HOSTILE-3"}')
        r = await http.post("/v1/concept-notes", content=body,
                            headers={**IOM, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert await rt.store.db.programmes.count_documents({}) == 0


async def test_a_directory_entry_with_invalid_unicode_is_refused() -> None:
    s = isolated(NotificationsSettings)
    async with running(build_notifications, s) as (_, _rt, http):
        body = b'{"name": "UNHCR \\udc80", "kind": "entity"}'
        r = await http.put("/v1/directory/UNHCR", content=body,
                           headers={**OPERATOR, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert any(e["field"] == "name" for e in r.json()["errors"])
        r = await http.get("/v1/directory", headers=OPERATOR)
        assert r.status_code == 200
        assert "\\udc80" not in r.text
