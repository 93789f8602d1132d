"""The outgoing channels: signed webhooks (httpx) and e-mail (SMTP, aiosmtplib). Each send is
time-limited; webhook responses are size-limited; webhook hosts are resolved and refused if
they are not public (unless the deployment allows private addresses, as tests do)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiosmtplib

from services.notifications.domain import Contact, check_address, sign

if TYPE_CHECKING:
    import httpx


class DeliveryError(Exception):
    """A send that did not succeed (retried with backoff, dead after the last attempt)."""


def payload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    items = [{"notification_id": d["_id"], "fact_id": d["fact_id"], "fact_type": d["fact_type"],
              "programme_id": d["programme_id"], "recipient": d["recipient"],
              "subject": d["subject"], "text": d["text"],
              # the fact itself (its contract's fields: for an allocation, the amounts per
              # PUNO, the support cost and the contributions that funded it)
              "data": d.get("data")} for d in docs]
    if len(items) == 1 and not docs[0].get("digest"):
        return items[0]
    return {"digest": True, "notifications": items}


def group_id(docs: list[dict[str, Any]]) -> str:
    if len(docs) == 1:
        return docs[0]["_id"]
    return "d-" + hashlib.sha256("|".join(sorted(d["_id"] for d in docs)).encode()
                                 ).hexdigest()[:24]


class Senders:
    def __init__(self, *, timeout: float, max_response_bytes: int, allow_private: bool,
                 smtp_host: str, smtp_port: int, email_from: str) -> None:
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.allow_private = allow_private
        self.smtp_host, self.smtp_port, self.email_from = smtp_host, smtp_port, email_from
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """The webhook client, made at the first webhook sent: importing httpx (its CLI and
        click with it) and making the client (the CA bundle, httpcore) cost ~70 ms of CPU,
        which a start that sends none need not pay before it is ready (issue 17)."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def endpoint(self, channel: str, contact: Contact) -> str:
        if channel == "webhook":
            return f"webhook:{urlsplit(contact.webhook_url or '').netloc}"
        return f"smtp:{self.smtp_host}:{self.smtp_port}"

    async def send(self, channel: str, contact: Contact, docs: list[dict[str, Any]]) -> None:
        try:
            await asyncio.wait_for(self._send(channel, contact, docs), self.timeout)
        except TimeoutError as e:
            raise DeliveryError(f"{channel} timed out after {self.timeout}s") from e

    async def _send(self, channel: str, contact: Contact, docs: list[dict[str, Any]]) -> None:
        if channel == "webhook":
            await self._webhook(contact, docs)
        elif channel == "email":
            await self._email(contact, docs)
        else:
            raise DeliveryError(f"no sender for channel {channel}")

    async def _webhook(self, contact: Contact, docs: list[dict[str, Any]]) -> None:
        url = contact.webhook_url or ""
        u = urlsplit(url)
        host = u.hostname or ""
        port = u.port or (443 if u.scheme == "https" else 80)
        # the name is resolved once, every address it has is checked, and the request goes
        # to the checked address (the Host header and TLS name stay the name's): a name
        # that resolves elsewhere a moment later (DNS rebinding) cannot redirect it
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
            if not self.allow_private:
                for info in infos:
                    check_address(info[4][0])
        except (ValueError, socket.gaierror) as e:
            raise DeliveryError(f"refused webhook host {host}: {e}") from e
        ip = infos[0][4][0]
        target = u._replace(netloc=f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}").geturl()
        body = json.dumps(payload(docs), separators=(",", ":")).encode()
        nid = group_id(docs)
        headers = {"content-type": "application/json", "host": u.netloc.rsplit("@", 1)[-1],
                   **sign(contact.webhook_secret or "", nid, body),
                   "X-MPTF-Notification-Id": nid,
                   "X-MPTF-Event-Type": docs[0]["fact_type"] if len(docs) == 1 else "digest"}
        extensions = {"sni_hostname": host} if u.scheme == "https" else {}
        http = self.http
        import httpx  # (imported by the client's making)

        try:
            async with http.stream("POST", target, content=body, headers=headers,
                                        extensions=extensions) as r:
                seen = 0
                async for chunk in r.aiter_bytes():  # read no more than the limit
                    seen += len(chunk)
                    if seen > self.max_response_bytes:
                        break
                if not 200 <= r.status_code < 300:
                    raise DeliveryError(f"HTTP {r.status_code} from {url}")
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__} calling {url}: {e}") from e

    async def _email(self, contact: Contact, docs: list[dict[str, Any]]) -> None:
        msg = EmailMessage()
        msg["From"] = self.email_from
        msg["To"] = contact.email or ""
        msg["Message-ID"] = f"<{group_id(docs)}@notifications.migrationmptf.org>"
        if len(docs) == 1 and not docs[0].get("digest"):
            msg["Subject"] = docs[0]["subject"]
            msg.set_content(docs[0]["text"])
            msg.add_alternative(docs[0]["html"], subtype="html")
        else:
            msg["Subject"] = f"Migration MPTF: {len(docs)} notifications"
            msg.set_content("\n\n".join(f"{d['subject']}\n{d['text']}" for d in docs))
            msg.add_alternative("<hr>".join(d["html"] for d in docs), subtype="html")
        try:
            await aiosmtplib.send(msg, hostname=self.smtp_host, port=self.smtp_port,
                                  timeout=self.timeout)
        except (aiosmtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP {self.smtp_host}:{self.smtp_port}: {e}") from e
