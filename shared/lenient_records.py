"""Records whose header names are not UTF-8, read instead of stopping the consumer.

Kafka's protocol makes a header name a string, but any client that writes bytes (librdkafka's
`rd_kafka_header_add`, kcat, Go clients) can send a name that is not UTF-8. aiokafka decodes
names strictly while it unpacks a fetched batch, so such a record raises UnicodeDecodeError
out of `getmany`, at every poll: the partition never moves past it, the records fetched
before it in the same poll are not returned, and FastStream's consume loop, which expects
only Kafka's own errors there, ends (the subscription stops consuming every partition).

`install()` (done by `shared.kafka`, which every consumer imports) wraps aiokafka's reader
of fetched data: every batch is read by its fast C reader as before, and only a batch that
reader cannot read is read again by aiokafka's own Python reader, with header names decoded
losslessly (undecodable bytes as surrogate escapes, PEP 383). The record then reaches the
consumer, which dead-letters it as `bad-header` (shared.envelope) with its name escaped
(shared.kafka.DeadLetters), and the partition moves on.

Written against aiokafka 0.14 (pinned in pyproject.toml); tests/integration/test_consumer.py
sends such a record between two good ones and fails if the reader's internals change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords as _FastRecords

# a batch starts with its base offset (8 bytes) and the length of the rest (4 bytes), in
# every message format
_LENGTH_AT, _PREFIX = 8, 12


class _LenientBytes(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    """A batch's bytes whose slices decode with surrogate escapes (the Python reader
    decodes each header name from a slice of its buffer)."""

    def __getitem__(self, i: Any) -> Any:
        got = bytearray.__getitem__(self, i)
        return _LenientBytes(got) if isinstance(i, slice) else got


class _LenientBatch(_DefaultRecordBatchPy):
    def __init__(self, buffer: bytes) -> None:
        super().__init__(buffer)
        self._buffer = _LenientBuffer(self._buffer)

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()  # (a compressed batch's records get a new buffer)
        if not isinstance(self._buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(self._buffer)


class _Batch:
    """One fetched batch: aiokafka's C reader's, read again leniently where it fails. An
    iterator over its records, as the C reader's batch is (aiokafka takes the first record
    of a control batch with next())."""

    __slots__ = ("_data", "_fast", "_records", "_size", "_start")

    def __init__(self, fast: Any, data: bytes, start: int, size: int) -> None:
        self._fast, self._data, self._start, self._size = fast, data, start, size
        self._records: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fast, name)

    def __iter__(self) -> _Batch:
        return self

    def __next__(self) -> Any:
        if self._records is None:
            self._records = self._read()
        return next(self._records)

    def _read(self) -> Iterator[Any]:
        done = 0
        try:
            for record in self._fast:
                yield record
                done += 1
        except UnicodeDecodeError:
            lenient = _LenientBatch(self._data[self._start:self._start + self._size])
            for n, record in enumerate(lenient):
                if n >= done:
                    yield record


class LenientRecords:
    """aiokafka's MemoryRecords for fetched data, keeping the data so that a batch can be
    read again."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0
        self._fast = _FastRecords(data)

    def size_in_bytes(self) -> int:
        return self._fast.size_in_bytes()

    def has_next(self) -> bool:
        return self._fast.has_next()

    def next_batch(self) -> Any:
        batch = self._fast.next_batch()
        if batch is None:
            return None
        start = self._pos
        size = _PREFIX + int.from_bytes(self._data[start + _LENGTH_AT:start + _PREFIX], "big",
                                        signed=True)
        self._pos = start + size
        return _Batch(batch, self._data, start, size)


def install() -> None:
    """aiokafka's consumers (in this process) read fetched data through LenientRecords."""
    fetcher.MemoryRecords = LenientRecords  # type: ignore[misc,assignment]


def escaped(name: str) -> str:
    """A header name as valid text: itself when it is, else its bytes escaped (\\xff)."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
