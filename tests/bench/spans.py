"""Where the pipeline's time goes at a given load, from the services' own spans (figures, not
a test):

    .venv/bin/python -m tests.bench.spans [--rate 8] [--seconds 30] [--root NAME ...] [--store]

Starts the four services as tests/bench/pipeline.py does (its servers, started empty, and its
Steering Committee driver), offers `--rate` concept notes a second for `--seconds`, and prints
the median of each hop for them. Then it reads the span files the services wrote and prints,
per service, the kinds of span that took the most time (count, total, p50, p95, max in ms),
and for each `--root` (a span name such as "POST /v1/meetings"; by default the SC's meeting
and each consumer's batch), the median root, how much of it was spent in client spans (the
store's commands, the broker's), and each kind of span below it per root (time and calls).
The span files are kept under `--keep` if given. With `--store`, it also prints where the
Mongo servers' time went over the load, per collection: the CPU of their storage calls
(insert, update, delete, find) by call and collection, per programme (the stack script's
SecantusDB accounts them: deploy/local/secantusd.py), beside the server processes' whole
CPU.

Infrastructure: as tests/bench/pipeline.py (KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL if set,
else the stack script's own servers on bench ports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.bench.pipeline import ROOT, Pipeline, cpu_seconds, infra, pct, processes

DEFAULT_ROOTS = ("POST /v1/meetings", " process")  # the meeting, and every consumer's batch


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ms(span: dict[str, Any]) -> float:
    return (span["end"] - span["start"]) / 1e6


def kinds(spans: list[dict[str, Any]], top: int = 12) -> list[str]:
    by: dict[str, list[float]] = defaultdict(list)
    for s in spans:
        by[s["name"]].append(ms(s))
    rows = sorted(by.items(), key=lambda kv: -sum(kv[1]))[:top]
    return [f"  {name[:58]:58} n={len(d):6} total={sum(d) / 1000:7.1f}s p50={pct(d, 50):7.1f} "
            f"p95={pct(d, 95):7.1f} max={max(d):7.1f}" for name, d in rows]


def breakdown(spans: list[dict[str, Any]], root: str) -> list[str]:
    """Each root span whose name contains `root`: the median root, its median time in
    client spans (overlaps counted once), and each kind of span below it, per root."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        children[s["parent_id"]].append(s)

    def below(span_id: str) -> list[dict[str, Any]]:
        out = []
        for c in children.get(span_id, []):
            out += [c, *below(c["span_id"])]
        return out

    roots = [s for s in spans if root in s["name"]]
    if not roots:
        return []
    total, calls = Counter[str](), Counter[str]()
    outside = []
    for r in roots:
        spans_below = below(r["span_id"])
        for c in spans_below:
            total[c["name"]] += ms(c)
            calls[c["name"]] += 1
        busy, end = 0.0, None
        for a, b in sorted((c["start"], c["end"]) for c in spans_below if c["kind"] == "CLIENT"):
            if end is None or a > end:
                busy, end = busy + (b - a), b
            elif b > end:
                busy, end = busy + (b - end), b
        outside.append((ms(r), busy / 1e6))
    n = len(roots)
    head = (f"  {root.strip()!r}: {n} roots, median {statistics.median(t for t, _ in outside):.1f} "
            f"ms, of it in client spans {statistics.median(c for _, c in outside):.1f} ms")
    return [head, *(f"    {k[:54]:54} {v / n:7.1f} ms/root  {calls[k] / n:5.1f} calls/root"
                    for k, v in total.most_common(10))]


class StoreAccount:
    """The Mongo servers' time per collection over the load (`--store`): the totals each
    local SecantusDB writes (deploy/local/secantusd.py, account_storage_calls; the stack
    script gives each server `<path>.<its name>`) before and after it, and the server
    processes' CPU over the same time."""

    def __init__(self, path: Path) -> None:
        self.path, self.before, self.cpu = path, {}, 0.0
        self.after: dict[str, list[float]] = {}
        self.pids: list[int] = []

    async def read(self) -> dict[str, list[float]]:
        await asyncio.sleep(1.5)  # (they write every second)
        out: dict[str, list[float]] = {}
        for f in self.path.parent.glob(f"{self.path.name}.*"):
            if f.suffix == ".tmp":
                continue  # (being written)
            out.update(json.loads(f.read_text()))  # (keyed "db.collection": disjoint)
        return out

    def server_cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    async def start(self, pipe: Pipeline) -> None:
        self.pids = [p for n, p in processes(pipe).items() if n.startswith("mongo")]
        self.before = await self.read()
        self.cpu = self.server_cpu()

    async def stop(self) -> None:
        self.after = await self.read()
        self.cpu = self.server_cpu() - self.cpu

    def table(self, programmes: int, tag: str) -> list[str]:
        rows = {k.replace(f"{tag}_", ""): (v[0] - self.before.get(k, [0, 0])[0],
                                           v[1] - self.before.get(k, [0, 0.0])[1])
                for k, v in self.after.items()}
        rows = {k: v for k, v in rows.items() if v[0]}
        total = sum(cpu for _, cpu in rows.values())
        if not rows or not programmes:
            return ["== store: nothing accounted (--store needs the stack script's SecantusDB)"]
        out = [f"== store: {total:.2f} s CPU in storage calls of {self.cpu:.2f} s of the "
               f"server processes ({len(self.pids)}), {1000 * total / programmes:.1f} ms per "
               "programme "
               f"({programmes} programmes)",
               f"  {'call and collection':48} {'share':>6} {'ms/prog':>8} {'calls/prog':>10} "
               f"{'ms/call':>8}"]
        for k, (calls, cpu) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:30]:
            out.append(f"  {k[:48]:48} {100 * cpu / total:5.1f}% {1000 * cpu / programmes:8.2f} "
                       f"{calls / programmes:10.2f} {1000 * cpu / calls:8.2f}")
        return out


async def measure(rate: float, seconds: float, work: Path, store: StoreAccount | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """The hops of `rate` notes a second for `seconds`; the services' spans left in `work`;
    where the store's time went (`store`)."""
    pipe = Pipeline(f"spans{int(time.time())}", work)
    async with pipe.running():
        await pipe.offer(20, None, "warm")  # first batches, connections and caches
        await pipe.wait("warm", 20, 300)
        n = max(int(rate * seconds), 1)
        if store:
            await store.start(pipe)
        await pipe.offer(n, rate, "load")
        await pipe.wait("load", n, 600)
        if store:
            await store.stop()
        # (the services write their last spans as they stop)
        return pipe.by_hop("load"), store.table(n, pipe.tag) if store else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=8.0, help="concept notes a second")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--root", action="append", help="span name (part) to break down")
    ap.add_argument("--keep", type=Path, help="copy the span files here")
    ap.add_argument("--store", action="store_true", help="the store's time per collection "
                    "(the stack script's SecantusDB only)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mptf-spans-"))
    store = StoreAccount(work / "store-account.json") if args.store else None
    if store:
        os.environ["MPTF_SECANTUS_ACCOUNT"] = str(store.path)  # (read by the stack's launcher)
    env, started = infra()
    try:
        hops, store_table = asyncio.run(measure(args.rate, args.seconds, work, store))
        files = {f.name.split("-")[0]: read(f) for f in sorted(work.glob("*.spans"))}
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in work.glob("*.spans"):
                shutil.copy(f, args.keep / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started:
            subprocess.run([str(ROOT / "deploy/local/stack.sh"), "down"], env=env, check=False)
    print(json.dumps({"rate_per_s": args.rate, "seconds": args.seconds, "hops_ms": hops}))
    for service, spans in files.items():
        print(f"== {service}: {len(spans)} spans")
        print("\n".join(kinds(spans)))
        for root in args.root or DEFAULT_ROOTS:
            print("\n".join(breakdown(spans, root)))
    if store_table:
        print("\n".join(store_table))


if __name__ == "__main__":
    main()
