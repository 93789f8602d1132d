"""Notifications' HTTP routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.notifications.store import NotificationsStore
from shared.auth import require
from shared.settings import Principal

router = APIRouter(prefix="/v1")


def _store(request: Request) -> NotificationsStore:
    return request.app.state.store


def _out(d: dict[str, Any]) -> dict[str, Any]:
    d["notification_id"] = d.pop("_id")
    return d


@router.get("/deliveries", tags=["delivery log"], summary="The delivery log (role operator)")
async def deliveries(
    request: Request, _: Annotated[Principal, Depends(require("operator"))],
    programme_id: str | None = None, recipient: str | None = None,
    channel: str | None = None, status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    q = {k: v for k, v in {"programme_id": programme_id, "recipient": recipient,
                           "channel": channel, "status": status}.items() if v}
    return [_out(d) for d in await _store(request).deliveries(q, limit)]


@router.get("/inbox", tags=["inbox"], summary="The caller's own in-app messages (role entity)")
async def inbox(
    request: Request, who: Annotated[Principal, Depends(require("entity"))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    q = {"recipient": (who.entity or "").upper(), "channel": "inbox"}
    return [_out(d) for d in await _store(request).deliveries(q, limit)]
