"""Hostile HTTP input gets a clear 4xx (problem+json naming the field), never a 5xx, and
nothing is stored: a body over the limit sent chunked, integers the store cannot hold,
invalid Unicode, control characters, JSON nested deeper than any message of ours."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE
from shared.jsondepth import MAX_DEPTH
from tests.integration.conftest import running
from tests.support import FMU, IOM, OPERATOR, isolated


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


async def test_deeply_nested_bodies_are_malformed_not_a_server_error() -> None:
    """A body nested deeper than MAX_DEPTH is a 400 problem before it is decoded, at every
    depth: just past the limit, where Python's decoder still copes but each walk over the
    value recurses per level, and far past it, where the decoder itself fails with a
    RecursionError. A body nested to the limit reaches validation (422: the field is not
    one of the note's)."""
    s = isolated(IntakeSettings)
    note = json.dumps({**CONCEPT_NOTE_EXAMPLE, "entity_reference": "HOSTILE-DEEP"}).encode()
    headers = {**IOM, "content-type": "application/json"}
    async with running(build_intake, s) as (_, rt, http):
        for depth in (MAX_DEPTH + 1, 900, 5_000, 100_000):
            body = note[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
            r = await http.post("/v1/concept-notes", content=body, headers=headers)
            assert r.status_code == 400, (depth, r.text[:300])
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "malformed-body"
            assert f"deeper than {MAX_DEPTH}" in r.json()["detail"]
        depth = MAX_DEPTH - 1  # with the note's own object: MAX_DEPTH levels
        body = note[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
        r = await http.post("/v1/concept-notes", content=body, headers=headers)
        assert r.status_code == 422, r.text[:300]
        assert [e["field"] for e in r.json()["errors"]] == ["x"]
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


async def test_personal_data_is_refused_in_every_free_text_field() -> None:
    """Withdrawal reasons, decision rationales and directory entries, like notes and
    reports: 422 personal-data naming the field, never the data, nothing stored."""
    from services.funding.app import FundingSettings
    from services.funding.app import build as build_funding
    from tests.support import FMU

    pii = "Maria Lopez Garcia, 34, from Honduras"
    s = isolated(IntakeSettings)
    async with running(build_intake, s) as (_, _rt, http):
        r = await http.post("/v1/concept-notes", headers=IOM, json=CONCEPT_NOTE_EXAMPLE)
        pid = r.json()["programme_id"]
        r = await http.post(f"/v1/programmes/{pid}/withdraw", headers=IOM,
                            json={"reason": f"Withdrawn after {pii} left"})
        assert r.status_code == 422 and r.json()["code"] == "personal-data", r.text
        assert "Lopez" not in r.text and r.json()["errors"][0]["reason"].startswith("reason")
        assert (await http.get(f"/v1/programmes/{pid}", headers=IOM)).json()["status"] != \
            "withdrawn"
    f = isolated(FundingSettings)
    async with running(build_funding, f) as (_, _rt, http):
        r = await http.post("/v1/decisions", headers=FMU, json={
            "programme_id": "jp-x", "decision": "reject", "decision_id": "sc-9",
            "rationale": "The focal point passport no. X12345678 was shared"})
        assert r.status_code == 422 and r.json()["code"] == "personal-data", r.text
    n = isolated(NotificationsSettings)
    async with running(build_notifications, n) as (_, _rt, http):
        r = await http.put("/v1/directory/UNHCR", headers=OPERATOR,
                           json={"name": "Contact ana.perez@gmail.com", "kind": "entity"})
        assert r.status_code == 422 and r.json()["code"] == "personal-data", r.text
        assert "ana.perez" not in r.text


async def test_webhooks_to_private_addresses_or_weak_secrets_are_refused() -> None:
    n = isolated(NotificationsSettings)  # outside tests' allowance: private is refused
    async with running(build_notifications, n) as (_, _rt, http):
        for url in ("https://127.1/hook", "https://2130706433/hook", "https://0x7f000001/h",
                    "https://localhost/hook", "https://localhost./hook"):
            r = await http.put("/v1/directory/UNHCR", headers=OPERATOR,
                               json={"webhook_url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.json()["errors"][0]["field"] == "webhook_url"
        r = await http.put("/v1/directory/UNHCR", headers=OPERATOR, json={
            "webhook_url": "https://8.8.8.8/hook", "webhook_secret": "change-me-please"})
        assert r.status_code == 422 and "webhook_secret" in r.text


async def test_an_instant_is_iso_8601_never_a_number_of_seconds() -> None:
    """pydantic alone reads `as_of=0.5` as half a second after 1970 and answers the Fund as it
    stood then; an instant here is ISO 8601 text (422 naming `as_of` otherwise), and one
    without a time zone is a 400."""
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, _rt, http):
        for path in ("/v1/fund", "/v1/pipeline"):
            for number in ("0.5", "1700000000", "-1", "1e9", " 42 "):
                r = await http.get(path, headers=FMU, params={"as_of": number})
                assert r.status_code == 422, (path, number, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert [e["field"] for e in r.json()["errors"]] == ["query.as_of"]
            r = await http.get(path, headers=FMU, params={"as_of": "2026-01-01T00:00:00"})
            assert r.status_code == 400, r.text
            r = await http.get(path, headers=FMU, params={"as_of": "2026-01-01T00:00:00Z"})
            assert r.status_code == 200, r.text


async def test_a_method_a_path_does_not_take_is_405_naming_those_it_does() -> None:
    """RFC 9110: a 405 carries `Allow` with every method the path takes (a path's GET and
    POST are two routes: both named), and is a problem."""
    for build, settings, cases in (
            (build_intake, IntakeSettings, (("TRACE", "/v1/concept-notes", {"POST"}),
                                            ("DELETE", "/v1/programmes", {"GET"}),
                                            ("PUT", "/healthz", {"GET"}))),
            (build_funding, FundingSettings, (("OPTIONS", "/v1/contributions", {"GET", "POST"}),
                                              ("DELETE", "/v1/contributions", {"GET", "POST"}),
                                              ("TRACE", "/v1/fund", {"GET"})))):
        async with running(build, isolated(settings)) as (_, _rt, http):
            for method, path, allowed in cases:
                r = await http.request(method, path, headers=FMU)
                assert r.status_code == 405, (method, path, r.text)
                assert {m.strip() for m in r.headers["allow"].split(",")} == allowed, path
                assert r.headers["content-type"] == "application/problem+json"
