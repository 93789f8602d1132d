"""What a Kafka client that writes bytes can put on the wire and ours cannot, for tests (no
side effects on import: unit tests use it too)."""

from __future__ import annotations

from typing import Any

# a header name's bytes that are not UTF-8, and how a dead letter keeps them (escaped)
NOT_UTF8 = b"x-\xff\xfe"
NOT_UTF8_ESCAPED = "x-\\xff\\xfe"


class NotUtf8Name(str):
    """A header name whose bytes on the wire are NOT_UTF8, as any client that writes names
    as bytes can send it: aiokafka's Python batch builder writes what `encode` gives."""

    def encode(self, *args: Any, **kw: Any) -> bytes:  # type: ignore[override]
        return NOT_UTF8
