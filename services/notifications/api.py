"""Notifications' HTTP routes: the directory, the inbox, the delivery log and its dead
letters."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ConfigDict, EmailStr, Field, field_validator

from services.notifications.domain import (
    FMU,
    SECRET_PATTERN,
    check_address,
    check_webhook_secret,
    check_webhook_url,
    new_webhook_secret,
    rco,
)
from services.notifications.store import NotificationsStore
from shared import paging
from shared.auth import require
from shared.contracts.base import SafeInput
from shared.envelope import utcnow
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.http import exact
from shared.settings import Principal

router = APIRouter(prefix="/v1")
OPERATOR = Depends(require("operator"))
INBOX = Depends(require("entity", "funder", "fmu", "rco"))  # each its own


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {401: "No or unknown bearer token", 403: "Wrong role, or not your entry",
             404: "Not found", 422: "Invalid fields (a webhook URL that is not allowed, say)"}
    return {c: {"description": words[c]} for c in codes}  # (as problem+json: document_answers)


def _store(request: Request) -> NotificationsStore:
    return request.app.state.store


def _out(d: dict[str, Any]) -> dict[str, Any]:
    """A row of the log (NotificationsStore.deliveries: what a row shows) as answered."""
    d = dict(d)
    d["notification_id"] = d.pop("_id")
    return exact(d)


def _me(who: Principal) -> str:
    if who.role == "entity":
        return (who.entity or "").upper()
    if who.role == "funder":
        return (who.contributor or "").upper()
    if who.role == "rco":
        return rco(who.country or "")
    return FMU


@router.get("/deliveries", tags=["delivery log"], responses=_problems(401, 403),
            summary="The delivery log (role operator); status=dead lists the dead letters")
async def deliveries(
    request: Request, response: Response, _: Annotated[Principal, OPERATOR],
    programme_id: str | None = None, recipient: str | None = None,
    channel: Literal["inbox", "webhook", "email"] | None = None,
    status: Literal["pending", "sending", "delivered", "dead"] | None = None,
    fact_type: str | None = None, cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Newest first; pages of `limit` (next page: the `Link` and `X-Next-Cursor` headers)."""
    q = {k: v for k, v in {"programme_id": programme_id, "recipient": recipient,
                           "channel": channel, "status": status,
                           "fact_type": fact_type}.items() if v}
    docs, nxt = await _store(request).deliveries(q, cursor, limit)
    paging.link(request, response, nxt, limit)
    return [_out(d) for d in docs]


@router.post("/deliveries/{notification_id}/replay", tags=["delivery log"],
             responses=_problems(401, 403, 404),
             summary="Send a dead delivery again (role operator)")
async def replay(notification_id: str, request: Request, _: Annotated[Principal, OPERATOR]
                 ) -> dict[str, Any]:
    if not await _store(request).replay(notification_id, utcnow()):
        raise NotFound(f"no dead delivery {notification_id}")
    request.app.state.dispatcher.wake.set()
    return {"notification_id": notification_id, "status": "pending"}


@router.get("/inbox", tags=["inbox"], responses=_problems(401),
            summary="The caller's own in-app messages (entity, funder, RC office, or the FMU)")
async def inbox(
    request: Request, response: Response, who: Annotated[Principal, INBOX],
    unread: bool = False, cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Newest first; pages of `limit` (next page: the `Link` and `X-Next-Cursor` headers)."""
    q: dict[str, Any] = {"recipient": _me(who), "channel": "inbox"}
    if unread:
        q["read"] = False
    docs, nxt = await _store(request).deliveries(q, cursor, limit)
    paging.link(request, response, nxt, limit)
    return [_out(d) for d in docs]


@router.post("/inbox/{notification_id}/read", tags=["inbox"], responses=_problems(401, 404),
             summary="Mark one of the caller's messages read")
async def mark_read(notification_id: str, request: Request,
                    who: Annotated[Principal, INBOX]
                    ) -> dict[str, Any]:
    if not await _store(request).mark_read(notification_id, _me(who)):
        raise NotFound(f"no message {notification_id} in your inbox")
    return {"notification_id": notification_id, "read": True}


class ContactIn(SafeInput):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "International Labour Organization", "kind": "entity",
         "webhook_url": "https://mptf-hooks.ilo.org/notifications",
         "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3YLMn0mTiUY=",
         "email": "migration-mptf@ilo.org",
         "event_types": ["org.migrationmptf.allocation.made.v1",
                         "org.migrationmptf.report.overdue.v1"], "mode": "immediate"}]})
    PRIVACY_EXEMPT = frozenset({"email", "webhook_url", "webhook_secret", "event_types"})

    name: str | None = Field(None, max_length=200)
    kind: Literal["entity", "rco", "fmu", "contributor"] | None = None
    webhook_url: str | None = Field(None, max_length=2000)
    # Standard Webhooks: whsec_<base64 of >= 32 random bytes>; made here when not given
    webhook_secret: Annotated[str, Field(max_length=200, json_schema_extra={
        "pattern": SECRET_PATTERN})] | None = None

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        return None if v is None else check_webhook_secret(v)
    email: EmailStr | None = None
    event_types: list[str] = Field(default_factory=lambda: ["*"], max_length=50)
    mode: Literal["immediate", "digest"] = "immediate"


@router.get("/directory", tags=["directory"], responses=_problems(401, 403),
            summary="Recipients and their contact points (role operator)")
async def directory(request: Request, response: Response,
                    _: Annotated[Principal, OPERATOR], cursor: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = 100
                    ) -> list[dict[str, Any]]:
    """By code; pages of `limit` (next page: the `Link` and `X-Next-Cursor` headers)."""
    docs, nxt = await _store(request).page("directory", {}, [("_id", 1)], cursor, limit)
    paging.link(request, response, nxt, limit)
    return [{"code": d["_id"], **{k: v for k, v in d.items()
                                  if k not in ("_id", "webhook_secret")}} for d in docs]


@router.put("/directory/{code}", tags=["directory"], responses=_problems(401, 403, 422),
            summary="Set a recipient's contact points: operators for anyone, an entity or a "
                    "funder for itself (a funder registers its webhook here)")
async def put_contact(code: str, body: ContactIn, request: Request,
                      who: Annotated[Principal, Depends(require("operator", "entity",
                                                                "funder"))]
                      ) -> dict[str, Any]:
    code = code.upper()
    if who.role != "operator" and code != _me(who):
        raise Forbidden("you may only set your own contact points")
    doc = body.model_dump(exclude_none=True)
    if body.webhook_url:
        allow_private = request.app.state.settings.allow_private_webhooks
        try:
            check_webhook_url(body.webhook_url, allow_private=allow_private)
            if not allow_private:  # a name that resolves to a private address is refused too
                host = urlsplit(body.webhook_url).hostname or ""
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
                except OSError:
                    infos = []  # not resolvable yet: checked again when sending
                for info in infos:
                    check_address(str(info[4][0]))
        except ValueError as e:
            raise InvalidInput("webhook URL not allowed",
                               errors=[{"field": "webhook_url", "reason": str(e)}]) from e
        doc.setdefault("webhook_secret", new_webhook_secret())
    if who.role == "funder":
        doc["kind"] = "contributor"
    saved = await _store(request).put_contact(code, doc)
    # the secret is shown to whoever sets it, so the receiver can verify signatures
    saved["code"] = saved.pop("_id")
    return saved
