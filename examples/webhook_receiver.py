"""An example webhook receiver for entity systems and funders. Standalone: copy it.

The Migration MPTF signs its webhooks as the Standard Webhooks scheme says, so this receiver
verifies them with the scheme's own library (`pip install standardwebhooks`), not with code
of ours:

    webhook-id:         the delivery's id (the same on every retry): dedupe on it
    webhook-timestamp:  unix seconds; a verifier refuses more than 5 minutes off (replays)
    webhook-signature:  v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<raw body>")>
    X-MPTF-Event-Type:  the fact's CloudEvents type, or "digest"

The signature covers the id, so a receiver can trust the id it dedupes on. Deliveries are
at-least-once; this receiver records each id it has handled in a SQLite file, in the same
transaction as its own effect (here: storing the event), so a restart does not forget them.

Run:  MPTF_WEBHOOK_SECRET=whsec_... MPTF_WEBHOOK_DB=hooks.sqlite \\
      uvicorn examples.webhook_receiver:app --port 9000
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from standardwebhooks import Webhook, WebhookVerificationError


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether `headers` sign `body` (and its id) with `secret`, within the replay window."""
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature
        return False
    return True


class Inbox:
    """Handled delivery ids and what they said, kept durably (SQLite)."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS deliveries "
                        "(id TEXT PRIMARY KEY, event_type TEXT, body TEXT)")

    def handle(self, delivery_id: str, event_type: str, body: bytes) -> bool:
        """Store a delivery once; False when its id was handled before (a retry)."""
        try:
            with self.db:  # one transaction: the id and the effect together
                self.db.execute("INSERT INTO deliveries VALUES (?, ?, ?)",
                                (delivery_id, event_type, body.decode()))
        except sqlite3.IntegrityError:
            return False
        return True

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]


app = FastAPI(title="Example MPTF webhook receiver")
_inbox: list[Inbox] = []


def inbox() -> Inbox:
    if not _inbox:
        _inbox.append(Inbox(os.environ.get("MPTF_WEBHOOK_DB", "mptf-webhooks.sqlite")))
    return _inbox[0]


@app.post("/mptf-hook")
async def receive(request: Request) -> dict[str, str]:
    body = await request.body()
    if not verify(os.environ["MPTF_WEBHOOK_SECRET"], dict(request.headers), body):
        raise HTTPException(401, "bad signature")
    if not inbox().handle(request.headers["webhook-id"],
                        request.headers.get("x-mptf-event-type", ""), body):
        return {"status": "duplicate ignored"}
    event = json.loads(body)
    print(f"{request.headers.get('x-mptf-event-type')}: {event.get('subject', event)}")
    return {"status": "ok"}
