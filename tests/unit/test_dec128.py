"""shared.dec128 converts money to and from Decimal128 exactly as bson does: the same bits, the
same Decimal (digits, exponent, sign), the same errors, for edge cases and random values."""

from __future__ import annotations

import decimal
import random
from decimal import Decimal

import pytest
from bson import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.dec128 import amount, d128, dec

EDGES = [
    "0", "-0", "0.00", "-0.00", "0E-6176", "-0E-6176", "0E+6111", "0E+6144", "0E+9999",
    "0E-9999", "1", "-1", "1.50", "1.5", "0.01", "-0.01", "250000", "12345678.90",
    "1E-6176", "-1E-6176", "1E-6177", "1E6144", "-1E6144", "1E6145", "1E6111", "1E6112",
    "9.999999999999999999999999999999999E6144", "9999999999999999999999999999999999",
    "-9999999999999999999999999999999999", "99999999999999999999999999999999999",
    "1234567890123456789012345678901234", "12345678901234567890123456789012345",
    "1234567890123456789012345678901234E-6176", "1234567890123456789012345678901234E6111",
    "1234567890123456789012345678901234E6112", str(2**64), str(2**64 - 1), str(2**64 + 1),
    str(2**112), str(2**113), str(2**63), "18446744073709551616E-20",
    "5192296858534827628530496329220095",
    "Infinity", "-Infinity", "inf", "NaN", "-NaN", "sNaN", "-sNaN", "NaN123", "sNaN1",
    ".13.1", "", "abc", "1e", " 1 ", "1_000", "+7", "0.000000000000000000000000000000000001",
]


def outcome(f, value):
    """What f(value) gives: its BID bytes, or the type of error it raises."""
    try:
        return f(value).bid
    except (decimal.DecimalException, ValueError, TypeError) as e:
        return type(e)


def same_decimal(a: Decimal, b: Decimal) -> bool:
    return a.as_tuple() == b.as_tuple() and str(a) == str(b)


@pytest.mark.parametrize("text", EDGES)
def test_edges_encode_as_bson_does(text):
    assert outcome(d128, text) == outcome(Decimal128, text)
    try:
        value = Decimal(text)
    except decimal.InvalidOperation:
        return  # not a Decimal at all: the string case above covers it
    assert outcome(d128, value) == outcome(Decimal128, value)


@st.composite
def decimals_anywhere(draw):
    """Decimals of any size and exponent, in Decimal128's range and past it on both sides."""
    coefficient = draw(st.one_of(st.integers(0, 10**6), st.integers(0, 10**36)))
    exponent = draw(st.integers(-6250, 6250))
    sign = draw(st.integers(0, 1))
    return Decimal((sign, tuple(int(c) for c in str(coefficient)), exponent))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(decimals_anywhere(), st.decimals(allow_nan=True, allow_infinity=True),
                 st.decimals(places=2, min_value=-10**15, max_value=10**15)))
def test_any_decimal_encodes_as_bson_does_and_reads_back(value):
    ours = outcome(d128, value)
    assert ours == outcome(Decimal128, value)
    if isinstance(ours, bytes):
        stored = Decimal128.from_bid(ours)
        assert same_decimal(dec(stored), stored.to_decimal())
        if value.is_finite():
            assert dec(stored) == value  # no money changes on the way in and out


def test_any_bid_reads_as_bson_reads_it():
    """Random 128-bit patterns, with the top bits steered into every form: the usual one,
    the other (coefficient > 2**113), infinities, NaNs, negative or not."""
    rng = random.Random(20261201)
    tops = [0x0, 0x1, 0x2, 0x3, 0x5, 0x6, 0x7, 0x78, 0x7C, 0x7E, 0x60, 0x6F]
    for _ in range(20000):
        high, low = rng.getrandbits(64), rng.getrandbits(64)
        if rng.random() < 0.5:
            top = rng.choice(tops)
            shift = 64 - top.bit_length() - 1 if top else 63
            high = (high & ((1 << shift) - 1)) | (top << shift) | (rng.getrandbits(1) << 63)
        if rng.random() < 0.3:
            high &= ~(0x1FFFFFFFFFFFF) | rng.getrandbits(10)  # small coefficients
        stored = Decimal128((high, low))
        assert same_decimal(dec(stored), stored.to_decimal()), (hex(high), hex(low))


def test_amount_reads_stored_values():
    assert same_decimal(amount(Decimal128("1.50")), Decimal("1.50"))
    assert amount(None) == 0 and amount(0) == 0 and amount(7) == Decimal(7)
    assert amount("2.5") == Decimal("2.5")
