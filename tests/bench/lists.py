"""The list routes at scale (figures, not a test):

    .venv/bin/python -m tests.bench.lists [--programmes 10000]

Seeds each service's own database with `--programmes` programmes through the services' own
code (intake's inbound handler screens the notes; funding's SC meetings approve two in three
and fund them from one large deposit; monitoring, intake and notifications consume the
facts those wrote, as their consumers would), then starts the four services on those
databases and times every list route their OpenAPI documents (each GET route without path
parameters that takes `limit`, plus the portfolio and the IATI export): the first page
(median of 5), and a walk through its pages at the route's largest page size (for at most
`--walk-seconds`, with the time of the deepest page reached). Prints each route as it is
measured, then a table and JSON, and writes them to docs/benchmarks.md.

Infrastructure: as tests/bench/pipeline.py (KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL if set,
else the stack script's own servers on bench ports).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from services.funding import service as funding
from services.funding.app import FundingSettings
from services.funding.commands import Decision, Deposit, Meeting, Pledge
from services.funding.store import FundingStore
from services.intake import service as intake
from services.intake.app import IntakeSettings
from services.intake.store import IntakeStore
from services.monitoring import service as monitoring
from services.monitoring.app import MonitoringSettings
from services.monitoring.store import MonitoringStore
from services.notifications import service as notifications
from services.notifications.app import NotificationsSettings
from services.notifications.store import NotificationsStore
from shared import lifecycle, topics
from shared.consumer import Incoming
from shared.contracts import REGISTRY
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.envelope import Envelope, utcnow
from tests.bench.pipeline import SERVICES, mongo_url, run, write_figures
from tests.support import FMU, OPERATOR, free_port, provision, start_service, stop_all, wait_ready

BATCH = 500
COUNTRIES = ["PH", "MX", "GT", "HN", "SV", "EC", "CO", "PE", "MA", "TN", "NG", "GH", "SN",
             "ET", "KE", "BD", "NP", "LK", "ID", "TH"]


def incoming(topic: str, env: Envelope, event: Any, n: int) -> Incoming:
    return Incoming(SimpleNamespace(topic=topic, partition=0, offset=n), env,  # type: ignore[arg-type]
                    event)


def outbox_incoming(events: list[dict[str, Any]]) -> list[Incoming]:
    return [incoming(e["topic"], Envelope.model_validate(e["envelope"]),
                     REGISTRY[e["type"]].model.model_validate_json(e["value"]), n)
            for n, e in enumerate(events)]


async def in_batches(fn: Any, items: list[Any], size: int = BATCH) -> None:
    for i in range(0, len(items), size):
        await fn(items[i:i + size])


async def seed(tag: str, n: int) -> dict[str, float]:
    """`n` programmes in the four services' databases, by their own code; seconds per
    service."""
    kw = {"topic_prefix": f"{tag}.", "consumer_batch_max": BATCH}
    si = IntakeSettings(mongodb_database=f"{tag}_intake",
                        mongodb_url=mongo_url("intake"), **kw)
    sf = FundingSettings(mongodb_database=f"{tag}_funding",
                         mongodb_url=mongo_url("funding"), **kw)
    sm = MonitoringSettings(mongodb_database=f"{tag}_monitoring",
                            mongodb_url=mongo_url("monitoring"), **kw)
    sn = NotificationsSettings(mongodb_database=f"{tag}_notifications",
                               mongodb_url=mongo_url("notifications"), **kw)
    i, f, m, no = IntakeStore(si), FundingStore(sf), MonitoringStore(sm), NotificationsStore(sn)
    took: dict[str, float] = {}
    for s in (i, f, m, no):
        await s.ensure_indexes()
    await no.seed_directory()

    t = time.perf_counter()
    notes = []
    for k in range(n):
        note = SubmitConceptNote.model_validate({
            **CONCEPT_NOTE_EXAMPLE, "entity_reference": f"BENCH-{k:06}",
            "title": f"Programme {k}", "countries": [COUNTRIES[k % len(COUNTRIES)]]})
        notes.append(incoming(f"{tag}.{topics.INBOUND_CONCEPT_NOTES}.IOM", Envelope(
            source=f"{topics.ENTITY_URN}IOM", type=note.TYPE), note, k))
    rules = si.rules()
    await in_batches(lambda b: intake.handle_inbound(i, rules, b), notes)
    programme_facts = outbox_incoming(await i.outbox_events())
    took["intake"] = time.perf_counter() - t

    t = time.perf_counter()
    fr = sf.rules()
    await in_batches(lambda b: funding.handle_programme_facts(f, fr, b),
                     [x for x in programme_facts if x.type in funding.FOREIGN])
    await funding.pledge(f, Pledge(contribution_id="c-bench", contributor="DEU",
                                   contributor_name="Germany", currency="USD",
                                   amount=D("1e13"), year=2026))
    await funding.deposit(f, fr, "c-bench", Deposit(deposit_id="d1", amount=D("1e13"),
                                                    usd_amount=D("1e13")))
    eligible = [x.event.programme_id for x in programme_facts
                if x.type.endswith("screened.v1") and x.event.eligible]
    approve = [pid for k, pid in enumerate(eligible) if k % 3 != 2]
    for k in range(0, len(approve), BATCH):
        await funding.meet(f, fr, Meeting(meeting_id=f"sc-{k}", decisions=[
            Decision(programme_id=pid, decision="approve", decision_id=f"sc-{k}-{pid}",
                     rationale="bench", priority=1) for pid in approve[k:k + BATCH]]))
    funding_facts = outbox_incoming(await f.outbox_events())
    took["funding"] = time.perf_counter() - t

    t = time.perf_counter()
    lifecycle_facts = [x for x in funding_facts if x.type in lifecycle.HISTORY_TYPES]
    await in_batches(lambda b: intake.handle_facts(i, b), lifecycle_facts)
    took["intake"] += time.perf_counter() - t

    t = time.perf_counter()
    wanted = set(monitoring.FOREIGN)
    await in_batches(lambda b: monitoring.handle_facts(m, b),
                     [x for x in programme_facts + funding_facts if x.type in wanted])
    took["monitoring"] = time.perf_counter() - t

    # notifications: every PUNO, RC office and the FMU told of each screening and allocation
    t = time.perf_counter()
    told = [x for x in programme_facts + funding_facts
            if x.type.endswith(("programme.submitted.v1", "programme.screened.v1",
                                "allocation.made.v1"))]
    await in_batches(lambda b: notifications.handle_facts(no, b, digest_hour=6), told)
    took["notifications"] = time.perf_counter() - t
    for s in (i, f, m, no):  # published long ago, as far as the services are concerned
        await s.db.outbox.update_many({"sent_at": None}, {"$set": {"sent_at": utcnow()}})
        await s.close()
    return {k: round(v, 1) for k, v in took.items()}


def list_routes(openapi: dict[str, Any]) -> list[tuple[str, int]]:
    """(path, its largest page) of every GET route without path parameters that pages."""
    out = []
    for path, ops in sorted(openapi["paths"].items()):
        get = ops.get("get")
        if "{" in path or not get:
            continue
        limit = next((p for p in get.get("parameters", []) if p["name"] == "limit"), None)
        if limit is not None:
            out.append((path, int(limit["schema"].get("maximum", 100))))
    return out


def count_items(r: httpx.Response) -> int:
    """The items of a page: a JSON list, the list a JSON object carries, or the XML
    document's activities."""
    if "json" not in r.headers.get("content-type", ""):
        return r.text.count("<iati-activity ") + r.text.count("<iati-activity>")
    body = r.json()
    if isinstance(body, dict):
        body = next((v for v in body.values() if isinstance(v, list)), [])
    return len(body)


async def timed(http: httpx.AsyncClient, url: str, params: dict[str, Any]
                ) -> tuple[float, httpx.Response]:
    for who in (FMU, OPERATOR):
        t = time.perf_counter()
        r = await http.get(url, params=params, headers=who)
        took = time.perf_counter() - t
        if r.status_code != 403:
            r.raise_for_status()
            return took, r
    raise RuntimeError(f"{url}: neither the FMU nor an operator may read it")


async def measure(tag: str, work: Path, walk_seconds: float) -> list[dict[str, Any]]:
    ports = {s: free_port() for s in SERVICES}
    procs = [start_service(s, tag, p, work, MONGODB_URL=mongo_url(s), MPTF_LOG_LEVEL="WARNING")
             for s, p in ports.items()]
    rows = []
    try:
        async with httpx.AsyncClient(timeout=300) as http:
            for p in ports.values():
                await wait_ready(http, p, timeout=120)
            for s, p in ports.items():
                base = f"http://127.0.0.1:{p}"
                routes = list_routes((await http.get(f"{base}/openapi.json")).json())
                if s == "monitoring":
                    routes += [("/v1/portfolio", 0)]
                for path, biggest in routes:
                    firsts = []
                    for _ in range(5):
                        took, r = await timed(http, base + path, {})
                        firsts.append(took)
                    pages, items, t0, cursor = 0, 0, time.perf_counter(), None
                    each: list[float] = []
                    while biggest:
                        took, r = await timed(http, base + path, {
                            "limit": biggest, **({"cursor": cursor} if cursor else {})})
                        pages += 1
                        each.append(took)
                        items += count_items(r)
                        cursor = r.headers.get("x-next-cursor")
                        if not cursor or time.perf_counter() - t0 > walk_seconds:
                            break
                    row = {"service": s, "route": path,
                           "first_page_ms": round(statistics.median(firsts) * 1000, 1),
                           "page_size": biggest or None, "pages": pages or None,
                           "items": items or None,
                           "walk_s": round(time.perf_counter() - t0, 2) if biggest else None,
                           "walked_to_the_end": not cursor if biggest else None,
                           "deepest_page_ms": round(each[-1] * 1000, 1) if each else None}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        stop_all(procs)
    return rows


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"lists{int(time.time())}"
    provision(tag)
    work = Path(tempfile.mkdtemp(prefix="mptf-bench-lists-"))
    seeded = await seed(tag, args.programmes)
    print(json.dumps({"seed_seconds": seeded}), flush=True)
    return {"programmes": args.programmes, "seed_seconds": seeded,
            "routes": await measure(tag, work, args.walk_seconds)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--programmes", type=int, default=10_000)
    ap.add_argument("--walk-seconds", type=float, default=60,
                    help="Stop walking a route's pages after this long")
    res = run(main, ap.parse_args())
    print(f"{'route':42} {'first page ms':>14} {'page size':>10} {'pages':>6} {'items':>7} "
          f"{'walk s':>8} {'deepest page ms':>16}")
    for r in res["routes"]:
        print(f"{r['service'] + ' ' + r['route']:42} {r['first_page_ms']:>14} "
              f"{r['page_size'] or '-':>10} {r['pages'] or '-':>6} {r['items'] or '-':>7} "
              f"{r['walk_s'] if r['walk_s'] is not None else '-':>8} "
              f"{r['deepest_page_ms'] or '-':>16}")
    print(json.dumps(res, indent=2))
    write_figures("lists", "## List routes at scale\n\nProduced by `.venv/bin/python -m "
                  "tests.bench.lists` (see its docstring).",
                  f"Machine: {res['machine']}.\n\n```json\n" + json.dumps(res, indent=2)
                  + "\n```")
