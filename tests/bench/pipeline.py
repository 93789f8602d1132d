"""The benchmark (figures, not a test). Runs against one broker and the stack's Mongo
servers (one per service, as deploy/local/stack.sh runs them by default):

    .venv/bin/python -m tests.bench.pipeline [--programmes 600] [--runs 5] [--seconds 20]
                                             [--trace-ratio 1]

It starts the four services as processes under a fresh topic prefix and prints:
  * time to ready and the largest RSS per service (during the bursts, and at the end of the
    run, after every programme of it); and time to ready with the four spawned at once,
    three times (each service's median, and each round);
  * capacity: the pipeline's throughput, concept note in (inbound topic) -> screened ->
    approved (an SC driver meets every 100 ms and approves in one meeting every note
    screened since) -> allocated -> the allocation notification logged, in programmes per
    second, for a burst offered all at once, `--runs` times in a row: the median, each run
    and their spread ((max - min) / median), and each burst's longest pause (no programme
    completed: a stall rather than a pace);
  * latency below saturation: at 25, 50, 75 and 90% of that capacity offered at a fixed
    rate, end-to-end p50/p95/p99 and the median of each hop (note in -> screened fact
    published -> approved -> allocated -> notification logged, each fact timed when the
    relay published it), with the SC's wait for its next meeting (a timer) apart and the
    end to end without it, and what each level cost: store round trips, batches handled
    by the services' subscriptions and every process's CPU per programme, and the cores
    used (how near saturation the paced flow ran, beside the bursts'); a table and a plot
    (docs/latency-by-load.png);
  * per programme and service: documents stored, store round trips (commands sent) and
    Kafka records published;
  * a profile (speedscope) of every process (py-spy: the services, SecantusDB, this
    benchmark; the JDK's Flight Recorder: the broker, tests.bench.jfr) during one more
    burst after the measured ones (sampling slows every process, so its rate is printed
    apart), under .run/bench/profiles/; and the CPU each process used
    during the measured bursts, in cores (what bound them);
  * the pipeline's steps together, in reference (b)'s unit: messages consumed per second by
    the four services during the bursts; and one step, comparable with reference (b):
    intake's inbound consumer (note in, validated, screened, stored with its two facts in
    the outbox, facts published);
  * reference (a): a raw aiokafka consume->produce relay, no database (the client limit);
  * reference (b): the naive step: one FastStream handler per message awaiting one motor
    write per message (default ack policy, no batching);
  * the same work through our consumer (shared.consumer): batches, offsets committed after
    the effect, envelopes validated, event ids checked and recorded, one transaction per
    batch; the like-for-like comparison with (b);
  * the store's own limit in the same run: this run's documents per programme (their
    shapes and indexes copied) inserted in one transaction per service, each on the
    service's own server, the four at once, nothing else; a ceiling for the pipeline on
    these servers;
  * the ratios: the pipeline's messages over (a), our consumer over (b), capacity over the
    store's limit;
and writes them, with the machine, to docs/benchmarks.md. The services record every trace,
as they do by default; `--trace-ratio` sets their MPTF_OTEL_SAMPLE_RATIO (the share of traces
recorded), printed with the figures.

Infrastructure: KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL if set (one Mongo server for every
service), else the stack script's own servers on bench ports (started here, stopped at the
end; MPTF_MONGO_SERVERS=one for a single SecantusDB instead of one per service).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from shared.runtime import Runtime  # noqa: E402
from shared.settings import ServiceSettings  # noqa: E402
from tests.bench import jfr  # noqa: E402
from tests.support import (  # noqa: E402
    bearer,
    credentials,
    free_port,
    kafka_auth,
    mongo_admin_url,
    provision,
    start_service,
    stop_all,
    wait_ready,
)

SERVICES = ("intake", "funding", "monitoring", "notifications")
# the services as deployed: their own outbox poll (the test suite's is faster, 0.2 s)
DEFAULTS = {"MPTF_OUTBOX_POLL_SECONDS": str(
    ServiceSettings.model_fields["outbox_poll_seconds"].default)}
ALLOCATION = "org.migrationmptf.allocation.made.v1"
# the pipeline's hops: the facts that end each, by type (without the version)
HOPS = {"org.migrationmptf.programme.screened": "screened",
        "org.migrationmptf.programme.approved": "decided",
        "org.migrationmptf.allocation.made": "allocated",
        "org.migrationmptf.notification.delivered": "notified"}
HOP_ORDER = ("screened", "decided", "allocated", "notified")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def services_rss_mb(pipe: Pipeline) -> dict[str, float]:
    """Each service's RSS now (MB), the largest of its replicas'."""
    out: dict[str, float] = {}
    names = [svc for svc in SERVICES for _ in pipe.ports[svc]]
    for name, p in zip(names, pipe.procs, strict=True):
        out[name] = max(out.get(name, 0.0), rss_mb(p.pid))
    return out


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values or [0])[0]


def mongo_url(service: str) -> str:
    """The Mongo server a service's database lives on: its own (MONGODB_URL_<SERVICE>, when
    the stack runs one per service), else the one server (MONGODB_URL)."""
    return os.environ.get(f"MONGODB_URL_{service.upper()}") or os.environ["MONGODB_URL"]


def infra(brokers: int = 1) -> tuple[dict[str, str], bool]:
    """The stack script's servers on bench ports (`brokers` Kafka nodes; its Mongo servers,
    by default one per service), unless KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL name
    existing ones."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URL"):
        return {}, False
    # below 32768: Linux hands out 32768-60999 as clients' own ports
    run_dir = ROOT / ".run" / ("bench" if brokers == 1 else f"bench-{brokers}-brokers")
    env = {**os.environ, "MPTF_RUN_DIR": str(run_dir), "MPTF_KAFKA_PORT": "24092",
           "MPTF_KAFKA_CONTROLLER_PORT": "24093", "MPTF_MONGO_PORT": "24117",
           "MPTF_KAFKA_BROKERS": str(brokers), "MPTF_PYTHON": sys.executable}
    env.pop("MPTF_KAFKA_CREDENTIALS", None)
    env.pop("MPTF_MONGODB_CREDENTIALS", None)
    # every run starts from empty servers, as the test suite's do: the data earlier runs left
    # (3 GB of it once, in SecantusDB's shared tables) halved the same burst's throughput
    stack(env, "down")
    for sub in ("mongo", *(f"mongo-{s}" for s in SERVICES), "kafka", "kafka-2", "kafka-3"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    subprocess.run([str(ROOT / "deploy/local/stack.sh"), "infra-up"], env=env, check=True)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = ",".join(
        f"127.0.0.1:{24092 + 2 * i}" for i in range(brokers))
    urls = dict(ln.split("=", 1) for ln in stack(env, "env").splitlines() if "=" in ln)
    for s in SERVICES:  # each service's server (the one server, with MPTF_MONGO_SERVERS=one),
        # as its administrator (each service started gets a user of its own: start_service)
        os.environ[f"MONGODB_URL_{s.upper()}"] = mongo_admin_url(
            urls.get(f"MONGODB_URL_{s.upper()}", urls.get("MONGODB_URL", "")),
            urls["MPTF_MONGODB_CREDENTIALS"])
    # the references (a), (b) and our consumer on (b)'s work: one server, like for like
    os.environ["MONGODB_URL"] = os.environ["MONGODB_URL_INTAKE"]
    os.environ["MPTF_KAFKA_CREDENTIALS"] = str(run_dir / "kafka/credentials.json")
    os.environ["MPTF_BENCH_RUN_DIR"] = str(run_dir)  # whose pids the CPU accounting reads
    return env, True


def cpu_seconds(pid: int) -> float:
    """CPU (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(pipe: Pipeline) -> dict[str, int]:
    """Every process of the run by name: the services' replicas, the servers the stack
    script started (their pid files), and this benchmark itself (the SC driver, the
    producers, the watcher)."""
    names = [f"{s}{i or ''}" for s in SERVICES for i in range(len(pipe.ports[s]))]
    out = dict(zip(names, (p.pid for p in pipe.procs), strict=True))
    pids = Path(os.environ.get("MPTF_BENCH_RUN_DIR", "/nonexistent")) / "pids"
    for f in sorted(pids.glob("*.pid")) if pids.is_dir() else []:
        out[f.stem] = int(f.read_text().strip())
    out["benchmark"] = os.getpid()
    return out


def stack(env: dict[str, str], *args: str) -> str:
    """The stack script on the benchmark's servers."""
    return subprocess.run([str(ROOT / "deploy/local/stack.sh"), *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def check(r: httpx.Response) -> None:
    """A refused call stops the benchmark with the service's own answer (problem+json)."""
    if r.is_error:
        raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:500]}")


class Pipeline:
    """The four services, an SC driver that approves each screened note, and a watcher of
    the allocation notifications."""

    def __init__(self, tag: str, workdir: Path, replicas: int = 1,
                 trace_ratio: float | None = None) -> None:
        self.tag, self.workdir = tag, workdir
        self.trace_ratio = (ServiceSettings.model_fields["otel_sample_ratio"].default
                            if trace_ratio is None else trace_ratio)
        self.ports = {s: [free_port() for _ in range(replicas)] for s in SERVICES}
        self.procs: list[Any] = []
        self.ready_s: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self.pid_of: dict[str, str] = {}
        self.done: dict[str, float] = {}
        self.screened: dict[str, float] = {}
        self.hops: dict[str, dict[str, float]] = {}  # programme -> hop -> epoch seconds
        self.sent_at: dict[str, float] = {}  # entity reference -> epoch seconds
        self.meetings = 0
        self.fmu: dict[str, str] = {}  # the SC's token, made at start

    def url(self, s: str) -> str:
        return f"http://127.0.0.1:{self.ports[s][0]}"

    def by_hop(self, run: str) -> dict[str, Any]:
        """Medians of each hop (ms) over the run's completed programmes; the SC's wait for
        its next meeting (a timer) apart, and end to end without it."""
        rows = []
        for pid, ref in self.pid_of.items():
            h = self.hops.get(pid, {})
            if ref.startswith(run) and all(k in h for k in (*HOP_ORDER, "meeting")):
                rows.append({"in": self.sent_at[ref], **h})
        out: dict[str, Any] = {"programmes": len(rows)}
        chain = ("in", *HOP_ORDER)
        for a, b in itertools.pairwise(chain):
            out[f"{a}->{b}"] = round(statistics.median(r[b] - r[a] for r in rows) * 1000
                                     ) if rows else None
        if rows:
            wait = [r["meeting"] - r["screened"] for r in rows]
            out["sc_wait_for_meeting"] = round(statistics.median(wait) * 1000)
            e2e = [r["notified"] - r["in"] - max(w, 0) for r, w in zip(rows, wait, strict=True)]
            out["end_to_end_without_sc_wait_p50"] = round(pct(e2e, 50) * 1000)
            out["end_to_end_without_sc_wait_p99"] = round(pct(e2e, 99) * 1000)
        return out

    async def start(self) -> None:
        """Each process spawned alone and timed from its own spawn to ready (the topics are
        made first, as a deployment's are). Four processes spawned at once share the
        machine's 2 cores: `ready_together` measures that apart."""
        provision(self.tag)
        async with httpx.AsyncClient(timeout=5) as http:
            for s, ports in self.ports.items():
                for p in ports:  # a service is ready when its last replica is
                    t0 = time.perf_counter()
                    self.procs.append(start_service(s, self.tag, p, self.workdir,
                                                    MONGODB_URL=mongo_url(s),
                                                    MPTF_LOG_LEVEL="WARNING",
                                                    MPTF_OTEL_SAMPLE_RATIO=str(
                                                        self.trace_ratio), **DEFAULTS))
                    await wait_ready(http, p, every=0.02)
                    self.ready_s[s] = max(self.ready_s.get(s, 0), time.perf_counter() - t0)
        # a token of the run's own (one made at import could expire during a long benchmark)
        self.fmu = bearer("dev-fmu")
        async with httpx.AsyncClient(timeout=60) as http:  # (many processes just started)
            r = await http.post(f"{self.url('funding')}/v1/contributions", headers=self.fmu, json={
                "contribution_id": "bench", "contributor": "DEU", "contributor_name": "DEU",
                "currency": "USD", "amount": "9000000000000", "year": 2026})
            check(r)
            check(await http.post(f"{self.url('funding')}/v1/contributions/bench/deposits",
                                  headers=self.fmu, json={"deposit_id": "d",
                                                          "amount": "9000000000000",
                                                          "usd_amount": "9000000000000"}))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Pipeline]:
        """The services started, the SC driver watching; everything stopped after (also
        when start-up fails)."""
        try:
            await self.start()
        except BaseException:
            stop_all(self.procs)
            raise
        stop = asyncio.Event()
        driver = asyncio.create_task(self.driver(stop))
        try:
            yield self
        finally:
            stop.set()
            try:
                await driver
            finally:
                stop_all(self.procs)

    async def driver(self, stop: asyncio.Event) -> None:
        """The Steering Committee: meets every 100 ms and approves, in one meeting, the
        eligible notes screened since (up to 100 a meeting). Records when each note was
        screened and when its allocation notification was logged."""
        c = AIOKafkaConsumer(f"{self.tag}.{topics.PROGRAMMES}",
                             f"{self.tag}.{topics.FUNDING}",
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
                met = time.time()
                for pid in todo:
                    self.hops.setdefault(pid, {}).setdefault("meeting", met)
                r = await http.post(f"{self.url('funding')}/v1/meetings", headers=self.fmu, json={
                    "meeting_id": f"sc{meetings}", "decisions": [
                        {"programme_id": pid, "decision": "approve", "decision_id": "sc",
                         "priority": 1} for pid in todo]})
                check(r)
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
                        hop = HOPS.get(h["ce_type"].rsplit(".", 1)[0])
                        if hop and (hop != "notified" or (body["fact_type"] == ALLOCATION
                                                          and body["recipient"] == "IOM")):
                            # when the fact was published (the relay's send: the record's
                            # create time, on this machine's clock)
                            self.hops.setdefault(body["programme_id"], {}).setdefault(
                                hop, r.timestamp / 1000)
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
            self.sent_at[ref] = time.time()
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

    def longest_pause(self, run: str, began: float) -> float:
        """The longest time in a run during which no programme completed (from `began`, its
        first offer, to its last completion): the pipeline's stalls, seen apart from its
        pace (completions come in batches a fraction of a second apart)."""
        times = sorted([began, *(self.done[pid] for pid, ref in self.pid_of.items()
                                 if ref.startswith(run) and pid in self.done)])
        return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 2)

    async def metric(self, name: str, skip: str = "\0") -> int:
        """A counter summed over the services' /metrics, every replica's (series containing
        `skip` left out)."""
        total = 0
        async with httpx.AsyncClient(timeout=5) as http:
            for port in (p for svc in SERVICES for p in self.ports[svc]):
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
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
    """Messages per second from when `consumer` has started (its subscriptions joined:
    start-up is measured apart, as time to ready) until it has handled all n. What it
    handled between joining and the clock starting (a few milliseconds' worth) is counted
    as if handled after, the same way for every consumer measured."""
    await consumer.start()
    if isinstance(consumer, Runtime):  # it connects in the background
        await consumer.ready.wait()
    start = time.perf_counter()
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
    broker = KafkaBroker(bs.split(","), logger=None,  # its per-message log lines are not the work
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
    from shared.store import Store

    settings = ServiceSettings(service_name="benchstep", topic_prefix=f"{tag}.",
                               kafka_username="admin",
                               mongodb_database=f"{tag}_benchstep", log_level="WARNING")
    store = Store(settings)
    runtime = Runtime(settings, store)
    # as (b)'s broker: no per-message log lines (they are not the work being measured)
    runtime.broker = KafkaBroker(settings.bootstrap_servers, logger=None,
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


class Profiler:
    """Every process of the run sampled for one phase, each to a speedscope file: where the
    time goes, seen rather than guessed. py-spy (PyPI) samples the Python ones (the
    services, the Mongo servers when the stack script runs SecantusDB, this benchmark);
    the JDK's Flight Recorder the brokers' JVMs (tests.bench.jfr)."""

    def __init__(self, pipe: Pipeline, out: Path) -> None:
        self.pipe, self.out, self.procs = pipe, out, []
        self.jvms: list[str] = []  # the brokers being recorded
        self.until = 0.0  # when their recordings end

    def start(self, seconds: float) -> None:
        spy = Path(sys.executable).parent / "py-spy"
        duration = max(1, int(seconds))  # (whole seconds, for both samplers)
        self.until = time.monotonic() + duration
        self.out.mkdir(parents=True, exist_ok=True)
        for old in (*self.out.glob("*.speedscope.json"), *self.out.glob("*.jf[rc]")):
            old.unlink()  # (an earlier run's processes)
        for name, pid in processes(self.pipe).items():
            if name.startswith("kafka"):
                if jfr.start(pid, duration, self.out / f"{name}.jfr"):
                    self.jvms.append(name)
                continue
            if not name.startswith((*SERVICES, "mongo", "benchmark")) or not spy.exists():
                continue
            self.procs.append(subprocess.Popen(
                [str(spy), "record", "--pid", str(pid), "--format", "speedscope",
                 "--duration", str(duration), "--rate", "50", "--nonblocking",
                 "--output", str(self.out / f"{name}.speedscope.json")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> list[str]:
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.terminate()
        for name in self.jvms:  # (each recording is written when its duration ends)
            rec = self.out / f"{name}.jfr"
            jfr.written(rec, max(0.0, self.until - time.monotonic()) + 30)
            try:
                jfr.convert(rec, self.out / f"{name}.speedscope.json", name)
            except (subprocess.SubprocessError, ValueError, KeyError) as e:
                print(f"[bench] {name}'s recording not converted: {e!r}", file=sys.stderr)
        return sorted(str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f)
                      for f in self.out.glob("*.speedscope.json"))


def command_of(line: str) -> str:
    """'find programmes' from a store metric's sample line (its command and collection)."""
    return " ".join(line.split(f'{label}="', 1)[-1].split('"', 1)[0]
                    for label in ("command", "collection")).strip()


async def per_programme(pipe: Pipeline, programmes: int) -> dict[str, Any]:
    """Per completed programme, per service: documents in its database, store commands
    (round trips) and Kafka records published."""
    from motor.motor_asyncio import AsyncIOMotorClient

    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for svc in SERVICES:
            client = AsyncIOMotorClient(mongo_url(svc))
            db = client[f"{pipe.tag}_{svc}"]
            docs = {c: await db[c].estimated_document_count()
                    for c in await db.list_collection_names()}
            client.close()
            published = commands = 0
            by_command: dict[str, float] = {}
            seconds: dict[str, float] = {}
            for port in pipe.ports[svc]:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                for ln in text.splitlines():
                    if ln.startswith("mptf_outbox_published_total{"):
                        published += int(float(ln.rsplit(" ", 1)[1]))
                    if ln.startswith("mptf_store_commands_total{"):
                        n = int(float(ln.rsplit(" ", 1)[1]))
                        commands += n
                        name = command_of(ln)
                        by_command[name] = by_command.get(name, 0) + n
                    if ln.startswith("mptf_store_command_seconds_total{"):
                        name = command_of(ln)
                        seconds[name] = seconds.get(name, 0) + float(ln.rsplit(" ", 1)[1])
            out[svc] = {"documents": round(sum(docs.values()) / programmes, 1),
                        "by_collection": {c: round(n / programmes, 2)
                                          for c, n in sorted(docs.items()) if n},
                        "store_round_trips": round(commands / programmes, 1),
                        # which commands they are (the whole run, background polls too)
                        "store_round_trips_by_command": {
                            c: round(n / programmes, 1) for c, n in sorted(
                                by_command.items(), key=lambda x: -x[1]) if n >= programmes / 10},
                        # the time they took as the service saw it (the store's work and
                        # the wait behind other clients' commands), the ten largest
                        "store_ms_by_command": {
                            c: round(v * 1000 / programmes, 1) for c, v in sorted(
                                seconds.items(), key=lambda x: -x[1])[:10]},
                        "kafka_records": round(published / programmes, 1)}
    return out


async def store_limit(pipe: Pipeline, programmes: int, sample: int = 100) -> dict[str, Any]:
    """The store's own limit for this pipeline's documents, in the same run: every
    collection the services wrote is copied (its indexes, and its documents' shapes from
    what the run stored) into a scratch database on the service's own server, and `sample`
    programmes' worth of new documents (the run's documents per programme, each collection)
    are inserted, one transaction per service, as a batch of the pipeline would, the four
    services' at once (on one server they take turns). Inserts only: no reads, no updates,
    no relay, so the programmes/s it gives is a ceiling the pipeline cannot reach on these
    servers, whatever its code does."""
    import uuid

    from motor.motor_asyncio import AsyncIOMotorClient

    clients = {svc: AsyncIOMotorClient(mongo_url(svc)) for svc in SERVICES}
    plan: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    scratch = f"{pipe.tag}_limit"
    for svc, client in clients.items():
        db = client[f"{pipe.tag}_{svc}"]
        for name in sorted(await db.list_collection_names()):
            n = round(await db[name].estimated_document_count() * sample / programmes)
            docs = await db[name].find().limit(n).to_list(None) if n else []
            if not docs:
                continue
            target = f"{svc}_{name}"
            async for ix in db[name].list_indexes():
                if ix["name"] == "_id_":
                    continue  # (every collection has it)
                # the index's options but `unique`: the copies repeat the sampled values
                opts = {k: v for k, v in ix.items() if k in ("sparse", "partialFilterExpression",
                                                              "expireAfterSeconds")}
                await client[scratch][target].create_index(list(ix["key"].items()),
                                                           name=ix["name"], **opts)
            plan.setdefault(svc, []).append((target, [docs[i % len(docs)]
                                                      for i in range(n)]))

    async def insert(svc: str, writes: list[tuple[str, list[dict[str, Any]]]]) -> None:
        client = clients[svc]
        async with await client.start_session() as s, s.start_transaction():
            for target, docs in writes:
                await client[scratch][target].insert_many(
                    [{**d, "_id": str(uuid.uuid4())} for d in docs], session=s)

    t0 = time.perf_counter()
    await asyncio.gather(*(insert(svc, writes) for svc, writes in plan.items()))
    took = time.perf_counter() - t0
    for client in clients.values():
        await client.drop_database(scratch)
        client.close()
    return {"programmes": sample, "seconds": round(took, 2),
            "programmes_per_s": round(sample / took, 1)}


async def ready_together(tag: str, work: Path, rounds: int = 3) -> dict[str, Any]:
    """The four services spawned at the same moment (topics made first): each one's time
    from that moment to ready, while they share the machine's cores. `rounds` starts, one
    after the other (each on topics and databases of its own): each service's median, and
    every round's figures. One start alone moved by half a second between runs of the same
    code (docs/benchmarks.md, the thirty-second session)."""
    each: list[dict[str, float]] = []
    for i in range(rounds):
        provision(f"{tag}{i}")
        ports = {s: free_port() for s in SERVICES}
        t0 = time.perf_counter()
        procs = [start_service(s, f"{tag}{i}", ports[s], work, MONGODB_URL=mongo_url(s),
                               MPTF_LOG_LEVEL="WARNING", **DEFAULTS) for s in SERVICES]
        out = {}
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                for s in SERVICES:
                    await wait_ready(http, ports[s], every=0.02)
                    out[s] = round(time.perf_counter() - t0, 2)
        finally:
            stop_all(procs)
        each.append(out)
    return {"median": {s: statistics.median(r[s] for r in each) for s in SERVICES},
            "rounds": each}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"bench{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix="mptf-bench-"))
    pipe = Pipeline(tag, work, trace_ratio=args.trace_ratio)
    results: dict[str, Any] = {"trace_sample_ratio": pipe.trace_ratio}
    total = 0
    # the references first, on the empty servers: run after the pipeline, on a store holding
    # the whole run, (b)'s one round trip per message ran at 85/s instead of 270-390/s
    results["reference_a_raw_relay_msgs_per_s"] = round(await raw_relay(args.reference, tag))
    results["reference_b_naive_step_msgs_per_s"] = round(await naive_step(args.reference, tag))
    results["our_consumer_on_reference_b_work_msgs_per_s"] = round(
        await batched_step(args.reference, tag))
    async with pipe.running():
        results["time_to_ready_s"] = {s: round(v, 2) for s, v in pipe.ready_s.items()}
        # capacity: the same burst offered at once, `runs` times in a row; the median
        bursts: list[float] = []
        pauses: list[float] = []
        before = await pipe.consumed()
        commands = await pipe.metric("mptf_store_commands_total")
        batches = await pipe.metric("mptf_handler_seconds_count")
        busy = 0.0
        profiler = Profiler(pipe, Path(args.profiles))
        rss: dict[str, float] = {}
        cpu0 = {n: cpu_seconds(p) for n, p in processes(pipe).items()}
        for k in range(args.runs):
            t0 = time.perf_counter()
            await pipe.offer(args.programmes, None, f"burst{k}")
            await pipe.wait(f"burst{k}", args.programmes, 600)
            took = time.perf_counter() - t0
            busy += took
            total += len(pipe.finished(f"burst{k}"))
            bursts.append(round(len(pipe.finished(f"burst{k}")) / took, 1))
            pauses.append(pipe.longest_pause(f"burst{k}", t0))
            for name, mb in services_rss_mb(pipe).items():
                rss[name] = max(rss.get(name, 0.0), mb)
        capacity = statistics.median(bursts)
        # what bound the bursts: each process's CPU over their time, in cores (2 = the
        # whole machine here)
        cores = {n: round((cpu_seconds(p) - cpu0.get(n, 0.0)) / busy, 2)
                 for n, p in processes(pipe).items()}
        servers = [v for n, v in cores.items() if n.startswith("mongo")]
        totals = {"all processes": round(sum(cores.values()), 2)}
        if len(servers) > 1:  # one Mongo server per service
            totals["mongo, all servers"] = round(sum(servers), 2)
        results["cpu_cores_during_bursts"] = cores | totals
        results["throughput_programmes_per_s"] = capacity
        results["capacity_programmes_per_s"] = capacity
        results["bursts"] = {"programmes": args.programmes, "programmes_per_s": bursts,
                             "spread": round((max(bursts) - min(bursts)) / capacity, 2),
                             # no programme completing for seconds: a stall, not a pace
                             "longest_pause_s": pauses}
        # every step of the pipeline together, in the unit of reference (b): messages
        # consumed per second by the four services during the bursts
        results["pipeline_steps_msgs_consumed_per_s"] = round(
            (await pipe.consumed() - before) / busy)
        # the bursts' large batches: what each programme cost the store (round trips), the
        # batches the services' subscriptions handled, and the CPU of every process
        burst_programmes = max(sum(len(pipe.finished(f"burst{k}")) for k in range(args.runs)), 1)
        results["bursts"]["store_round_trips_per_programme"] = round(
            (await pipe.metric("mptf_store_commands_total") - commands) / burst_programmes, 1)
        results["bursts"]["consumed_batches_per_programme"] = round(
            (await pipe.metric("mptf_handler_seconds_count") - batches) / burst_programmes, 2)
        results["bursts"]["cpu_ms_per_programme"] = round(
            totals["all processes"] * busy * 1000 / burst_programmes, 1)
        # one step of the pipeline, comparable with reference (b): intake consuming the
        # inbound notes, screening each and writing it with its two facts (outbox), published
        screened = pipe.screened_by("burst0")
        first = min(pipe.sent[r] for r in pipe.sent if r.startswith("burst0"))
        results["step_intake_screening_msgs_per_s"] = round(
            len(screened) / (max(screened) - first)) if screened else 0
        results["burst_by_hop_ms"] = pipe.by_hop(f"burst{args.runs - 1}")
        if args.profiles:
            # one more burst, sampled by py-spy: the sampling slows every process, so this
            # burst is not among those measured (as the last of them it was always the
            # slowest, and made the spread)
            profiler.start(args.programmes / min(bursts) * 1.5)  # the slowest burst's time
            t0 = time.perf_counter()
            await pipe.offer(args.programmes, None, "profiled")
            await pipe.wait("profiled", args.programmes, 600)
            total += len(pipe.finished("profiled"))
            results["profiled_burst_programmes_per_s"] = round(
                len(pipe.finished("profiled")) / (time.perf_counter() - t0), 1)
        results["profiles"] = profiler.stop()
        # latency below saturation: a share of the capacity offered at a fixed rate
        levels = []
        for share in (0.25, 0.5, 0.75, 0.9):
            offered = round(share * capacity, 1)
            n = max(int(offered * args.seconds), 5)
            run = f"load{int(share * 100)}"
            commands = await pipe.metric("mptf_store_commands_total")
            batches = await pipe.metric("mptf_handler_seconds_count")
            procs = processes(pipe)
            cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
            t0 = time.perf_counter()
            await pipe.offer(n, offered, run)
            await pipe.wait(run, n, 180)
            took = time.perf_counter() - t0
            cpu = sum(cpu_seconds(pid) - cpu0[name] for name, pid in procs.items())
            total += len(pipe.finished(run))
            lat = pipe.finished(run)
            levels.append({"load_share": share, "offered_per_s": offered, "programmes": n,
                           "completed": len(lat), "p50_ms": round(pct(lat, 50) * 1000),
                           "p95_ms": round(pct(lat, 95) * 1000),
                           "p99_ms": round(pct(lat, 99) * 1000), "hops": pipe.by_hop(run),
                           # a paced flow makes small batches: what each programme costs
                           "store_round_trips_per_programme": round(
                               (await pipe.metric("mptf_store_commands_total") - commands)
                               / max(len(lat), 1), 1),
                           "consumed_batches_per_programme": round(
                               (await pipe.metric("mptf_handler_seconds_count") - batches)
                               / max(len(lat), 1), 2),
                           # every process's CPU over the level (2 cores = the whole
                           # machine here): how close to saturation the paced flow ran
                           "cpu_cores": round(cpu / took, 2),
                           "cpu_ms_per_programme": round(cpu * 1000 / max(len(lat), 1), 1)})
            print(json.dumps(levels[-1]), flush=True)
        results["latency_by_load"] = levels
        results["store_transaction_retries"] = await pipe.metric(
            "mptf_transaction_retries_total")
        results["per_programme"] = await per_programme(pipe, max(total, 1))
        results["store_limit_inserts_only"] = await store_limit(pipe, max(total, 1))
        results["rss_mb_max"] = {s: round(v) for s, v in rss.items()}
        # and at the end of the run, every programme of it handled: a service's memory
        # still rises slowly after the bursts (the run's first thousands of programmes),
        # which the bursts' maximum alone would hide
        results["rss_mb_at_end"] = {"programmes": total} | {
            name: round(mb) for name, mb in services_rss_mb(pipe).items()}
    results["sc_meetings"] = pipe.meetings
    together = await ready_together(f"{tag}r", work)
    results["time_to_ready_together_s"] = together["median"]
    results["time_to_ready_together_rounds_s"] = together["rounds"]
    results["ratios"] = {
        "pipeline_msgs_over_reference_a": round(
            results["pipeline_steps_msgs_consumed_per_s"]
            / results["reference_a_raw_relay_msgs_per_s"], 3),
        "capacity_over_store_limit_inserts_only": round(
            results["capacity_programmes_per_s"]
            / results["store_limit_inserts_only"]["programmes_per_s"], 2),
        "our_consumer_over_reference_b": round(
            results["our_consumer_on_reference_b_work_msgs_per_s"]
            / results["reference_b_naive_step_msgs_per_s"], 2)}
    return results


def plot(results: dict[str, Any], out: Path) -> bool:
    """Latency by load (p50/p95/p99), a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    levels = results["latency_by_load"]
    x = [lv["offered_per_s"] for lv in levels]
    fig, ax = plt.subplots(figsize=(6, 4))
    for q in ("p50_ms", "p95_ms", "p99_ms"):
        ax.plot(x, [lv[q] for lv in levels], marker="o", label=q.removesuffix("_ms"))
    ax.set_xlabel("offered programmes/s (25, 50, 75, 90% of capacity "
                  f"{results['capacity_programmes_per_s']}/s)")
    ax.set_ylabel("end-to-end latency, ms")
    ax.set_title("Pipeline latency by load")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def table(results: dict[str, Any]) -> str:
    hops = [f"in->{HOP_ORDER[0]}"] + [f"{a}->{b}" for a, b in itertools.pairwise(HOP_ORDER)]
    rows = ["| load | offered/s | p50 ms | p95 ms | p99 ms | " + " | ".join(hops)
            + " | SC wait | p99 without SC wait | store round trips per programme"
            " | batches per programme | CPU ms per programme | cores used |",
            "|---" * (11 + len(hops)) + "|"]
    for lv in results["latency_by_load"]:
        h = lv["hops"]
        rows.append(f"| {int(lv['load_share'] * 100)}% | {lv['offered_per_s']} | "
                    f"{lv['p50_ms']} | {lv['p95_ms']} | {lv['p99_ms']} | "
                    + " | ".join(str(h.get(k)) for k in hops)
                    + f" | {h.get('sc_wait_for_meeting')} | "
                    f"{h.get('end_to_end_without_sc_wait_p99')} | "
                    f"{lv.get('store_round_trips_per_programme')} | "
                    f"{lv.get('consumed_batches_per_programme')} | "
                    f"{lv.get('cpu_ms_per_programme')} | {lv.get('cpu_cores')} |")
    b = results.get("bursts", {})
    if "cpu_ms_per_programme" in b:  # the bursts' large batches, for comparison
        rows.append(f"| bursts | {results['capacity_programmes_per_s']} | | | | "
                    + " | ".join("" for _ in hops) + " | | | "
                    f"{b.get('store_round_trips_per_programme')} | "
                    f"{b['consumed_batches_per_programme']} | {b['cpu_ms_per_programme']} | "
                    f"{results['cpu_cores_during_bursts']['all processes']} |")
    return "\n".join(rows)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Python {platform.python_version()}"


def run(main_fn: Any, args: argparse.Namespace) -> dict[str, Any]:
    """A benchmark's `main_fn(args)` on the infrastructure (started here if need be, and
    stopped after), with the machine it ran on. Stopped by SIGTERM (a timeout, a CI job
    cancelled) as by Ctrl-C: the services it spawned and the servers are stopped too, not
    left running against a broker that is gone."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    env, started = infra()
    try:
        res = asyncio.run(main_fn(args))
    finally:
        if started:
            subprocess.run([str(ROOT / "deploy/local/stack.sh"), "down"], env=env, check=False)
    res["machine"] = machine()
    # where the services' databases lived (as infra() found them)
    res["mongo_servers"] = ("given (MONGODB_URL)" if not started
                            else "one SecantusDB per service"
                            if len({mongo_url(s) for s in SERVICES}) > 1
                            else "one SecantusDB for every service")
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
    ap.add_argument("--runs", type=int, default=5, help="bursts in a row (capacity: median)")
    ap.add_argument("--seconds", type=float, default=20, help="per load level")
    ap.add_argument("--reference", type=int, default=5000)
    ap.add_argument("--profiles", default=str(ROOT / ".run" / "bench" / "profiles"),
                    help="where py-spy's speedscope files go ('' for none)")
    ap.add_argument("--trace-ratio", type=float, default=None,
                    help="the services' MPTF_OTEL_SAMPLE_RATIO (default: theirs, every trace)")
    res = run(main, ap.parse_args())
    print(json.dumps(res, indent=2))
    png = ROOT / "docs" / "latency-by-load.png"
    plotted = plot(res, png)
    write_figures("figures", "Produced by `.venv/bin/python -m tests.bench.pipeline` (see the "
                  "script's docstring for what each figure measures).",
                  f"Machine: {res['machine']}. Kafka 4.1.1 (one KRaft node), SecantusDB "
                  f"0.7.0b3; Mongo servers: {res['mongo_servers']}; share of traces "
                  f"recorded: {res['trace_sample_ratio']}.\n\n" + table(res)
                  + ("\n\n![latency by load](latency-by-load.png)" if plotted else "")
                  + "\n\n```json\n" + json.dumps(res, indent=2) + "\n```")
