"""Keyset pagination, the same on every list route: a stable order (the route's sort keys,
then `_id`), a page of at most `limit` (capped at MAX_LIMIT), and an opaque cursor that
names the last item of the page. The next page is everything after it in that order, so a
page never repeats or skips an item however the collection grows between requests.

Routes answer their list as before and say where the next page is in headers:
`X-Next-Cursor: <cursor>` and `Link: <...?cursor=...&limit=...>; rel="next"` (RFC 8288);
no such headers on the last page.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from fastapi import Request, Response

from shared.errors import BadRequest
from shared.jsondepth import too_deep

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"$dt": v.isoformat()}
    if hasattr(v, "to_decimal"):  # a Decimal128
        from shared.dec128 import dec

        return {"$dec": str(dec(v))}
    return v


def _typed(v: Any) -> Any:
    if isinstance(v, dict) and "$dt" in v:
        return datetime.fromisoformat(v["$dt"])
    if isinstance(v, dict) and "$dec" in v:
        from shared.dec128 import d128

        return d128(v["$dec"])
    return v


def encode(values: list[Any]) -> str:
    raw = json.dumps([_plain(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, n: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if too_deep(raw):
            raise ValueError("nested too deeply")
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != n:
            raise ValueError("shape")
        return [_typed(v) for v in values]
    except (ValueError, TypeError) as e:
        raise BadRequest("invalid cursor", errors=[
            {"field": "cursor", "reason": "not a cursor this API returned"}]) from e


def after_parts(sort: list[tuple[str, int]], values: list[Any]) -> list[dict[str, Any]]:
    """What comes after `values` in `sort` order (keyset), as disjoint conjunctions in the
    order their items come: the ties on every key but the last first, the items past the
    first key last. Each is an equality prefix and one range, which an index on the sort
    keys answers without a scan (an `$or` of them is not, by every server: the local one
    scans the whole collection for it)."""
    parts = []
    for i, (key, direction) in enumerate(sort):
        cond: dict[str, Any] = {k: values[j] for j, (k, _) in enumerate(sort[:i])}
        cond[key] = {"$gt" if direction > 0 else "$lt": values[i]}
        parts.append(cond)
    return parts[::-1]


def _and(query: dict[str, Any], cond: dict[str, Any]) -> dict[str, Any]:
    return {"$and": [query, cond]} if query else cond


async def page(coll: Any, query: dict[str, Any], sort: list[tuple[str, int]],
               cursor: str | None, limit: int, projection: dict[str, Any] | None = None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of `query` in `sort` order (`_id` added last, so the order is total) and the
    cursor of the next page (None on the last)."""
    sort = [*sort, ("_id", 1)] if all(k != "_id" for k, _ in sort) else sort
    limit = max(1, min(limit, MAX_LIMIT))
    if not cursor:
        docs = await coll.find(query, projection).sort(sort).limit(limit + 1).to_list(None)
    else:  # one indexed query per part, in order, until the page is full
        docs = []
        for cond in after_parts(sort, decode(cursor, len(sort))):
            docs += await coll.find(_and(query, cond), projection).sort(sort).limit(
                limit + 1 - len(docs)).to_list(None)
            if len(docs) > limit:
                break
    if len(docs) <= limit:
        return docs, None
    docs = docs[:limit]
    last = docs[-1]
    return docs, encode([_get(last, k) for k, _ in sort])


def _get(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def link(request: Request, response: Response, cursor: str | None, limit: int) -> None:
    """Tell the caller where the next page is (nothing on the last page)."""
    if not cursor:
        return
    url = request.url.include_query_params(cursor=cursor, limit=limit)
    response.headers["X-Next-Cursor"] = cursor
    response.headers["Link"] = f'<{url}>; rel="next"'


async def count_before(coll: Any, query: dict[str, Any], sort: list[tuple[str, int]],
                       doc: dict[str, Any]) -> int:
    """How many of `query` come before `doc` in `sort` order (its rank, from 0)."""
    sort = [*sort, ("_id", 1)] if all(k != "_id" for k, _ in sort) else sort
    back = [(k, -d) for k, d in sort]
    return sum([await coll.count_documents(_and(query, cond))
                for cond in after_parts(back, [_get(doc, k) for k, _ in sort])])
