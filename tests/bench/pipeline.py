"""The benchmark (figures, not a test). Runs against one broker and Mongo server:

    .venv/bin/python -m tests.bench.pipeline [--programmes 600] [--rate 20] [--seconds 20]

It starts the four services as processes under a fresh topic prefix and prints:
  * time to ready and RSS per service;
  * pipeline throughput: concept note in (inbound topic) -> screened -> approved (an SC
    driver meets every 100 ms and approves in one meeting every note screened since) ->
    allocated -> the allocation notification logged, in programmes per second, offered all
    at once;
  * the pipeline's steps together, in reference (b)'s unit: messages consumed per second by
    the four services during the burst;
  * one step's throughput, comparable with reference (b): intake's inbound consumer (note
    in, validated, screened, stored with its two facts in the outbox, facts published);
  * end-to-end latency p50/p95/p99 of the same pipeline at a fixed offered rate;
  * reference (a): a raw aiokafka consume->produce relay, no database (the client limit);
  * reference (b): the naive step: one FastStream handler per message awaiting one motor
    write per message (default ack policy, no batching);
  * the same work through our consumer (shared.consumer): batches, offsets committed after
    the effect, envelopes validated, event ids checked and recorded, one transaction per
    batch; the like-for-like comparison with (b).
and writes them, with the machine, to docs/benchmarks.md.

Infrastructure: KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL if set, else the stack script's own
servers on bench ports (started here, stopped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.security import SASLScram512

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared import topics  # noqa: E402
from shared.auth import make_keys  # noqa: E402

# the benchmark's own token issuer (tests.support signs with it; the services verify)
_KEY, _JWKS = make_keys(ROOT / ".run" / "bench" / "auth")
os.environ.setdefault("MPTF_AUTH_SIGNING_KEY", str(_KEY))
os.environ.setdefault("MPTF_AUTH_JWKS", str(_JWKS))
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote  # noqa: E402
from shared.envelope import Envelope  # noqa: E402
from tests.support import (  # noqa: E402
    FMU,
    credentials,
    free_port,
    kafka_auth,
    start_service,
    stop_all,
    wait_ready,
)

SERVICES = ("intake", "funding", "monitoring", "notifications")
ALLOCATION = "org.migrationmptf.allocation.made.v1"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values or [0])[0]


def infra() -> tuple[dict[str, str], bool]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URL"):
        return {}, False
    # below 32768: Linux hands out 32768-60999 as clients' own ports
    env = {**os.environ, "MPTF_RUN_DIR": str(ROOT / ".run/bench"), "MPTF_KAFKA_PORT": "24092",
           "MPTF_KAFKA_CONTROLLER_PORT": "24093", "MPTF_MONGO_PORT": "24117",
           "MPTF_PYTHON": sys.executable}
    env.pop("MPTF_KAFKA_CREDENTIALS", None)
    subprocess.run([str(ROOT / "deploy/local/stack.sh"), "infra-up"], env=env, check=True)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:24092"
    os.environ["MONGODB_URL"] = "mongodb://127.0.0.1:24117/?directConnection=true"
    os.environ["MPTF_KAFKA_CREDENTIALS"] = str(ROOT / ".run/bench/kafka/credentials.json")
    return env, True


class Pipeline:
    """The four services, an SC driver that approves each screened note, and a watcher of
    the allocation notifications."""

    def __init__(self, tag: str, workdir: Path) -> None:
        self.tag, self.workdir = tag, workdir
        self.ports = {s: free_port() for s in SERVICES}
        self.procs: list[Any] = []
        self.ready_s: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.pid_of: dict[str, str] = {}
        self.done: dict[str, float] = {}
        self.screened: dict[str, float] = {}
        self.meetings = 0

    def url(self, s: str) -> str:
        return f"http://127.0.0.1:{self.ports[s]}"

    async def start(self) -> None:
        t0 = {}
        for s, p in self.ports.items():
            t0[s] = time.perf_counter()
            self.procs.append(start_service(s, self.tag, p, self.workdir,
                                            MPTF_LOG_LEVEL="WARNING"))
        async with httpx.AsyncClient(timeout=5) as http:
            for s in SERVICES:
                await wait_ready(http, self.ports[s], every=0.05)
                self.ready_s[s] = time.perf_counter() - t0[s]
            await http.post(f"{self.url('funding')}/v1/contributions", headers=FMU, json={
                "contribution_id": "bench", "contributor": "DEU", "contributor_name": "DEU",
                "currency": "USD", "amount": "9000000000000", "year": 2026})
            await http.post(f"{self.url('funding')}/v1/contributions/bench/deposits",
                            headers=FMU, json={"deposit_id": "d", "amount": "9000000000000",
                                               "usd_amount": "9000000000000"})

    async def driver(self, stop: asyncio.Event) -> None:
        """The Steering Committee: meets every 100 ms and approves, in one meeting, the
        eligible notes screened since (up to 100 a meeting). Records when each note was
        screened and when its allocation notification was logged."""
        c = AIOKafkaConsumer(f"{self.tag}.{topics.PROGRAMMES}",
                             f"{self.tag}.{topics.NOTIFICATIONS}",
                             bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                             group_id=None, auto_offset_reset="earliest", **kafka_auth())
        await c.start()
        agenda: list[str] = []
        meetings = 0

        async def committee(http: httpx.AsyncClient) -> None:
            nonlocal meetings
            while not stop.is_set() or agenda:
                await asyncio.sleep(0.1)
                todo, agenda[:] = agenda[:100], agenda[100:]
                if not todo:
                    continue
                meetings += 1
                r = await http.post(f"{self.url('funding')}/v1/meetings", headers=FMU, json={
                    "meeting_id": f"sc{meetings}", "decisions": [
                        {"programme_id": pid, "decision": "approve", "decision_id": "sc",
                         "priority": 1} for pid in todo]})
                r.raise_for_status()
                for x in r.json()["results"]:
                    if x["status"] == "refused" and x["problem"]["status"] == 404:
                        agenda.append(x["programme_id"])  # funding has not consumed it yet

        async with httpx.AsyncClient(timeout=120) as http:
            sc = asyncio.create_task(committee(http))
            while not stop.is_set():
                for recs in (await c.getmany(timeout_ms=100)).values():
                    for r in recs:
                        h = {k: v.decode() for k, v in r.headers}
                        body = json.loads(r.value)
                        if h["ce_type"].endswith("programme.submitted.v1"):
                            self.pid_of[body["programme_id"]] = body["entity_reference"]
                        elif h["ce_type"].endswith("programme.screened.v1") and body["eligible"]:
                            self.screened.setdefault(body["programme_id"], time.perf_counter())
                            agenda.append(body["programme_id"])
                        elif h["ce_type"].endswith("notification.delivered.v1") and body[
                                "fact_type"] == ALLOCATION and body["recipient"] == "IOM":
                            self.done.setdefault(body["programme_id"], time.perf_counter())
            await sc
        self.meetings = meetings
        await c.stop()

    async def offer(self, n: int, rate: float | None, run: str) -> None:
        p = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                             enable_idempotence=True, linger_ms=5, **kafka_auth("entity-IOM"))
        await p.start()
        start = time.perf_counter()
        futs = []
        for i in range(n):
            ref = f"{run}-{i:06}"
            note = SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE,
                                                     "entity_reference": ref})
            env = Envelope(source="urn:mptf:entity:IOM", type=note.TYPE)
            self.sent[ref] = time.perf_counter()
            futs.append(await p.send(f"{self.tag}.{topics.INBOUND_CONCEPT_NOTES}.IOM",
                                     note.model_dump_json().encode(), key=ref.encode(),
                                     headers=env.headers()))
            if rate:
                await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
        await asyncio.gather(*futs)
        await p.stop()

    def finished(self, run: str) -> list[float]:
        return [self.done[pid] - self.sent[ref] for pid, ref in self.pid_of.items()
                if ref.startswith(run) and pid in self.done]

    async def metric(self, name: str, skip: str = "\0") -> int:
        """A counter summed over the four services' /metrics (series containing `skip`
        left out)."""
        total = 0
        async with httpx.AsyncClient(timeout=5) as http:
            for svc in SERVICES:
                text = (await http.get(f"{self.url(svc)}/metrics")).text
                total += sum(int(float(ln.rsplit(" ", 1)[1])) for ln in text.splitlines()
                             if ln.startswith((name + "{", name + " ")) and skip not in ln)
        return total

    async def consumed(self) -> int:
        """Events the four services have handled so far (records of types a subscriber
        does not act on are not counted)."""
        return await self.metric("mptf_events_consumed_total", skip='outcome="ignored"')

    def screened_by(self, run: str) -> list[float]:
        return [self.screened[pid] for pid, ref in self.pid_of.items()
                if ref.startswith(run) and pid in self.screened]

    async def wait(self, run: str, n: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.finished(run)) < n and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def raw_relay(n: int, tag: str) -> float:
    """Reference (a): consume -> produce with aiokafka, no database."""
    bs = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    src, dst = f"{tag}.ref.in", f"{tag}.ref.out"
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    # the references are the harness's own topics: it works on them as admin
    admin = AIOKafkaAdminClient(bootstrap_servers=bs, **kafka_auth())
    await admin.start()
    await admin.create_topics([NewTopic(src, 6, 1), NewTopic(dst, 6, 1)])
    await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=bs, enable_idempotence=True, linger_ms=5,
                         **kafka_auth())
    await p.start()
    value = json.dumps(CONCEPT_NOTE_EXAMPLE).encode()
    # enveloped like an entity system's notes, so our own consumer can read them too
    await asyncio.gather(*[await p.send(src, value, key=str(i).encode(), headers=Envelope(
        source="urn:mptf:entity:IOM", type=SubmitConceptNote.TYPE).headers())
        for i in range(n)])
    c = AIOKafkaConsumer(src, bootstrap_servers=bs, group_id=f"{tag}-relay",
                         auto_offset_reset="earliest", enable_auto_commit=False, **kafka_auth())
    await c.start()
    start, seen = time.perf_counter(), 0
    while seen < n:
        batch = await c.getmany(timeout_ms=200, max_records=500)
        futs = [await p.send(dst, r.value, key=r.key) for recs in batch.values() for r in recs]
        await asyncio.gather(*futs)
        await c.commit()
        seen += len(futs)
    elapsed = time.perf_counter() - start
    await c.stop()
    await p.stop()
    return n / elapsed


async def rate(n: int, consumer: Any, done: asyncio.Event) -> float:
    """Messages per second from starting `consumer` until it has handled all n."""
    start = time.perf_counter()
    await consumer.start()
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - start
    await consumer.stop()
    return n / elapsed


async def naive_step(n: int, tag: str) -> float:
    """Reference (b): one FastStream handler per message awaiting one motor write."""
    from faststream.kafka import KafkaBroker
    from motor.motor_asyncio import AsyncIOMotorClient

    bs = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"{tag}.ref.in"  # the same n records that reference (a) read
    coll = AsyncIOMotorClient(os.environ["MONGODB_URL"])[f"{tag}_naive"].notes
    broker = KafkaBroker(bs, logger=None,  # its per-message log lines are not the work
                         security=SASLScram512("admin", credentials()["admin"]))
    seen = 0
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=f"{tag}-naive", auto_offset_reset="earliest")
    async def handle(body: dict) -> None:
        nonlocal seen
        await coll.insert_one({"note": body})
        seen += 1
        if seen >= n:
            done.set()

    return await rate(n, broker, done)


async def batched_step(n: int, tag: str) -> float:
    """Reference (b)'s work (one document per message) through our consumer plumbing: a
    batch subscriber committing offsets after the effect, decoding and validating each
    envelope, and one transaction per batch that checks and records the event ids (inbox)
    and writes the documents. More work per message than (b), done a batch at a time."""
    from faststream.kafka import KafkaBroker

    from shared.consumer import apply_each
    from shared.runtime import Runtime
    from shared.settings import ServiceSettings
    from shared.store import Store

    settings = ServiceSettings(service_name="benchstep", topic_prefix=f"{tag}.",
                               kafka_username="admin",
                               mongodb_database=f"{tag}_benchstep", log_level="WARNING")
    store = Store(settings)
    runtime = Runtime(settings, store)
    # as (b)'s broker: no per-message log lines (they are not the work being measured)
    runtime.broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=None,
                                 security=SASLScram512("admin", credentials()["admin"]))
    done, seen = asyncio.Event(), 0

    async def on_notes(batch):  # type: ignore[no-untyped-def]
        nonlocal seen

        async def apply(uow, inc):  # type: ignore[no-untyped-def]
            await uow.docs("notes").add({"_id": inc.id, "note": inc.event.model_dump(
                mode="json")})

        out = await apply_each(store, "bench.step", batch, apply)
        seen += len(batch)
        if seen >= n:
            done.set()
        return out

    runtime.subscribe("ref.in", "notes", [SubmitConceptNote.TYPE], on_notes)
    return await rate(n, runtime, done)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"bench{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix="mptf-bench-"))
    pipe = Pipeline(tag, work)
    await pipe.start()
    stop = asyncio.Event()
    driver = asyncio.create_task(pipe.driver(stop))
    results: dict[str, Any] = {"time_to_ready_s": {s: round(v, 2) for s, v in
                                                   pipe.ready_s.items()}}
    try:
        before = await pipe.consumed()
        t0 = time.perf_counter()
        await pipe.offer(args.programmes, None, "burst")
        await pipe.wait("burst", args.programmes, 600)
        took = time.perf_counter() - t0
        results["throughput_programmes_per_s"] = round(len(pipe.finished("burst")) / took, 1)
        results["burst"] = {"programmes": args.programmes,
                            "completed": len(pipe.finished("burst")), "seconds": round(took, 1)}
        # every step of the pipeline together, in the unit of reference (b): messages
        # consumed per second by the four services during the burst
        results["pipeline_steps_msgs_consumed_per_s"] = round(
            (await pipe.consumed() - before) / took)
        # one step of the pipeline, comparable with reference (b): intake consuming the
        # inbound notes, screening each and writing it with its two facts (outbox), published
        screened = pipe.screened_by("burst")
        results["step_intake_screening_msgs_per_s"] = round(
            len(screened) / (max(screened) - t0)) if screened else 0
        n = int(args.rate * args.seconds)
        await pipe.offer(n, args.rate, "paced")
        await pipe.wait("paced", n, 120)
        lat = pipe.finished("paced")
        results["latency_at_fixed_rate"] = {
            "offered_per_s": args.rate, "programmes": n, "completed": len(lat),
            "p50_ms": round(pct(lat, 50) * 1000), "p95_ms": round(pct(lat, 95) * 1000),
            "p99_ms": round(pct(lat, 99) * 1000)}
        results["store_transaction_retries"] = await pipe.metric(
            "mptf_transaction_retries_total")
        results["rss_mb"] = {s: round(rss_mb(p.pid)) for s, p in zip(SERVICES, pipe.procs,
                                                                     strict=True)}
    finally:
        stop.set()
        try:
            await driver
        finally:
            stop_all(pipe.procs)
    results["sc_meetings"] = pipe.meetings
    results["reference_a_raw_relay_msgs_per_s"] = round(await raw_relay(args.reference, tag))
    results["reference_b_naive_step_msgs_per_s"] = round(await naive_step(args.reference, tag))
    results["our_consumer_on_reference_b_work_msgs_per_s"] = round(
        await batched_step(args.reference, tag))
    return results


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Python {platform.python_version()}"


def run(main_fn: Any, args: argparse.Namespace) -> dict[str, Any]:
    """A benchmark's `main_fn(args)` on the infrastructure (started here if need be, and
    stopped after), with the machine it ran on."""
    env, started = infra()
    try:
        res = asyncio.run(main_fn(args))
    finally:
        if started:
            subprocess.run([str(ROOT / "deploy/local/stack.sh"), "down"], env=env, check=False)
    res["machine"] = machine()
    return res


def write_figures(marker: str, intro: str, body: str) -> None:
    """Put `body` between `<!-- marker ... -->` and `<!-- /marker -->` in docs/benchmarks.md,
    keeping the prose around it; a section of its own (headed by `intro`) the first time."""
    out = ROOT / "docs" / "benchmarks.md"
    figures = f"<!-- {marker}: written by a benchmark -->\n{body}\n<!-- /{marker} -->"
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    if f"<!-- {marker}" in text and f"<!-- /{marker} -->" in text:
        head, rest = text.split(f"<!-- {marker}", 1)
        text = head + figures + rest.split(f"<!-- /{marker} -->", 1)[1]
    else:
        text += f"\n{intro}\n\n{figures}\n"
    out.write_text(text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--programmes", type=int, default=600)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--reference", type=int, default=5000)
    res = run(main, ap.parse_args())
    print(json.dumps(res, indent=2))
    write_figures("figures", "Produced by `.venv/bin/python -m tests.bench.pipeline` (see the "
                  "script's docstring for what each figure measures).",
                  f"Machine: {res['machine']}. Kafka 4.1.1 (one KRaft node), SecantusDB "
                  "0.7.0b3.\n\n```json\n" + json.dumps(res, indent=2) + "\n```")
