"""An example webhook receiver for entity systems and funders: it verifies the Migration
MPTF's signature and replay window, and dedupes by notification id. Standalone: copy it.

    X-MPTF-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    X-MPTF-Notification-Id: the id to dedupe on (deliveries are at-least-once)
    X-MPTF-Event-Type: the fact's CloudEvents type, or "digest"

Run:  MPTF_WEBHOOK_SECRET=... uvicorn examples.webhook_receiver:app --port 9000
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

from fastapi import FastAPI, HTTPException, Request

REPLAY_WINDOW_SECONDS = 300


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        ts, given = int(fields["t"]), fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > REPLAY_WINDOW_SECONDS:
        return False  # too old (or from the future): a replay
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


app = FastAPI(title="Example MPTF webhook receiver")
seen: set[str] = set()


@app.post("/mptf-hook")
async def receive(request: Request) -> dict[str, str]:
    body = await request.body()
    if not verify_signature(os.environ["MPTF_WEBHOOK_SECRET"],
                            request.headers.get("x-mptf-signature", ""), body):
        raise HTTPException(401, "bad signature")
    nid = request.headers.get("x-mptf-notification-id", "")
    if nid in seen:
        return {"status": "duplicate ignored"}
    seen.add(nid)
    event = json.loads(body)
    print(f"{request.headers.get('x-mptf-event-type')}: {event.get('subject', event)}")
    return {"status": "ok"}
