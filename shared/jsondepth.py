"""How deep JSON from outside may nest, checked on its bytes before it is decoded.

Python's `json.loads` fails with a RecursionError (not a ValueError) past about a thousand
levels, and below that every walk over the decoded value (validation, the search for
personal data, a dead letter's redaction) recurses once per level: a few kilobytes of
brackets could make a record fail the same way at every delivery, or a request answer 500.
No message of ours nests more than a handful of levels, so anything from outside (a Kafka
record's value, an HTTP body, a list cursor) deeper than MAX_DEPTH is refused as malformed
before it is decoded."""

from __future__ import annotations

import re

MAX_DEPTH = 64

# a JSON string (skipped whole: brackets inside text do not nest), or one bracket
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPEN = frozenset(b"[{")


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `raw` has arrays or objects nested more than `limit` deep.
    Text with no more opening brackets than `limit` cannot be (two counts in C, the usual
    case); otherwise its brackets outside strings are followed. Bytes that are not JSON get
    an answer too, which decoding them then refuses anyway."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for m in _TOKEN.finditer(raw):
        start = m.start()
        if m.end() - start != 1:
            continue  # a string
        if raw[start] in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
