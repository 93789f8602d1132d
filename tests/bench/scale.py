"""The scale-out benchmark (figures, not a test):

    .venv/bin/python -m tests.bench.scale [--programmes 300] [--share 0.5] [--seconds 15]
                                          [--replicas 1,2,3] [--brokers 1,3]

For each number of Kafka brokers (the stack script's own cluster: one KRaft node, or three
with replication 3 and min.insync.replicas=2) and each number of replicas per service, it
starts the four services as that many processes each, under a fresh topic prefix, and
prints the pipeline's throughput (a burst offered at once, as tests.bench.pipeline) and its
end-to-end latency p50/p95/p99 at a fixed offered rate: half of that configuration's
throughput (`--share`), so that latency is measured below saturation, not queueing. On three
brokers it then SIGKILLs the leader of the inbound partition mid-way through a paced run and
prints what that cost: the longest end-to-end latency of a note sent around the kill (the
pause), and how long after the kill notes were again as fast as before it (the recovery:
from the kill to the last note whose latency was above twice the p99 of the paced run).
Written to docs/benchmarks.md.

Every process of it shares the machine's cores: on 2 cores, more replicas add processes
competing for the same CPU (and one Mongo server, which bounds the pipeline), so what the
figures show here is what replicas cost and that they keep working, not the capacity they
add where each has a machine of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.pipeline import (
    ROOT,
    SERVICES,
    Pipeline,
    infra,
    machine,
    pct,
    stack,
    write_figures,
)


def latency(lat: list[float]) -> dict[str, int]:
    return {"p50_ms": round(pct(lat, 50) * 1000), "p95_ms": round(pct(lat, 95) * 1000),
            "p99_ms": round(pct(lat, 99) * 1000)}


async def one(replicas: int, args: argparse.Namespace, env: dict[str, str], brokers: int,
              kill: bool) -> dict[str, Any]:
    tag = f"scale{brokers}x{replicas}t{int(time.time())}"
    pipe = Pipeline(tag, Path(tempfile.mkdtemp(prefix="mptf-scale-")), replicas=replicas)
    out: dict[str, Any] = {"brokers": brokers, "replicas": replicas}
    async with pipe.running():
        t0 = time.perf_counter()
        await pipe.offer(args.programmes, None, "burst")
        await pipe.wait("burst", args.programmes, 600)
        took = time.perf_counter() - t0
        out["throughput_programmes_per_s"] = round(len(pipe.finished("burst")) / took, 1)
        # latency below saturation: a share of this configuration's own capacity
        rate = max(round(args.share * out["throughput_programmes_per_s"], 1), 0.5)
        n = max(int(rate * args.seconds), 5)
        await pipe.offer(n, rate, "paced")
        await pipe.wait("paced", n, 180)
        out["offered_per_s"] = rate
        out.update(latency(pipe.finished("paced")))
        if kill and env:
            out["broker_kill"] = await broker_kill(pipe, args, env, rate,
                                                   normal=out["p99_ms"] / 1000)
    print(json.dumps(out), flush=True)
    return out


async def broker_kill(pipe: Pipeline, args: argparse.Namespace, env: dict[str, str],
                      rate: float, normal: float) -> dict[str, Any]:
    """A paced run with the inbound partition's leader SIGKILLed half-way (restarted after);
    `normal`: the p99 of the paced run before it, at the same rate (notes sent just before
    the kill are delayed by it too, so they cannot be the baseline)."""
    from tests.faults.test_chaos import busy_leader

    n = max(int(rate * args.seconds * 2), 10)
    offer = asyncio.create_task(pipe.offer(n, rate, "kill"))
    await asyncio.sleep(args.seconds)
    topic = f"{pipe.tag}.mptf.inbound.concept-notes.IOM"
    leader = await asyncio.to_thread(busy_leader, topic)
    killed = time.perf_counter()
    await asyncio.to_thread(stack, env, "kill-kafka-node", str(leader))
    await offer
    await pipe.wait("kill", n, 240)
    await asyncio.to_thread(stack, env, "start-kafka-node", str(leader))
    after = [(pipe.sent[ref] - killed, pipe.done[pid] - pipe.sent[ref])
             for pid, ref in pipe.pid_of.items()
             if ref.startswith("kill") and pid in pipe.done and pipe.sent[ref] >= killed - 5]
    slow = [at for at, lat in after if lat > 2 * normal]
    return {"node": leader, "p99_before_ms": round(normal * 1000),
            "pause_ms": round(max((lat for _, lat in after), default=0) * 1000),
            "recovered_after_s": round(max(slow, default=0.0) + 0.0, 1),
            "completed": len(pipe.finished("kill")), "offered": n}


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--programmes", type=int, default=300)
    ap.add_argument("--share", type=float, default=0.5,
                    help="the paced runs' rate, as a share of each configuration's capacity")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--replicas", default="1,2,3")
    ap.add_argument("--brokers", default="1,3")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for brokers in (int(b) for b in args.brokers.split(",")):
        env, started = infra(brokers)
        try:
            for replicas in (int(r) for r in args.replicas.split(",")):
                rows.append(asyncio.run(one(replicas, args, env, brokers,
                                            kill=brokers >= 3 and replicas == 2)))
        finally:
            if started:
                stack(env, "down")
                import os

                for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "MPTF_KAFKA_CREDENTIALS",
                          *(f"MONGODB_URL_{s.upper()}" for s in SERVICES)):
                    os.environ.pop(k, None)
    return {"rows": rows, "machine": machine(), "args": vars(args)}


if __name__ == "__main__":
    res = main()
    print(json.dumps(res, indent=2))
    table = ["| brokers | replicas per service | burst programmes/s | offered/s | p50 ms | "
             "p95 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        table.append(f"| {r['brokers']} | {r['replicas']} | {r['throughput_programmes_per_s']}"
                     f" | {r['offered_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} |")
    kills = [r["broker_kill"] for r in res["rows"] if "broker_kill" in r]
    text = "\n".join(table)
    if kills:
        k = kills[0]
        text += (f"\n\nA broker killed (three brokers, two replicas each; node {k['node']}, the "
                 f"leader of the inbound partition, SIGKILLed mid-run at half of "
                 f"capacity): the longest note took {k['pause_ms']} ms "
                 f"(p99 before: {k['p99_before_ms']} ms); notes were as fast as before "
                 f"{k['recovered_after_s']} s after the kill; {k['completed']} of "
                 f"{k['offered']} completed.")
    write_figures("scale", "## Scale-out: replicas and brokers\n\nProduced by "
                  "`.venv/bin/python -m tests.bench.scale` (see its docstring).",
                  f"Machine: {res['machine']}.\n\n{text}\n\n```json\n"
                  + json.dumps(res, indent=2) + "\n```")
    print(ROOT / "docs" / "benchmarks.md")
