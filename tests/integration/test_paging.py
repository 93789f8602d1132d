"""Lists that stay small: every list route pages with `limit` and an opaque cursor, in a
stable order, each item once, the next page named by `X-Next-Cursor` and a `Link` header;
a cursor the API did not give is a 400 problem; the page size has a maximum."""

from __future__ import annotations

from typing import Any

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from tests.integration.conftest import running
from tests.integration.test_funding_api import screened, setup
from tests.support import FMU, OPERATOR, isolated, pledge_and_deposit


async def walk(http: Any, path: str, headers: dict[str, str], limit: int
               ) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        r = await http.get(path, headers=headers, params=params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        nxt = r.headers.get("x-next-cursor")
        if not nxt:
            assert "link" not in r.headers
            return pages
        assert r.headers["link"].endswith('>; rel="next"') and f"cursor={nxt}" in r.headers[
            "link"]
        assert len(r.json()) == limit
        params["cursor"] = nxt


async def test_funding_lists_page_through_every_item_once_in_order() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        pids = [f"jp-p{i}" for i in range(7)]
        await setup(http, rt, s, *(screened(p) for p in pids))
        for i in range(5):
            await pledge_and_deposit(http, f"c-{i}", "DEU", "1000")  # 990 net: funds nothing
        for i, p in enumerate(pids):  # priorities out of insertion order
            r = await http.post("/v1/decisions", headers=FMU, json={
                "programme_id": p, "decision": "approve", "decision_id": f"sc-{p}",
                "priority": 7 - i})
            assert r.status_code == 201 and r.json()["allocated"] is False
        pages = await walk(http, "/v1/pipeline", FMU, 3)
        items = [x for page in pages for x in page]
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [x["programme_id"] for x in items] == list(reversed(pids))  # by priority
        assert [x["rank"] for x in items] == list(range(1, 8))  # ranks across pages
        pages = await walk(http, "/v1/contributions", FMU, 2)
        assert [c["contribution_id"] for p in pages for c in p] == [f"c-{i}" for i in range(5)]
        # a new item while paging does not repeat or skip one: keyset, not offsets
        first = await http.get("/v1/contributions", headers=FMU, params={"limit": 2})
        await pledge_and_deposit(http, "c-9", "DEU", "1000")
        rest = await http.get("/v1/contributions", headers=FMU, params={
            "limit": 10, "cursor": first.headers["x-next-cursor"]})
        assert [c["contribution_id"] for c in first.json() + rest.json()] == [
            "c-0", "c-1", "c-2", "c-3", "c-4", "c-9"]
        for bad in ("garbage", "W10", "e30"):  # not base64 JSON, a list of the wrong size
            r = await http.get("/v1/pipeline", headers=FMU, params={"cursor": bad})
            assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cursor"
        r = await http.get("/v1/allocations", headers=FMU, params={"limit": 100_000})
        assert r.status_code == 422  # beyond the maximum page size


async def test_the_delivery_log_and_directory_page_too() -> None:
    s = isolated(NotificationsSettings)
    async with running(build_notifications, s) as (_, _rt, http):
        pages = await walk(http, "/v1/directory", OPERATOR, 4)
        codes = [c["code"] for p in pages for c in p]
        assert len(pages) > 2 and codes == sorted(set(codes))  # each once, by code
        assert (await http.get("/v1/deliveries", headers=OPERATOR)).json() == []
