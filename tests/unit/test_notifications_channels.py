"""Notifications' senders: the webhook client is made at the first webhook, not at start."""

from __future__ import annotations

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
