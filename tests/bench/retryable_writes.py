"""What a retryable write costs the store as their records pile up (figures, not a test):

    .venv/bin/python -m tests.bench.retryable_writes [--writes 12000] [--every 2000]

One client updates one document `--writes` times, one round trip at a time, first with the
driver's retryable writes on (`retryWrites=true`: each write outside a transaction carries a
transaction number, and the server keeps a record of its reply for 30 minutes to answer a
retry), then off (the services' client: shared.store.retry_writes). Prints the mean time per
update over each `--every` updates, for both, and writes them to docs/benchmarks.md. On
SecantusDB the time per write grows with the records kept (it goes through all of them at
every retryable write, and sorts them once past its cap of 10,000); on mongod it should not.

Infrastructure: as tests/bench/pipeline.py (MONGODB_URL if set with KAFKA_BOOTSTRAP_SERVERS,
else the stack script's own servers on bench ports).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from pymongo import AsyncMongoClient

from tests.bench.pipeline import run, write_figures


async def per_update_ms(url: str, retry: bool, writes: int, every: int) -> list[float]:
    client: Any = AsyncMongoClient(url, retryWrites=retry)
    db = client[f"bench_retryable_{int(retry)}_{int(time.time())}"]
    try:
        await db.t.insert_one({"_id": 1, "n": 0})
        out: list[float] = []
        t = time.perf_counter()
        for i in range(1, writes + 1):
            await db.t.update_one({"_id": 1}, {"$inc": {"n": 1}})
            if i % every == 0:
                now = time.perf_counter()
                out.append(round((now - t) / every * 1000, 3))
                t = now
        return out
    finally:
        await client.drop_database(db.name)
        await client.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ["MONGODB_URL"]
    res: dict[str, Any] = {"writes": args.writes, "every": args.every}
    for retry in (True, False):
        res[f"retryable_{'on' if retry else 'off'}_ms_per_update"] = await per_update_ms(
            url, retry, args.writes, args.every)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=12000)
    ap.add_argument("--every", type=int, default=2000)
    res = run(main, ap.parse_args())
    print(json.dumps(res, indent=2))
    rows = ["| updates so far | retryable writes on (ms per update) | off (the services') |",
            "|---|---|---|"]
    for n, (on, off) in enumerate(zip(res["retryable_on_ms_per_update"],
                                      res["retryable_off_ms_per_update"], strict=True)):
        rows.append(f"| {(n + 1) * res['every']:,} | {on} | {off} |")
    write_figures("retryable-writes", "## Retryable writes on the store\n\nProduced by "
                  "`.venv/bin/python -m tests.bench.retryable_writes` (see its docstring).",
                  f"Machine: {res['machine']}.\n\n" + "\n".join(rows))
