"""shared.lenient_records on batches built as a client that writes header names as bytes
would: a name that is not UTF-8 is read with surrogate escapes, in a plain or compressed
batch, wherever it falls in the batch; batches aiokafka's C reader can read come from it."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from shared.lenient_records import LenientRecords, escaped
from tests.wire import NOT_UTF8, NOT_UTF8_ESCAPED, NotUtf8Name


def batch(values: list[bytes], bad_at: int | None, codec: int = 0, base: int = 0) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(magic=2, compression_type=codec, is_transactional=0,
                                           producer_id=-1, producer_epoch=-1,
                                           base_sequence=-1, batch_size=1 << 20)
    for n, value in enumerate(values):
        name = NotUtf8Name("x") if n == bad_at else "ce_id"
        builder.append(n, timestamp=None, key=None, value=value,
                       headers=[(name, b"1")])
    out = bytearray(builder.build())
    out[0:8] = base.to_bytes(8, "big")  # the base offset, as the broker sets it
    return bytes(out)


def read(data: bytes) -> list[tuple[int, bytes, str]]:
    records = LenientRecords(data)
    out = []
    while records.has_next():
        for r in records.next_batch():
            out.append((r.offset, r.value, r.headers[0][0]))
    return out


@pytest.mark.parametrize("bad_at", [0, 1, 2])
@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])  # none, gzip, snappy, lz4, zstd
def test_a_header_name_that_is_not_utf8_is_read_with_surrogate_escapes(bad_at: int,
                                                                      codec: int) -> None:
    data = batch([b"a", b"b", b"c"], bad_at, codec) + batch([b"d"], None, codec, base=3)
    got = read(data)
    assert [(o, v) for o, v, _ in got] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    names = [n for _, _, n in got]
    assert names[bad_at] == NOT_UTF8.decode("utf-8", "surrogateescape")
    assert escaped(names[bad_at]) == NOT_UTF8_ESCAPED
    assert [n for i, n in enumerate(names) if i != bad_at] == ["ce_id"] * 3


def test_readable_batches_come_from_the_c_reader_and_iterate_as_it_does() -> None:
    records = LenientRecords(batch([b"a", b"b"], None))
    first = records.next_batch()
    assert type(first._fast).__module__.startswith("aiokafka.record._crecords")
    assert next(first).value == b"a"  # (aiokafka takes a control batch's first record so)
    assert [r.value for r in first] == [b"b"]
    assert escaped("ce_id") == "ce_id" and escaped("é") == "é"
