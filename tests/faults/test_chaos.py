"""The fault run (`./dev faults`, and part of `./dev test`): while a workload of concept
notes, SC approvals and allocations is under way (1,000 notes spread over the window of
faults), and the changes programmes go through after allocation (withdrawals by a PUNO,
cancellations, suspensions and resumptions, top-ups, extensions, refunds), service
processes are SIGKILLed at random (20 kills, each restarted), the Kafka broker is restarted
once and the Mongo server once, and hostile inputs arrive. Then: no note lost or doubled, no
allocation, transfer, release or notification doubled or lost, the ledger invariant holds,
intake, funding and monitoring agree on the state of every programme that changed, every
hostile input was answered (4xx or a dead letter with its reason), and every service is up
(no crash loop). Prints the figures."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from mptf_cli.kafka_tools import consumer_lag
from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.envelope import Envelope
from tests.conftest import OWN_SERVERS, _stack
from tests.support import (
    FMU,
    IOM,
    all_pages,
    bearer,
    free_port,
    headers_of,
    kafka_auth,
    read_all,
    read_to_end,
    start_service,
    stop_all,
    unique,
    wait_ready,
    writer_of,
)

SERVICES = ("intake", "funding", "monitoring", "notifications")
N = int(os.environ.get("MPTF_FAULT_NOTES", "1000"))
KILLS = int(os.environ.get("MPTF_FAULT_KILLS", "20"))
KILL_EVERY = 3.0  # seconds: the notes are spread over the whole window of kills
ENTITIES = ["IOM", "ILO", "UNDP", "UNICEF"]


REPLICAS = int(os.environ.get("MPTF_FAULT_REPLICAS", "2"))
DOWN_FOR = 20.0  # seconds a killed replica stays down: its work must pass to another
BROKERS = int(os.environ.get("MPTF_KAFKA_BROKERS", "1"))


class Fleet:
    """REPLICAS processes of each service (one consumer group, one store, shared work by
    leases); a killed one stays down DOWN_FOR seconds, so the others take its work over."""

    def __init__(self, tag: str, workdir: Path) -> None:
        self.tag, self.workdir = tag, workdir
        self.ports = {s: [free_port() for _ in range(REPLICAS)] for s in SERVICES}
        self.procs = {s: [self._start(s, i) for i in range(REPLICAS)] for s in SERVICES}
        self.down: dict[str, int] = {}  # service -> the replica that is down
        self.kills: Counter[str] = Counter()  # per service/replica
        self.rng = random.Random(11)

    def _start(self, s: str, i: int) -> Any:
        return start_service(s, self.tag, self.ports[s][i], self.workdir,
                             MPTF_LOG_LEVEL="WARNING", MPTF_OUTBOX_LEASE_SECONDS="3")

    def url(self, s: str) -> str:
        """A live replica's address (any: each answers for the whole service)."""
        up = [i for i in range(REPLICAS) if self.down.get(s) != i]
        return f"http://127.0.0.1:{self.ports[s][self.rng.choice(up)]}"

    def reroute(self, url: str) -> str:
        """`url` on a live replica of its service, if its own is down."""
        for s, ports in self.ports.items():
            for i, port in enumerate(ports):
                base = f"http://127.0.0.1:{port}"
                if url.startswith(base + "/") and self.down.get(s) == i:
                    return self.url(s) + url[len(base):]
        return url

    def kill(self, s: str, i: int) -> None:
        self.procs[s][i].send_signal(signal.SIGKILL)
        self.procs[s][i].wait(timeout=10)
        self.kills[f"{s}/{i}"] += 1
        self.down[s] = i

    def restart(self, s: str) -> None:
        i = self.down.pop(s)
        self.procs[s][i] = self._start(s, i)

    def alive(self) -> list[Any]:
        return [p for ps in self.procs.values() for p in ps if p.poll() is None]

    def everyone(self) -> list[Any]:
        return [p for ps in self.procs.values() for p in ps]

    async def all_ready(self, http: httpx.AsyncClient, timeout: float = 120) -> None:
        for s in SERVICES:
            for port in self.ports[s]:
                await wait_ready(http, port, timeout)


async def takeover(tag: str, service: str, killed_at: float, limit: float = 90.0
                   ) -> float | None:
    """How long after a SIGKILL the killed replica's work was handed over: until every
    consumer group of the service is stable with only the live replicas as members (so each
    of its partitions is assigned to a live one) and the store has reaped the dead replica
    (its server sessions ended: whatever its last transaction held is free; its leases and
    claimed deliveries handed back). None if that took longer than `limit`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from motor.motor_asyncio import AsyncIOMotorClient

    from tests.faults import groups

    live = REPLICAS - 1
    prefix = f"{tag}.mptf-{service}."

    def child() -> ProcessPoolExecutor:  # see tests.faults.groups: librdkafka may abort
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    pool = child()
    mongo = AsyncIOMotorClient(os.environ["MONGODB_URL"], tz_aware=True)
    members = mongo[f"{tag}_{service}"].members
    loop = asyncio.get_running_loop()
    last = "none"
    try:
        while loop.time() - killed_at < limit:
            await asyncio.sleep(0.25)
            try:
                if (await loop.run_in_executor(pool, groups.handed_over, prefix, live)
                        and await members.count_documents({}) == live):
                    return loop.time() - killed_at
            except BrokenProcessPool as e:  # the child died (librdkafka aborted): a new one
                last = repr(e)[:300]
                pool.shutdown(wait=False)
                pool = child()
            except Exception as e:  # a broker or the store restarting: look again
                last = repr(e)[:300]
        print(f"takeover of {service} not seen in {limit:.0f} s; last error: {last}")
        return None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        mongo.close()


def busy_leader(topic: str) -> int:
    """The broker leading partition 0 of `topic` (as the cluster's metadata says)."""
    from mptf_cli.provision import admin_client
    from tests.support import credentials

    admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin", credentials()["admin"])
    return admin.list_topics(topic, timeout=20).topics[topic].partitions[0].leader


def fully_replicated(within: float) -> None:
    """Wait until every partition has all its replicas in sync (the cluster's metadata)."""
    from mptf_cli.provision import admin_client
    from tests.support import credentials

    admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin", credentials()["admin"])
    deadline = time.monotonic() + within
    while True:
        try:
            behind = [f"{t}-{p.id}" for t, md in admin.list_topics(timeout=20).topics.items()
                      for p in md.partitions.values() if len(p.isrs) < len(p.replicas)]
        except Exception as e:  # the cluster still settling: look again
            behind = [repr(e)]
        if not behind:
            return
        assert time.monotonic() < deadline, f"not back in sync after {within:.0f} s: {behind[:5]}"
        time.sleep(1)


FLEET: list[Fleet] = []  # the run's fleet: a call to a replica that is down goes to another


CALL_LIMIT = 300.0  # seconds an HTTP call is retried (a replica's restart takes 5-20)
# one attempt's wait: a call abandoned while the service still works on it and sent again
# makes two of the same (large) transaction run at once and conflict (an SC meeting took 89 s
# that way, retried every 30 s)
HTTP_TIMEOUT = 120.0
# how long the run may take to settle after the faults: every eligible note decided (the SC
# decides about 3 programmes/s here under the load of 8 replicas on 2 cores), then every fact
# travelled
SETTLE = 600.0


async def call(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """An HTTP call that outlives a killed replica: retried, on a live replica of the same
    service, until it gets an answer (or fails the run after CALL_LIMIT seconds)."""
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + CALL_LIMIT, "nothing"
    while loop.time() < deadline:
        try:
            r = await http.request(method, url, **kw)
            if r.status_code < 500:
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
            if FLEET:
                url = FLEET[0].reroute(url)
        await asyncio.sleep(0.25)
    raise AssertionError(f"no answer from {method} {url} in {CALL_LIMIT:.0f} s (last: {last})")


async def unsettled(fleet: Fleet, http: httpx.AsyncClient, tag: str) -> str | None:
    """What is still in flight (None when every consumer group has caught up and every
    outbox is published). The caller checks twice, a moment apart: a fact in flight between
    the two shows as lag."""
    from aiokafka.errors import KafkaError

    try:
        lag = await asyncio.wait_for(
            consumer_lag(os.environ["KAFKA_BOOTSTRAP_SERVERS"], prefix=f"{tag}."), 60)
    except (KafkaError, TimeoutError) as e:  # a restarted broker still loading its groups
        return f"consumer lag unreadable ({e!r})"
    behind = [f"{r['group']} {r['topic']}[{r['partition']}] {r['lag']}" for r in lag if r["lag"]]
    if behind:
        return "lag: " + ", ".join(behind[:6])
    for s in SERVICES:
        text = (await call(http, "GET", f"{fleet.url(s)}/metrics")).text
        if any(ln.startswith("mptf_outbox_backlog ") and float(ln.split()[1]) > 0
               for ln in text.splitlines()):
            return f"{s}'s outbox not yet published"
    await asyncio.sleep(1)
    return None


async def eventually(what: str, limit: float, why_not: Any,
                     helpers: tuple[asyncio.Task[Any], ...] = ()) -> None:
    """Waits until `why_not()` answers None, checking every second; fails the run with the
    last answer after `limit` seconds (a run that does not settle is a failure, not a hang),
    or at once with the error of a helper task that died (the one that moves things on)."""
    loop = asyncio.get_running_loop()
    deadline, reason = loop.time() + limit, "not checked"
    while loop.time() < deadline:
        for t in helpers:
            if t.done() and t.exception():
                raise AssertionError(f"{what}: {t.get_name()} failed") from t.exception()
        reason = await why_not()
        if reason is None:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"{what}: not within {limit:.0f} s; last seen: {reason}")


async def refused(user: str | None, topic: str, headers: Any) -> bool:
    """Whether the broker refuses a write to `topic` by `user` (None: no credentials)."""
    from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

    p = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         enable_idempotence=True, request_timeout_ms=5000,
                         **(kafka_auth(user) if user else {}))
    try:
        await p.start()
        await p.send_and_wait(topic, b"{}", key=b"forged", headers=headers)
    except (KafkaConnectionError, TopicAuthorizationFailedError):
        return True
    finally:
        await p.stop()
    return False


def note(i: int, rng: random.Random) -> dict[str, Any]:
    who, other = rng.sample(ENTITIES, 2)
    return {**CONCEPT_NOTE_EXAMPLE, "entity_reference": f"F-{i:04}",
            "duration_months": 60 if i % 7 == 0 else 24,  # some fail screening
            "punos": [{"entity": who, "convening": True, "budget_usd": "100000"},
                      {"entity": other, "budget_usd": "50000"}]}


async def test_faults_lose_and_double_nothing(tmp_path: Path) -> None:
    assert OWN_SERVERS, "the fault run restarts the broker and the store: it needs its own"
    rng = random.Random(7)
    tag = unique("fault")
    fleet = Fleet(tag, tmp_path)
    FLEET[:] = [fleet]
    figures: Counter[str] = Counter()
    hostile: list[tuple[str, str]] = []  # (what, expected answer)
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            await fleet.all_ready(http)
            # enough for about two thirds of the eligible notes (160,500 each)
            usd = f"{160_500 * (N * 2 // 3) / 0.99:.2f}"
            await call(http, "POST", f"{fleet.url('funding')}/v1/contributions", headers=FMU,
                       json={"contribution_id": "c", "contributor": "DEU",
                             "contributor_name": "Germany", "currency": "USD",
                             "amount": usd, "year": 2026})
            r = await call(http, "POST", f"{fleet.url('funding')}/v1/contributions/c/deposits",
                           headers=FMU, json={"deposit_id": "d1", "amount": usd,
                                              "usd_amount": usd})
            assert r.status_code == 201, r.text
            # one producer per principal: each entity system on its own topic, as itself
            producers: dict[str, AIOKafkaProducer] = {}

            async def producer_of(user: str) -> AIOKafkaProducer:
                if user not in producers:
                    producers[user] = AIOKafkaProducer(
                        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                        enable_idempotence=True, retry_backoff_ms=500,
                        request_timeout_ms=60000, **kafka_auth(user))
                    await producers[user].start()
                return producers[user]

            inbound = f"{tag}.{topics.INBOUND_CONCEPT_NOTES}"  # the kind; .<ENTITY> each
            refs = []

            async def send(topic: str, value: bytes, key: bytes, headers: Any) -> None:
                """Publish as an entity system would: retried across a broker restart, with
                the same event id (consumers dedupe it)."""
                from aiokafka.errors import KafkaError

                producer = await producer_of(writer_of(topic))
                loop = asyncio.get_running_loop()
                started = loop.time()
                while loop.time() - started < 180:
                    try:
                        await producer.send_and_wait(topic, value, key=key, headers=headers)
                        figures["longest send"] = max(figures["longest send"],
                                                      loop.time() - started)  # type: ignore
                        return
                    except KafkaError:
                        figures["publish retries (broker down)"] += 1
                        await asyncio.sleep(0.5)
                raise AssertionError(f"no broker took a record for {topic} in 180 s")

            async def workload() -> None:
                for i in range(N):
                    body = note(i, rng)
                    refs.append(body["entity_reference"])
                    n = SubmitConceptNote.model_validate(body)
                    env = Envelope(source=f"urn:mptf:entity:{body['punos'][0]['entity']}",
                                   type=n.TYPE)
                    copies = 2 if i % 10 == 0 else 1  # duplicated events (same event id)
                    for _ in range(copies):
                        await send(f"{inbound}.{body['punos'][0]['entity']}",
                                   n.model_dump_json().encode(),
                                   body["entity_reference"].encode(), env.headers())
                    figures["notes sent"] += 1
                    figures["duplicated events sent"] += copies - 1
                    await asyncio.sleep(KILLS * KILL_EVERY / N)

            async def hostile_inputs() -> None:
                ok_env = Envelope(source="urn:mptf:entity:IOM", type=SubmitConceptNote.TYPE)
                bad = [("malformed JSON", b"{nope", ok_env.headers(), "malformed-json"),
                       ("wrong types", json.dumps({"title": 5}).encode(), ok_env.headers(),
                        "invalid"),
                       ("unknown version", json.dumps(CONCEPT_NOTE_EXAMPLE).encode(),
                        Envelope(source="urn:mptf:entity:IOM",
                                 type="org.migrationmptf.concept-note.submit.v7")
                        .headers(), "unknown-type"),
                       ("oversize payload", b'{"x": "' + b"a" * 300_000 + b'"}',
                        ok_env.headers(), "oversize"),
                       ("forged source", json.dumps({**CONCEPT_NOTE_EXAMPLE,
                                                     "entity_reference": "FORGED"}).encode(),
                        Envelope(source="urn:mptf:entity:WFP", type=SubmitConceptNote.TYPE)
                        .headers(), "forbidden")]
                for what, value, headers, reason in bad:
                    await send(f"{inbound}.IOM", value, what.encode(), headers)
                    hostile.append((what, reason))
                # the broker itself refuses what a principal may not do
                for what, user, topic in (
                        ("anonymous client", None, f"{inbound}.IOM"),
                        ("entity writes another's topic", "entity-IOM", f"{inbound}.ILO"),
                        ("entity writes funding's facts", "entity-IOM",
                         f"{tag}.{topics.FUNDING}")):
                    assert await refused(user, topic, ok_env.headers()), what
                    figures["unauthorised Kafka writes refused"] += 1
                checks = [
                    ("forged role decides", "POST", "funding", "/v1/decisions", IOM,
                     {"programme_id": "x", "decision": "approve", "decision_id": "x",
                      "priority": 1}, 403),
                    ("forged token", "GET", "intake", "/v1/programmes",
                     {"authorization": "Bearer stolen"}, None, 401),
                    ("HTTP wrong types", "POST", "intake", "/v1/concept-notes", IOM,
                     {**CONCEPT_NOTE_EXAMPLE, "duration_months": "long"}, 422),
                    ("HTTP oversize", "POST", "intake", "/v1/concept-notes", IOM,
                     {"x": "a" * 300_000}, 413),
                    ("negative deposit", "POST", "funding", "/v1/contributions/c/deposits",
                     FMU, {"deposit_id": "neg", "amount": "-1", "usd_amount": "-1"}, 422)]
                for what, method, svc, path, hdrs, body, status in checks:
                    r = await call(http, method, fleet.url(svc) + path, headers=hdrs,
                                   json=body)
                    assert r.status_code == status, (what, r.status_code, r.text)
                    assert r.headers["content-type"] == "application/problem+json"
                    figures["hostile HTTP answered 4xx"] += 1
                # out of order: a funding fact about a programme intake never saw
                from shared.contracts.funding import ProgrammeApproved

                early = ProgrammeApproved.model_validate({
                    "programme_id": "jp-from-the-future", "decision_id": "x", "priority": 1,
                    "approved_budget": [{"entity": "IOM", "budget_usd": "1"}],
                    "total_budget_usd": "1", "decided_at": "2026-01-01T00:00:00Z"})
                await send(f"{tag}.{topics.FUNDING}", early.model_dump_json().encode(),
                           b"jp-from-the-future",
                           Envelope(source="/mptf/funding", type=early.TYPE).headers())
                figures["events out of order"] += 1

            async def decisions(stop: asyncio.Event) -> None:
                """The SC meets every second and approves what was screened eligible since;
                a meeting cut short by a kill is held again (decisions already taken come
                back refused with 409, and stand)."""
                decided: set[str] = set()
                meetings = 0
                while not stop.is_set():
                    r = await call(http, "GET", f"{fleet.url('intake')}/v1/programmes",
                                   headers=FMU, params={"status": "screened-eligible",
                                                        "limit": 200})
                    todo = [p["programme_id"] for p in r.json()["items"]
                            if p["programme_id"] not in decided][:50]  # an agenda's length
                    if todo:
                        meetings += 1
                        began = asyncio.get_running_loop().time()
                        d = await call(http, "POST", f"{fleet.url('funding')}/v1/meetings",
                                       headers=FMU, json={
                                           "meeting_id": f"sc{meetings}", "decisions": [
                                               {"programme_id": pid, "decision": "approve",
                                                "decision_id": f"sc{meetings}",
                                                "priority": len(decided) + 1 + i}
                                               for i, pid in enumerate(todo)]})
                        figures["longest SC meeting"] = max(
                            figures["longest SC meeting"],
                            asyncio.get_running_loop().time() - began)  # type: ignore
                        if d.status_code == 201:
                            for x in d.json()["results"]:
                                if x["status"] != "refused" or x["problem"]["status"] == 409:
                                    decided.add(x["programme_id"])
                    figures["SC meetings"] = meetings
                    await asyncio.sleep(1)

            changed: set[str] = set()

            async def changes(stop: asyncio.Event) -> None:
                """What programmes go through after their allocation, under the same faults:
                each call retried until answered (a repeated decision or refund id answers
                200 and changes nothing; a repeated withdrawal 409)."""
                n = 0
                suspended: list[str] = []
                while not stop.is_set():
                    await asyncio.sleep(0.7)
                    r = await call(http, "GET", f"{fleet.url('funding')}/v1/allocations",
                                   headers=FMU, params={"limit": 500})
                    live = [a for a in r.json() if a["status"] in ("funded", "on-going")
                            and a["programme_id"] not in changed]
                    if suspended and rng.random() < 0.5:
                        pid = suspended.pop(0)
                        await call(http, "POST", f"{fleet.url('funding')}/v1/programmes/"
                                   f"{pid}/resumption", headers=FMU,
                                   json={"decision_id": f"res-{pid}", "rationale": "ok"})
                        figures["changes: resumptions"] += 1
                        continue
                    if not live:
                        continue
                    a = rng.choice(live)
                    pid, n = a["programme_id"], n + 1
                    changed.add(pid)
                    what = ("withdraw", "cancel", "suspend", "topup", "extend", "refund")[n % 6]
                    base = f"{fleet.url('funding')}/v1/programmes/{pid}"
                    if what == "withdraw":
                        who = a["lines"][0]["entity"]
                        r = await call(http, "POST", f"{fleet.url('intake')}/v1/programmes/"
                                       f"{pid}/withdraw", headers=bearer(f"dev-{who.lower()}"),
                                       json={"reason": "Merged with another programme"})
                    elif what in ("cancel", "suspend"):
                        path = {"cancel": "cancellation", "suspend": "suspension"}[what]
                        r = await call(http, "POST", f"{base}/{path}", headers=FMU,
                                       json={"decision_id": f"{what}-{pid}", "rationale": "x"})
                        if what == "suspend":
                            suspended.append(pid)
                    elif what == "topup":
                        first = a["lines"][0]["entity"]
                        r = await call(http, "POST", f"{base}/budget-revisions", headers=FMU,
                                       json={"decision_id": f"top-{pid}", "approved_budget": [
                                           {"entity": first, "budget_usd": "110000"}]})
                    elif what == "extend":
                        r = await call(http, "POST", f"{base}/extensions", headers=FMU,
                                       json={"decision_id": f"ext-{pid}", "months": 3})
                    else:
                        e, held = next(iter(a["transferred"].items()))
                        r = await call(http, "POST", f"{base}/refunds", headers=FMU, json={
                            "refund_id": f"ref-{pid}", "entity": e,
                            "amount_usd": f"{float(held) / 10:.2f}"})
                    figures[f"changes: {what} answered {r.status_code}"] += 1

            # (service, seconds or None, whether a broker or store fault overlapped it)
            takeovers: list[tuple[str, float | None, bool]] = []
            faults: list[tuple[float, float]] = []  # broker and store outages: (from, to)

            def now() -> float:
                return asyncio.get_running_loop().time()

            def overlapped(a: float, b: float) -> bool:
                return any(x < b and a < (y or now()) for x, y in faults)
            pending: list[asyncio.Task[Any]] = []

            async def kill_one() -> None:
                """SIGKILL one replica of a service whose replicas are all up; it stays down
                DOWN_FOR seconds while the others take its work over (timed)."""
                choices = [s for s in SERVICES if s not in fleet.down]
                if not choices:
                    return
                s = rng.choice(choices)
                fleet.kill(s, rng.randrange(REPLICAS))
                killed_at = asyncio.get_running_loop().time()

                async def timed() -> None:
                    took = await takeover(tag, s, killed_at, limit=DOWN_FOR)
                    takeovers.append((s, took, overlapped(killed_at,
                                                          killed_at + (took or DOWN_FOR))))

                async def later() -> None:  # back after DOWN_FOR, taken over or not
                    await asyncio.sleep(DOWN_FOR)
                    fleet.restart(s)

                pending.extend([asyncio.create_task(timed()), asyncio.create_task(later())])

            async def broker_down(node: int, what: str) -> None:
                """SIGKILL one Kafka node mid-run; it comes back DOWN_FOR seconds later."""
                faults.append((now(), 0.0))
                await asyncio.to_thread(_stack, "kill-kafka-node", str(node))
                figures[f"brokers killed: {what} (node {node})"] += 1
                await asyncio.sleep(DOWN_FOR)
                await asyncio.to_thread(_stack, "start-kafka-node", str(node))
                # back in every partition's in-sync replicas before the next fault, as an
                # operator's rolling restart waits: killing another node first can leave the
                # controller quorum without a majority (seen once on 2 cores under load)
                await asyncio.to_thread(fully_replicated, 180)
                faults[-1] = (faults[-1][0], now() + 10)  # (a moment to catch up)
                figures["broker restarts"] += 1

            def kills() -> int:
                return sum(fleet.kills.values())

            a_third = asyncio.Event()  # a third of the kills done

            async def brokers() -> None:
                """A third of the way: the broker restarted (one node), or on three nodes the
                leader of a busy partition killed, then the active controller, one at a
                time (each brought back before the next: two down of three is an outage
                that min.insync.replicas=2 makes on purpose)."""
                await a_third.wait()
                if BROKERS < 3:
                    faults.append((now(), 0.0))
                    await asyncio.to_thread(_stack, "restart-kafka")
                    faults[-1] = (faults[-1][0], now() + 10)
                    figures["broker restarts"] += 1
                    return
                leader = await asyncio.to_thread(busy_leader, inbound + ".IOM")
                await broker_down(leader, "leader of a busy partition")
                node = int((await asyncio.to_thread(_stack, "kafka-controller")).split()[0])
                await broker_down(node, "active controller")

            async def chaos() -> None:
                broker_faults = asyncio.create_task(brokers())
                restarted_store = False
                while kills() < KILLS:
                    await asyncio.sleep(KILL_EVERY)
                    await kill_one()
                    if kills() >= KILLS // 3:
                        a_third.set()
                    if kills() >= 2 * KILLS // 3 and not restarted_store:
                        faults.append((now(), 0.0))
                        await asyncio.to_thread(_stack, "restart-mongo")
                        faults[-1] = (faults[-1][0], now() + 10)
                        figures["store restarts"] += 1
                        restarted_store = True
                await broker_faults
                await asyncio.gather(*pending)

            stop = asyncio.Event()
            decider = asyncio.create_task(decisions(stop), name="the SC's meetings")
            changer = asyncio.create_task(changes(stop), name="the changes")
            await asyncio.gather(workload(), hostile_inputs(), chaos())
            await fleet.all_ready(http)

            async def undecided() -> str | None:
                r = await call(http, "GET", f"{fleet.url('intake')}/v1/programmes",
                               headers=FMU, params={"status": "screened-eligible",
                                                    "limit": 200})
                items = r.json()["items"]
                return f"{len(items)} screened eligible, not decided" if items else None

            async def in_flight() -> str | None:  # twice, a moment apart
                return (await unsettled(fleet, http, tag)
                        or await unsettled(fleet, http, tag))

            await eventually("every eligible note decided", SETTLE, undecided,
                             (decider, changer))
            await eventually("every fact travelled (no lag, no outbox backlog)", SETTLE,
                             in_flight, (decider, changer))
            stop.set()
            await asyncio.wait_for(asyncio.gather(decider, changer), 3 * CALL_LIMIT)
            await eventually("the last changes travelled", SETTLE, in_flight)
            states: dict[str, set[str]] = {}  # every service's state of each changed one
            for pid in sorted(changed):
                for svc, path in (("intake", f"/v1/programmes/{pid}"),
                                  ("funding", f"/v1/programmes/{pid}/funding"),
                                  ("monitoring", f"/v1/programmes/{pid}")):
                    r = await call(http, "GET", fleet.url(svc) + path, headers=FMU)
                    states.setdefault(pid, set()).add(r.json()["status"])
            for p in producers.values():
                await p.stop()

            programmes = []
            cursor = None
            while True:
                r = await call(http, "GET", f"{fleet.url('intake')}/v1/programmes",
                               headers=FMU, params={"limit": 200, **({"cursor": cursor}
                                                                      if cursor else {})})
                programmes += r.json()["items"]
                cursor = r.json()["next_cursor"]
                if not cursor:
                    break
            fund = (await call(http, "GET", f"{fleet.url('funding')}/v1/fund",
                               headers=FMU)).json()
            allocations = await all_pages(http, f"{fleet.url('funding')}/v1/allocations",
                                          headers=FMU, params={"limit": 500}, retry=call)
            alive = fleet.alive()
        funding_facts = await read_to_end(f"{tag}.{topics.FUNDING}")
        notification_facts = await read_to_end(f"{tag}.{topics.NOTIFICATIONS}")
        dead = await read_all(inbound + ".dlq", min_count=len(hostile), timeout=20)
    finally:
        stop_all(fleet.everyone())

    # nothing lost, nothing doubled
    by_ref = Counter(p["entity_reference"] for p in programmes if p["entity_reference"] in refs)
    lost = sorted(set(refs) - set(by_ref))
    doubled = sorted(r for r, c in by_ref.items() if c > 1)
    made: dict[tuple[str, str], set[str]] = {}
    releases: dict[str, set[str]] = {}
    owed: set[tuple[str, str]] = set()  # (allocation fact, PUNO): an inbox notice each
    transfers: dict[tuple[str, str], set[str]] = {}
    for f in funding_facts:
        h = headers_of(f)
        body = json.loads(f.value)
        if h["ce_type"].endswith("allocation.released.v1"):
            releases.setdefault(body["release_id"], set()).add(h["ce_id"])
        if h["ce_type"].endswith("allocation.made.v1"):
            made.setdefault((body["programme_id"], body["allocation_id"]), set()).add(
                h["ce_id"])
            for ln in body["lines"]:
                owed.add((h["ce_id"], ln["entity"]))
        if h["ce_type"].endswith("funds.transferred.v1"):
            # one fact per transfer (a top-up is a transfer of its own, with its own id)
            transfers.setdefault((body["programme_id"], body["transfer_id"]), set()).add(
                h["ce_id"])
    allocated = {a["programme_id"] for a in allocations}
    # each notice (fact, recipient, channel) is announced under one event id, however often
    # its record was republished (at-least-once publishing repeats the same event id)
    announced: dict[tuple[str, str, str], set[str]] = {}
    for f in notification_facts:
        body = json.loads(f.value)
        announced.setdefault((body["fact_id"], body["recipient"], body["channel"]),
                             set()).add(headers_of(f)["ce_id"])
    dlq_reasons = Counter(headers_of(d)["dlq_reason"] for d in dead)
    timed = [t for _, t, _ in takeovers if t is not None]
    alone = [t for _, t, o in takeovers if t is not None and not o]

    def worst(ts: list[float]) -> str:
        return f"{max(ts):.1f}" if ts else "-"

    def median(ts: list[float]) -> str:
        return f"{sorted(ts)[len(ts) // 2]:.1f}" if ts else "-"

    report: dict[str, Any] = dict(figures)
    report.pop("longest send", None)
    report.pop("longest SC meeting", None)
    report.update({"replicas per service": REPLICAS, "Kafka brokers": BROKERS,
                    "kills": sum(fleet.kills.values()),
                    "replicas killed": len(fleet.kills),
                    "takeovers timed": len(timed),
                    f"not taken over within {DOWN_FOR:.0f} s (back by then)": len(takeovers)
                    - len(timed),
                    "worst takeover after a kill (s)": worst(timed),
                    "median takeover after a kill (s)": median(timed),
                    "worst takeover, no broker/store fault near (s)": worst(alone),
                    "median takeover, no broker/store fault near (s)": median(alone),
                    "takeovers (service: s, * = broker/store fault near)": " ".join(
                        f"{s[:5]}:{t:.0f}{'*' if o else ''}" if t is not None else f"{s}:-"
                        for s, t, o in takeovers),
                    "longest single publish (s)": f"{figures['longest send']:.1f}",
                    "longest SC meeting, 50 decisions at most (s)":
                        f"{figures['longest SC meeting']:.1f}",
                    "notes lost": len(lost),
                    "notes doubled": len(doubled), "allocations": len(allocated),
                    "allocations doubled": sum(len(v) > 1 for v in made.values()),
                    "programmes changed after allocation": len(changed),
                    "allocations released": len(releases),
                    "releases doubled": sum(len(v) > 1 for v in releases.values()),
                    "changed programmes the services disagree on": sum(
                        len(v) > 1 for v in states.values()),
                    "transfers doubled": sum(len(v) > 1 for v in transfers.values()),
                    "notifications": len(announced),
                    "allocation notices to PUNOs lost": len(
                        owed - {(f, r) for f, r, ch in announced if ch == "inbox"}),
                    "notifications doubled": sum(len(v) > 1 for v in announced.values()),
                    "hostile Kafka inputs dead-lettered": sum(dlq_reasons.values()),
                    "services up at the end": len(alive)})
    print("\nFAULT RUN FIGURES")
    for k, v in report.items():
        print(f"  {k:36s} {v}")
    assert sum(fleet.kills.values()) >= KILLS
    assert len({k.split("/")[0] for k in fleet.kills}) == len(SERVICES)  # every service
    assert len(fleet.kills) > len(SERVICES)  # spread over replicas
    assert figures["broker restarts"] == (2 if BROKERS >= 3 else 1)
    assert figures["store restarts"] == 1
    assert not lost and not doubled, (lost, doubled)
    assert len(allocated) >= N // 3  # money moved under the faults: the checks bite
    assert {p for p, _ in made} == allocated and all(len(v) == 1 for v in made.values())
    assert len(changed) >= 10 and releases  # the changes' paths ran under the faults
    assert all(len(v) == 1 for v in releases.values())
    assert all(len(v) == 1 for v in states.values()), {
        p: v for p, v in states.items() if len(v) > 1}
    assert all(len(v) == 1 for v in transfers.values())
    assert all(len(v) == 1 for v in announced.values())
    # no notice lost: every PUNO of every allocation got it in its inbox
    assert owed <= {(f, r) for f, r, ch in announced if ch == "inbox"}
    assert fund["journal"]["debits"] == fund["journal"]["credits"]
    assert float(fund["available_usd"]) >= 0
    assert all(dlq_reasons[reason] >= 1 for _, reason in hostile), dlq_reasons
    assert len(alive) == len(SERVICES) * REPLICAS
