"""The event envelope: CloudEvents 1.0 attributes in Kafka headers (the CloudEvents Kafka
protocol binding, binary content mode), the event data as the JSON value, W3C trace context
(`traceparent`, `tracestate`) in headers too.

    headers: ce_id, ce_source, ce_type, ce_specversion, ce_time, ce_subject,
             content-type: application/json, traceparent, tracestate
    key:     the subject (programme id, or contribution id for ledger money)
    value:   the event data, JSON

Entity systems may instead send structured mode (content-type
application/cloudevents+json, the whole envelope as the value, data under "data").
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.errors import PermanentMessageError
from shared.jsondepth import MAX_DEPTH, too_deep

SPECVERSION = "1.0"
JSON = "application/json"
STRUCTURED = "application/cloudevents+json"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The time a service acts at: the wall clock, or a fixed moment where a test (or a
    replay) sets one."""

    def __init__(self, fixed: datetime | None = None) -> None:
        self.fixed = fixed

    def now(self) -> datetime:
        return self.fixed or utcnow()

    def set(self, moment: datetime | None) -> None:
        self.fixed = moment


class Envelope(BaseModel):
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    specversion: str = SPECVERSION
    time: datetime = Field(default_factory=utcnow)
    subject: str | None = None
    datacontenttype: str = JSON
    traceparent: str | None = None
    tracestate: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        h = [
            ("ce_id", self.id),
            ("ce_source", self.source),
            ("ce_type", self.type),
            ("ce_specversion", self.specversion),
            ("ce_time", self.time.isoformat()),
            ("content-type", self.datacontenttype),
        ]
        if self.subject:
            h.append(("ce_subject", self.subject))
        if self.traceparent:
            h.append(("traceparent", self.traceparent))
        if self.tracestate:
            h.append(("tracestate", self.tracestate))
        return [(k, v.encode()) for k, v in h]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _header_map(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or ():
        if not k.isascii() and not _utf8(k):  # (read with surrogate escapes: lenient_records)
            name = k.encode("utf-8", "surrogateescape")
            raise PermanentMessageError("bad-header", f"header name {name!r} is not UTF-8")
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError as e:
                raise PermanentMessageError("bad-header", f"header {k!r} is not UTF-8") from e
        out[k] = v
    return out


def decode(headers: Any, value: bytes | None, *, max_bytes: int) -> tuple[Envelope, dict[str, Any]]:
    """Read an envelope and its JSON data from a Kafka record. Raises PermanentMessageError."""
    if value is None or value == b"":
        raise PermanentMessageError("empty-value", "the record has no value")
    if len(value) > max_bytes:
        raise PermanentMessageError("oversize", f"value of {len(value)} bytes exceeds {max_bytes}")
    h = _header_map(headers)
    if too_deep(value):
        raise PermanentMessageError("malformed-json",
                                    f"value is nested deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(value)
    except ValueError as e:  # not UTF-8, not JSON, or an integer of over 4,300 digits
        # (Python's limit on int(str): a plain ValueError, not a JSONDecodeError)
        raise PermanentMessageError("malformed-json", f"value is not JSON: {e}") from e
    ctype = h.get("content-type", "")
    if ctype.startswith(STRUCTURED):
        if not isinstance(body, dict) or "data" not in body:
            raise PermanentMessageError("bad-envelope", "structured CloudEvent without data")
        attrs = {k: v for k, v in body.items() if k != "data"}
        attrs.setdefault("traceparent", h.get("traceparent"))
        data = body["data"]
    else:
        attrs = {k[3:]: v for k, v in h.items() if k.startswith("ce_")}
        attrs["traceparent"] = h.get("traceparent")
        attrs["tracestate"] = h.get("tracestate")
        if ctype:
            attrs["datacontenttype"] = ctype
        data = body
    missing = [a for a in ("id", "source", "type", "specversion") if not attrs.get(a)]
    if missing:
        raise PermanentMessageError("bad-envelope", f"missing CloudEvents attributes: {missing}")
    if attrs["specversion"] != SPECVERSION:
        raise PermanentMessageError("bad-envelope", f"specversion {attrs['specversion']!r}")
    try:
        env = Envelope.model_validate(attrs)
    except ValueError as e:
        raise PermanentMessageError("bad-envelope", str(e)) from e
    if not isinstance(data, dict):
        raise PermanentMessageError("bad-data", "event data must be a JSON object")
    return env, data
