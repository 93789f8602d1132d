"""The CloudEvents envelope in Kafka headers: round trip, structured mode, and every way a
record can be unreadable (each a named reason)."""

from __future__ import annotations

import json

import pytest

from shared.envelope import Envelope, decode
from shared.errors import PermanentMessageError

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_binary_mode_round_trip_keeps_every_attribute() -> None:
    env = Envelope(source="/mptf/intake", type="org.migrationmptf.programme.submitted.v1",
                   subject="jp-1", traceparent=TP)
    got, data = decode(env.headers(), b'{"a": 1}', max_bytes=1000)
    assert got == env
    assert data == {"a": 1}
    names = [k for k, _ in env.headers()]
    assert names[:6] == ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time",
                         "content-type"]
    assert ("traceparent", TP.encode()) in env.headers()


def test_structured_mode_is_accepted_from_entity_systems() -> None:
    body = {"id": "e-1", "source": "urn:mptf:entity:IOM", "specversion": "1.0",
            "type": "org.migrationmptf.concept-note.submit.v1", "data": {"x": 1}}
    env, data = decode([("content-type", b"application/cloudevents+json"),
                        ("traceparent", TP.encode())], json.dumps(body).encode(),
                       max_bytes=1000)
    assert (env.id, env.source, env.traceparent, data) == ("e-1", "urn:mptf:entity:IOM", TP,
                                                           {"x": 1})


@pytest.mark.parametrize(("headers", "value", "reason"), [
    (Envelope(source="s", type="t").headers(), b"", "empty-value"),
    (Envelope(source="s", type="t").headers(), b"x" * 101, "oversize"),
    (Envelope(source="s", type="t").headers(), b"{nope", "malformed-json"),
    (Envelope(source="s", type="t").headers(), b"\xff\xfe", "malformed-json"),
    # past Python's limit on integer digits (4,300): a ValueError, not a JSONDecodeError
    (Envelope(source="s", type="t").headers(), b'{"a": ' + b"9" * 5000 + b"}", "malformed-json"),
    (Envelope(source="s", type="t").headers(), b"[1, 2]", "bad-data"),
    ([("ce_id", b"1")], b"{}", "bad-envelope"),
    ([("ce_id", b"\xff")], b"{}", "bad-header"),
    ([(k, v) if k != "ce_specversion" else (k, b"0.3")
      for k, v in Envelope(source="s", type="t").headers()], b"{}", "bad-envelope"),
    ([("content-type", b"application/cloudevents+json")], b'{"id": "1"}', "bad-envelope"),
])
def test_unreadable_records_are_named(headers, value, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PermanentMessageError) as e:
        decode(headers, value, max_bytes=100 if reason == "oversize" else 10_000)
    assert e.value.reason == reason
