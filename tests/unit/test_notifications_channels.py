"""Notifications' senders: the webhook client is made at the first webhook, not at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from services.notifications.channels import Senders


def senders() -> Senders:
    return Senders(timeout=5, max_response_bytes=1024, allow_private=False,
                   smtp_host="127.0.0.1", smtp_port=8025, email_from="n@example.org")


async def test_the_webhook_client_is_made_once_at_first_use_and_closed() -> None:
    s = senders()
    assert s._http is None  # a start that sends no webhook makes none
    client = s.http
    assert isinstance(client, httpx.AsyncClient) and s.http is client
    assert client.timeout.read == 5 and not client.follow_redirects
    await s.close()
    assert client.is_closed


async def test_closing_senders_that_never_sent_a_webhook_is_harmless() -> None:
    s = senders()
    await s.close()
    assert s._http is None


def test_starting_notifications_imports_no_http_client() -> None:
    """httpx (and the click CLI it imports) is imported at the first webhook, not by the
    service's modules: in a fresh interpreter, the service imported, httpx is not."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", "import sys, services.notifications.app; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore')))"],
        cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


async def test_a_webhook_imports_the_client_and_sends_through_it() -> None:
    """The first webhook makes the client (importing httpx then) and sends through it: a
    refused host is answered as a delivery error, not an import error."""
    from services.notifications.channels import DeliveryError
    from services.notifications.domain import Contact

    s = senders()
    contact = Contact("IOM", "http://127.0.0.1:9/hook", "secret", None, ("*",), "immediate")
    doc = {"_id": "n-1", "fact_id": "f-1", "fact_type": "t", "programme_id": "jp-1",
           "recipient": "IOM", "subject": "s", "text": "t"}
    try:
        s.allow_private = True  # (a closed local port: the request itself fails)
        try:
            await s.send("webhook", contact, [doc])
        except DeliveryError as e:
            assert "calling http://127.0.0.1:9/hook" in str(e)
        else:
            raise AssertionError("a webhook to a closed port was not refused")
        assert s._http is not None
    finally:
        await s.close()
