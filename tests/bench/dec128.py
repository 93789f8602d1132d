"""Money to and from Decimal128: shared.dec128 against bson's own conversion (figures, not a
test; their equality is tests/unit/test_dec128.py's):

    .venv/bin/python -m tests.bench.dec128 [--number 20000]

Prints microseconds per conversion, each way, for the amounts the services store (cents, whole
dollars, rates, large and negative sums): the best of five rounds of `--number` conversions of
each amount, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import timeit
from decimal import Decimal

from bson import Decimal128

from shared.dec128 import d128, dec

AMOUNTS = [Decimal(x) for x in ("1250000.00", "-0.01", "250000", "0.0700", "87500.5",
                                "12345678901234567890.123456", "0", "-4999999.99")]


def per_call(fn, values: list, number: int) -> float:
    """Best of five rounds, in microseconds per conversion."""
    best = min(timeit.repeat(lambda: [fn(v) for v in values], number=number, repeat=5))
    return best / number / len(values) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=20000)
    n = ap.parse_args().number
    stored = [Decimal128(v) for v in AMOUNTS]
    out = {"encode_us": {"bson": per_call(Decimal128, AMOUNTS, n),
                         "shared.dec128": per_call(d128, AMOUNTS, n)},
           "decode_us": {"bson": per_call(Decimal128.to_decimal, stored, n),
                         "shared.dec128": per_call(dec, stored, n)}}
    for way, raw in out.items():
        figures = out[way] = {k: round(v, 2) for k, v in raw.items()}
        figures["speed_up"] = round(figures["bson"] / figures["shared.dec128"], 1)
        print(f"{way[:6]}: bson {figures['bson']} us, shared.dec128 "
              f"{figures['shared.dec128']} us ({figures['speed_up']}x)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
