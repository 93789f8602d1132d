"""Money to and from BSON Decimal128, exactly as bson converts it, in a fraction of the time.

bson (pymongo 4.x) converts between `decimal.Decimal` and `Decimal128` in pure Python, a bit
at a time: about 10 us each way on this machine, which was 9% of the funding service's CPU
and 5% of monitoring's in the benchmark's bursts (every stored amount is a Decimal128, every
amount read back a Decimal). These do the same conversions with integer arithmetic on the
coefficient (a Decimal128's BID form is the coefficient's 113 bits beside a biased exponent
and a sign), and hand bson every value they do not cover (infinities, NaNs, the rare
non-canonical encodings), so the results are bson's own, bit for bit; a test holds them to
bson's for edge cases and random values of every shape.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from bson import Decimal128

# bson's own Decimal128 context: 34 digits, exponents -6176..6111 once clamped, and the loss
# of a digit, an overflow or a bad string is an error, never a rounding
_CTX = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN, Emin=-6143, Emax=6144,
                       capitals=1, clamp=1,
                       traps=[decimal.InvalidOperation, decimal.Overflow, decimal.Inexact])
_create = _CTX.create_decimal
_BIAS = 6176
_LOW = (1 << 64) - 1
_SIGN = 1 << 63
_HIGH_COEFFICIENT = (1 << 49) - 1  # the coefficient's top 49 bits in the high word
_SPECIAL = 0x6000000000000000  # both top combination bits: infinity, NaN, or the other form
_MAX_COEFFICIENT = 10**34 - 1
_state = Decimal128.__getstate__  # (high, low), without going through the BID bytes
_new = Decimal128.__new__
_set_state = Decimal128.__setstate__  # what unpickling does: no type checks on the way


def d128(value: Decimal | str) -> Decimal128:
    """`Decimal128(value)`, the same bits, the same errors (Inexact beyond 34 digits,
    Overflow, InvalidOperation for a bad string)."""
    v = _create(value)
    if not v.is_finite():
        return Decimal128(v)
    exponent = v.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    # exact: at most 34 digits, scaled to an integer in a 34-digit context
    coefficient = int(v.scaleb(-exponent, _CTX).copy_abs())
    high = coefficient >> 64 | (exponent + _BIAS) << 49
    if v.is_signed():
        high |= _SIGN
    out = _new(Decimal128)
    _set_state(out, (high, coefficient & _LOW))
    return out


def dec(value: Decimal128) -> Decimal:
    """`value.to_decimal()`: the same digits, exponent and sign."""
    high, low = _state(value)
    if high & _SPECIAL == _SPECIAL:
        return value.to_decimal()
    coefficient = (high & _HIGH_COEFFICIENT) << 64 | low
    if coefficient > _MAX_COEFFICIENT:  # non-canonical: bson reads it as zero
        return value.to_decimal()
    exponent = ((high >> 49) & 0x3FFF) - _BIAS
    # a Decimal from a string is exact (no context applies); the coefficient has at most 34
    # digits and the exponent is in range, so bson's context would leave it as it is
    return Decimal(f"-{coefficient}E{exponent}" if high & _SIGN else f"{coefficient}E{exponent}")


def amount(value: Any) -> Decimal:
    """A stored amount as Decimal: a Decimal128 exactly, anything else (int, str, None) as its
    Decimal (none as zero)."""
    return dec(value) if isinstance(value, Decimal128) else Decimal(value or 0)
