"""The operators' command line.

    mptf seed            a realistic demo portfolio: contributions, dozens of concept notes
    mptf follow ID       a programme's journey through the four services
    mptf dlq list        dead letters with their reasons;  mptf dlq replay  sends them back
    mptf lag             consumer lag per group, topic and partition
    mptf load            concept notes at a given rate, with live throughput and latency
    mptf rebuild SVC     a service's read models made again from the fact topics

Endpoints come from the environment (defaults: the local stack): KAFKA_BOOTSTRAP_SERVERS,
MPTF_INTAKE_URL, MPTF_FUNDING_URL, MPTF_MONITORING_URL, MPTF_NOTIFICATIONS_URL.
Tokens: MPTF_FMU_TOKEN, MPTF_OPERATOR_TOKEN,
MPTF_<ENTITY>_TOKEN when set; else signed here with the local stack's key
(MPTF_AUTH_SIGNING_KEY, default .run/dev/auth/signing-key.pem), as `mptf token` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
import uuid
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mptf_cli import kafka_tools
from shared import kafka_acl, topics
from shared.auth import issue
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.envelope import Envelope
from shared.reference import DEFAULT_AREA_OBJECTIVES, GCM_OBJECTIVES

app = typer.Typer(help=__doc__, no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list them, replay them.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
console = Console()


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def bootstrap() -> str:
    return env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def prefix() -> str:
    return env("MPTF_TOPIC_PREFIX", "")


def url(service: str) -> str:
    ports = {"intake": 8001, "funding": 8002, "monitoring": 8003, "notifications": 8004}
    return env(f"MPTF_{service.upper()}_URL", f"http://127.0.0.1:{ports[service]}")


def signing_key() -> str:
    return env("MPTF_AUTH_SIGNING_KEY", ".run/dev/auth/signing-key.pem")


def auth(who: str) -> dict[str, str]:
    """`fmu`, `operator` or an entity code: a token from the environment, else one signed
    with the local key."""
    tok = env(f"MPTF_{who.upper().replace('-', '_')}_TOKEN", "")
    if not tok:
        role = who if who in ("fmu", "operator") else "entity"
        tok = issue(signing_key(), role=role, entity=None if role != "entity" else who,
                    name=who, ttl_seconds=900)
    return {"authorization": f"Bearer {tok}"}


@app.command()
def token(role: str = typer.Option(..., help="entity | fmu | funder | operator | rco"),
          entity: str | None = typer.Option(None, help="The UN entity code (role entity)"),
          contributor: str | None = typer.Option(None, help="The contributor (role funder)"),
          country: str | None = typer.Option(None, help="ISO 3166 code of the Resident "
                                                        "Coordinator's office (role rco)"),
          ttl: int = typer.Option(3600, help="Seconds until it expires")) -> None:
    """Issue a signed, expiring bearer token with the local stack's key."""
    from shared.auth import binding_missing

    if binding_missing(role, entity, contributor, country):
        raise typer.BadParameter("role entity needs --entity, funder --contributor, rco "
                                 "--country (and no other)")
    print(issue(signing_key(), role=role, entity=entity, contributor=contributor,
                country=country, name=entity or contributor or country or role,
                ttl_seconds=ttl))


def entity_producer(entity: str, **kw: Any) -> Any:
    """A producer authenticated as an entity system (its principal entity-<CODE>)."""
    return kafka_tools.AIOKafkaProducer(
        bootstrap_servers=bootstrap(), enable_idempotence=True,
        **kafka_tools.operator_auth(kafka_acl.entity_user(entity)), **kw)


# -- seed -----------------------------------------------------------------------------------
DONORS = [("DEU", "Germany", "EUR", 12_000_000, 1.08), ("NOR", "Norway", "NOK", 40_000_000,
          0.095), ("NLD", "Netherlands", "EUR", 4_000_000, 1.08), ("DNK", "Denmark", "DKK",
          20_000_000, 0.145), ("ESP", "Spain", "EUR", 2_000_000, 1.08), ("GBR", "United "
          "Kingdom", "GBP", 3_000_000, 1.27), ("USA", "United States", "USD", 5_000_000, 1.0),
          ("MAR", "Morocco", "USD", 250_000, 1.0)]
COUNTRIES = ["PH", "TJ", "ZA", "MK", "CL", "MX", "GN", "LR", "SL", "KE", "MA", "EC", "GT",
             "NP", "BD", "ET", "SN", "KG", "ID", "CO", "NG", "TN", "JO", "HN"]
ENTITIES_WITH_TOKENS = ["IOM", "ILO", "UNDP", "UNICEF"]
PARTNERS = ["UNHCR", "UNODC", "OHCHR", "UN-WOMEN", "WHO", "UNFPA", "UNCTAD", "FAO"]


def demo_note(rng: random.Random, i: int, submitter: str) -> dict[str, Any]:
    area = rng.randint(1, 5)
    objectives = sorted(set(rng.sample(DEFAULT_AREA_OBJECTIVES[area], 2)) | {
        rng.randint(1, 23)})
    others = rng.sample([e for e in ENTITIES_WITH_TOKENS + PARTNERS if e != submitter], 2)
    budgets = [rng.randrange(300, 1100) * 1000 for _ in range(3)]
    countries = rng.sample(COUNTRIES, rng.choice([1, 1, 1, 2, 3]))
    note = {**CONCEPT_NOTE_EXAMPLE, "entity_reference": f"DEMO-{submitter}-{i:03}",
            "title": f"{GCM_OBJECTIVES[objectives[0]]} in {', '.join(countries)}",
            "countries": countries, "gcm_objectives": objectives,
            "primary_thematic_area": area, "duration_months": rng.choice([18, 24, 30, 36]),
            "punos": [{"entity": e, "convening": k == 0, "budget_usd": str(b)}
                      for k, (e, b) in enumerate(zip([submitter, *others], budgets,
                                                      strict=True))]}
    if rng.random() < 0.15:  # some fail screening, as in real calls
        note["duration_months"] = 48
    return note


async def _seed(notes: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    stats = {"contributions": 0, "notes_http": 0, "notes_kafka": 0, "approved": 0,
             "rejected": 0, "deferred": 0}
    async with httpx.AsyncClient(timeout=30) as http:
        with Progress(console=console) as progress:
            t = progress.add_task("contributions", total=len(DONORS))
            for code, name, currency, amount, rate in DONORS:
                cid = f"c-{code}-{seed}"
                await http.post(f"{url('funding')}/v1/contributions", headers=auth("fmu"),
                                json={"contribution_id": cid, "contributor": code,
                                      "contributor_name": name, "currency": currency,
                                      "amount": str(amount), "year": 2026,
                                      "usd_estimate": f"{amount * rate:.2f}"})
                part = amount // 2  # half deposited now, half later
                await http.post(f"{url('funding')}/v1/contributions/{cid}/deposits",
                                headers=auth("fmu"), json={
                                    "deposit_id": f"{cid}-1", "amount": str(part),
                                    "usd_amount": f"{part * rate:.2f}"})
                stats["contributions"] += 1
                progress.advance(t)
            t = progress.add_task("concept notes", total=notes)
            # each entity system sends on its own topic, as itself (its own Kafka principal)
            producers = {who: entity_producer(who) for who in ENTITIES_WITH_TOKENS}
            for p in producers.values():
                await p.start()
            refs = []
            try:
                for i in range(notes):
                    who = rng.choice(ENTITIES_WITH_TOKENS)
                    body = demo_note(rng, i, who)
                    refs.append((who, body["entity_reference"]))
                    if i % 2:
                        await http.post(f"{url('intake')}/v1/concept-notes", headers=auth(who),
                                        json=body)
                        stats["notes_http"] += 1
                    else:
                        n = SubmitConceptNote.model_validate(body)
                        e = Envelope(source=f"urn:mptf:entity:{who}", type=n.TYPE)
                        await producers[who].send_and_wait(
                            prefix() + topics.inbound_topic(topics.INBOUND_CONCEPT_NOTES, who),
                            n.model_dump_json().encode(), key=body["entity_reference"].encode(),
                            headers=e.headers())
                        stats["notes_kafka"] += 1
                    progress.advance(t)
            finally:
                for p in producers.values():
                    await p.stop()
            t = progress.add_task("steering committee", total=notes)
            await asyncio.sleep(2)  # let funding learn of the screened notes
            items = (await http.get(f"{url('intake')}/v1/programmes", headers=auth("fmu"),
                                    params={"status": "screened-eligible", "limit": 200})
                     ).json()["items"]
            for k, p in enumerate(items):
                roll = rng.random()
                decision = {"programme_id": p["programme_id"], "decision_id": f"sc-demo-{seed}"}
                if roll < 0.7:
                    decision.update(decision="approve", priority=k + 1)
                elif roll < 0.85:
                    decision.update(decision="reject", rationale="Overlaps ongoing work")
                else:
                    decision.update(decision="defer", rationale="Awaiting consultation")
                r = await http.post(f"{url('funding')}/v1/decisions", headers=auth("fmu"),
                                    json=decision)
                if r.status_code == 201:
                    stats[r.json()["status"]] += 1
                progress.advance(t)
            progress.update(t, completed=notes)
    return stats


@app.command()
def seed(notes: int = typer.Option(40, help="How many concept notes"),
         seed: int = typer.Option(2026, help="Random seed (a different one: a new portfolio)")
         ) -> None:
    """Seed a realistic demo portfolio: contributions from several Member States, concept
    notes across countries and thematic areas (half over HTTP, half from entity systems over
    Kafka), and a Steering Committee meeting."""
    stats = asyncio.run(_seed(notes, seed))
    table = Table("seeded", "count")
    for k, v in stats.items():
        table.add_row(k, str(v))
    console.print(table)


# -- follow ---------------------------------------------------------------------------------
@app.command()
def follow(programme_id: str, watch: bool = typer.Option(False, help="Refresh every 2 s"),
           as_of: str | None = typer.Option(None, "--as-of", help=(
               "Show it as it stood at this instant (ISO 8601 with a time zone)"))) -> None:
    """A programme's journey: intake's history, funding's decision and money, monitoring's
    calendar and risks, and who was told what."""
    params = {"as_of": as_of} if as_of else {}

    def show() -> None:
        with httpx.Client(timeout=10) as http:
            i = http.get(f"{url('intake')}/v1/programmes/{programme_id}", headers=auth("fmu"),
                         params=params)
            if i.status_code != 200:
                console.print(f"[red]intake: {i.status_code} {i.text}")
                return
            doc = i.json()
            console.rule(f"{doc['title']} ({programme_id}) — {doc['status']}")
            t = Table("when", "status", "by", "detail")
            for h in doc["history"]:
                detail = h.get("fact") or ", ".join(h.get("reasons", [])) or h.get("reason", "")
                t.add_row(str(h["at"])[:19], h["status"], str(h.get("by", "")), str(detail))
            console.print(t)
            f = http.get(f"{url('funding')}/v1/programmes/{programme_id}/funding",
                         headers=auth("fmu"), params=params)
            if f.status_code == 200:
                fj = f.json()
                console.print(f"[bold]funding[/]: {fj['status']}, pipeline {fj['pipeline']}, "
                              f"allocated {fj['allocated']}, transferred {fj['transferred']}, "
                              f"refunded {fj['refunded']}, owed {fj['owed']}, "
                              f"{fj['duration_months']} months (+{fj['extension_months']}), "
                              f"funded by {[s['contributor'] for s in fj['funded_by']]}")
            m = http.get(f"{url('monitoring')}/v1/programmes/{programme_id}",
                         headers=auth("fmu"), params=params)
            if m.status_code == 200:
                mj = m.json()
                console.print(f"[bold]monitoring[/]: {mj['status']} {mj['start_date']} → "
                              f"{mj['end_date']}, risks {mj['risk_flags']}, delivery "
                              f"{mj['delivery_rate']['programme']}")
            d = http.get(f"{url('notifications')}/v1/deliveries", headers=auth("operator"),
                         params={"programme_id": programme_id, "limit": 500})
            if d.status_code == 200:
                t = Table("fact", "recipient", "channel", "status")
                for x in d.json():
                    t.add_row(x["fact_type"].removeprefix("org.migrationmptf."), x["recipient"],
                              x["channel"], x["status"])
                console.print(t)

    while True:
        show()
        if not watch:
            return
        time.sleep(2)
        console.clear()


# -- dead letters and lag ---------------------------------------------------------------------
def _dlq_topics(topic: str | None) -> list[str]:
    base = [topic] if topic else list(topics.CONSUMED)
    return [prefix() + topics.dlq(t.removeprefix(prefix())) for t in base]


@dlq_app.command("list")
def dlq_list(topic: str | None = typer.Option(None, help="Only this topic's dead letters")
             ) -> None:
    """Dead letters with their reason, handler and origin."""
    t = Table("dlq", "origin", "reason", "handler", "detail", "value")
    n = 0
    for name in _dlq_topics(topic):
        for d in asyncio.run(kafka_tools.read_dead_letters(bootstrap(), name)):
            n += 1
            t.add_row(f"{d.topic}:{d.partition}:{d.offset}",
                      f"{d.meta('dlq_topic')}:{d.meta('dlq_partition')}:{d.meta('dlq_offset')}",
                      d.meta("dlq_reason"), d.meta("dlq_handler"), d.meta("dlq_detail")[:80],
                      (d.value or b"")[:40].decode("utf-8", "replace"))
    console.print(t)
    console.print(f"{n} dead letter(s)")


def _position(text: str, dlq_topic: str) -> tuple[int, int]:
    """(partition, offset) of `P:O` or `TOPIC:P:O` (the topic must be the .dlq one)."""
    parts = text.rsplit(":", 2)
    try:
        if len(parts) == 3 and parts[0] != dlq_topic:
            raise ValueError(f"{parts[0]} is not {dlq_topic}")
        partition, offset = int(parts[-2]), int(parts[-1])
        if partition < 0 or offset < 0 or len(parts) < 2:
            raise ValueError("negative")
    except (ValueError, IndexError) as e:
        raise typer.BadParameter(f"--at {text!r}: give PARTITION:OFFSET as `mptf dlq list` "
                                 f"prints it ({e})") from None
    return partition, offset


@dlq_app.command("replay")
def dlq_replay(topic: str = typer.Option(..., help="The original topic"),
               at: list[str] = typer.Option(None, "--at", help=(
                   "Only this dead letter: PARTITION:OFFSET of the .dlq topic, or the "
                   "whole position `mptf dlq list` prints (TOPIC:PARTITION:OFFSET); "
                   "repeat for several")),
               reason: str | None = typer.Option(None, help="Only this reason")) -> None:
    """Send dead letters back to their topic (after the cause is fixed). Consumers dedupe by
    event id, so replaying twice is safe. Redacted (personal-data) letters are not replayed.
    Without --at or --reason, every dead letter of the topic is replayed."""
    (name,) = _dlq_topics(topic)
    wanted = {_position(a, name) for a in at or []}
    letters = asyncio.run(kafka_tools.read_dead_letters(bootstrap(), name))
    chosen = [d for d in letters if (not wanted or (d.partition, d.offset) in wanted)
              and (reason is None or d.meta("dlq_reason") == reason)]
    missing = wanted - {(d.partition, d.offset) for d in letters}
    if missing:
        raise typer.BadParameter(f"{name} holds no dead letter at "
                                 f"{', '.join(f'{p}:{o}' for p, o in sorted(missing))}")
    n = asyncio.run(kafka_tools.replay(bootstrap(), chosen))
    console.print(f"replayed {n} of {len(chosen)} dead letter(s) to {topic}")


@app.command()
def lag(group_prefix: str = typer.Option("mptf-", help="Consumer groups starting with")) -> None:
    """Consumer lag per group, topic and partition."""
    rows = asyncio.run(kafka_tools.consumer_lag(bootstrap(), group_prefix))
    t = Table("group", "topic", "partition", "committed", "end", "lag")
    for r in rows:
        t.add_row(r["group"], r["topic"], str(r["partition"]), str(r["committed"]),
                  str(r["end"]), f"[red]{r['lag']}" if r["lag"] else "0")
    console.print(t)
    console.print(f"total lag: {sum(r['lag'] for r in rows)}")


# -- load ---------------------------------------------------------------------------------------
async def _load(rate: float, seconds: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    pids: dict[str, str] = {}
    lat: list[float] = []
    producer = entity_producer("IOM", linger_ms=2)
    consumer = kafka_tools.AIOKafkaConsumer(prefix() + topics.PROGRAMMES,
                                            bootstrap_servers=bootstrap(), group_id=None,
                                            auto_offset_reset="latest",
                                            **kafka_tools.operator_auth())
    await producer.start()
    await consumer.start()
    await consumer.seek_to_end()

    async def watch() -> None:
        while True:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                for r in recs:
                    body = json.loads(r.value)
                    ref = body.get("entity_reference", "")
                    if ref.startswith(f"LOAD-{run}"):
                        pids[body["programme_id"]] = ref
                    elif body.get("programme_id") in pids and "eligible" in body:
                        lat.append(time.perf_counter() - sent[pids[body["programme_id"]]])

    watcher = asyncio.create_task(watch())
    start = time.perf_counter()
    i = 0
    with Progress(console=console) as progress:
        t = progress.add_task(f"{rate}/s for {seconds}s", total=int(rate * seconds))
        while time.perf_counter() - start < seconds:
            ref = f"LOAD-{run}-{i:06}"
            n = SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE, "entity_reference": ref})
            e = Envelope(source="urn:mptf:entity:IOM", type=n.TYPE)
            sent[ref] = time.perf_counter()
            await producer.send(prefix() + topics.inbound_topic(topics.INBOUND_CONCEPT_NOTES,
                                                                "IOM"),
                                n.model_dump_json().encode(), key=ref.encode(),
                                headers=e.headers())
            i += 1
            progress.update(t, completed=i, description=f"sent {i}, screened {len(lat)}")
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        drain = time.perf_counter() + 30
        while len(lat) < i and time.perf_counter() < drain:
            progress.update(t, description=f"sent {i}, screened {len(lat)}")
            await asyncio.sleep(0.2)
    watcher.cancel()
    await producer.stop()
    await consumer.stop()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    return {"sent": i, "screened": len(lat), "seconds": round(time.perf_counter() - start, 1),
            "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1)}


@app.command()
def load(rate: float = typer.Option(20, help="Concept notes per second"),
         seconds: float = typer.Option(10, help="For how long")) -> None:
    """Submit concept notes over the inbound topic at a fixed rate and measure the time until
    each is screened (ProgrammeScreened on mptf.programmes)."""
    result = asyncio.run(_load(rate, seconds))
    t = Table(*result.keys())
    t.add_row(*(str(v) for v in result.values()))
    console.print(t)


# -- rebuild ------------------------------------------------------------------------------------
# what each service is rebuilt from (its module's REBUILD: shared.rebuild.Plan), its settings
# and its store adapter
REBUILDABLE = {
    "intake": ("services.intake.app:IntakeSettings", "services.intake.store:IntakeStore",
               "services.intake.service:REBUILD"),
    "funding": ("services.funding.app:FundingSettings", "services.funding.store:FundingStore",
                "services.funding.service:REBUILD"),
    "monitoring": ("services.monitoring.app:MonitoringSettings",
                   "services.monitoring.store:MonitoringStore",
                   "services.monitoring.service:REBUILD"),
    "notifications": ("services.notifications.app:NotificationsSettings",
                      "services.notifications.store:NotificationsStore",
                      "services.notifications.service:REBUILD"),
}


def _load_obj(spec: str) -> Any:
    import importlib

    mod, name = spec.split(":")
    return getattr(importlib.import_module(mod), name)


async def _rebuild(service: str, into: str | None, replace: bool, compare: bool,
                   batch: int) -> int:
    from shared.rebuild import carry, read_log, replay
    from shared.rebuild import compare as diff

    settings_cls, store_cls, plan = (_load_obj(x) for x in REBUILDABLE[service])
    live_settings = settings_cls()
    target = into or f"{live_settings.database}_rebuilt"
    if target == live_settings.database:
        raise typer.BadParameter("--into must name another database than the live one")
    store = store_cls(live_settings.model_copy(update={"mongodb_database": target}))
    live = store.client[live_settings.database]
    try:
        existing = await store.db.list_collection_names()
        if existing and not replace:
            raise typer.BadParameter(f"database {target} is not empty; --replace drops it")
        for name in existing:  # its collections (a service's user may drop those, not a database)
            await store.db.drop_collection(name)
        carried = await carry(live, store.db, plan.carried)
        if plan.carried:
            console.print(f"carried over from {live_settings.database} (configuration, not "
                          f"facts): {', '.join(plan.carried)}, {carried} document(s)")
        with Progress(console=console) as bar:
            reading = bar.add_task(f"reading {', '.join(plan.topics)}", total=None)
            facts, report = await read_log(
                live_settings.kafka_bootstrap_servers,
                [live_settings.topic(t) for t in plan.topics],
                kafka_tools.operator_auth(), max_bytes=live_settings.max_body_bytes,
                progress=lambda done, total: bar.update(reading, completed=done, total=total))
            bar.update(reading, completed=report.records, total=report.records or 1)
            applying = bar.add_task(f"applying to {target}", total=len(facts) or 1)
            await replay(store, plan, facts, batch=batch, report=report,
                         progress=lambda done, total: bar.update(applying, completed=done))
        t = Table("read model", "documents")
        for name in plan.read_models:
            t.add_row(name, str(await store.db[name].count_documents({})))
        console.print(t)
        console.print(f"{report.records} records read, {report.applied} facts applied, "
                      f"{len(report.undecodable)} undecodable, {len(report.refused)} refused "
                      "(as they were live)")
        for line in report.undecodable[:20] + report.refused[:20]:
            console.print(f"  {line}")
        if not compare:
            return 0
        differences = await diff(live, store.db, plan)
        for line in differences:
            console.print(f"[red]{line}")
        console.print("the same as the live read models" if not differences
                      else f"{len(differences)} differences (at most 20 shown)")
        return 1 if differences else 0
    finally:
        await store.close()


@app.command()
def rebuild(service: str = typer.Argument(..., help=" | ".join(REBUILDABLE)),
            into: str | None = typer.Option(None, help=(
                "The database to rebuild into (default: the service's own, + '_rebuilt')")),
            replace: bool = typer.Option(False, help="Drop the target database if it has data"),
            compare: bool = typer.Option(False, help=(
                "Compare the rebuilt read models with the live ones, document by document; "
                "exit 1 if they differ")),
            batch: int = typer.Option(500, help="Facts per transaction")) -> None:
    """Rebuild a service's read models from the fact topics alone into a fresh database
    (its own facts and those of the others it reads, from the first record to the end;
    nothing is published). Point the service at the result with MPTF_MONGODB_DATABASE.
    Settings come from the service's own environment (MONGODB_URL, MPTF_TOPIC_PREFIX...)."""
    if service not in REBUILDABLE:
        raise typer.BadParameter(f"one of {', '.join(REBUILDABLE)}")
    raise typer.Exit(asyncio.run(_rebuild(service, into, replace, compare, batch)))


if __name__ == "__main__":
    app()
