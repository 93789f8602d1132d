"""Helpers for tests that cross the real broker and store."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.envelope import Envelope
from shared.settings import DEV_TOKENS

T = TypeVar("T")


def bearer(name: str, **claims: Any) -> dict[str, str]:
    """The Authorization header of a signed token (JWT) for one of the named development
    principals (DEV_TOKENS), issued with the suite's key (tests/conftest.py)."""
    from shared.auth import issue

    assert name in DEV_TOKENS, f"{name} is not a development principal"
    p = DEV_TOKENS[name]
    token = issue(os.environ["MPTF_AUTH_SIGNING_KEY"], role=p["role"], entity=p.get("entity"),
                  contributor=p.get("contributor"), country=p.get("country"), name=p["name"],
                  **claims)
    return {"authorization": f"Bearer {token}"}


FMU, OPERATOR, DEU = bearer("dev-fmu"), bearer("dev-operator"), bearer("dev-funder-de")
IOM, ILO, UNDP = bearer("dev-iom"), bearer("dev-ilo"), bearer("dev-undp")


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# -- the secured broker: every client of the tests authenticates as some principal ---------
# The entity systems and funders the suite's deployments know (each test tag gets their
# topics and ACLs); the suite's broker has the default users of mptf_cli.provision.
TEST_ENTITIES = ("IOM", "ILO", "UNDP", "UNICEF")
TEST_FUNDERS = ("DEU", "NOR")
_provisioned: set[str] = set()


def credentials() -> dict[str, str]:
    from mptf_cli.provision import load_credentials

    return load_credentials(os.environ["MPTF_KAFKA_CREDENTIALS"])


def kafka_auth(user: str = "admin") -> dict[str, Any]:
    """aiokafka's options for `user` (admin by default: the harness sets up and observes;
    tests of what a principal may do use that principal)."""
    from shared.kafka import client_options

    return client_options(user, credentials()[user])


# -- the store: the harness is the servers' administrator; each started service its own user --
def mongo_admin_url(url: str, credentials_file: str, user: str = "mptf-admin") -> str:
    """`url` with `user`'s name and password (from the stack's credentials file) in it."""
    from urllib.parse import quote_plus

    password = json.loads(Path(credentials_file).read_text())[user]
    scheme, rest = url.split("://", 1)
    rest = rest.split("@", 1)[-1]  # (a user the URL named is replaced)
    sep = "&" if "?" in rest else ("?" if "/" in rest else "/?")
    return (f"{scheme}://{quote_plus(user)}:{quote_plus(password)}@{rest}{sep}authSource=admin"
            if "authsource=" not in rest.lower() else
            f"{scheme}://{quote_plus(user)}:{quote_plus(password)}@{rest}")


_service_users: dict[tuple[str, str], dict[str, str]] = {}


def service_user(admin_url: str, database: str) -> dict[str, str]:
    """A Mongo user who may read and write `database` alone, as the local stack gives each
    service (deploy/local/stack.sh, mongo_grants), made through `admin_url`: the settings a
    started service authenticates with (MONGODB_USERNAME / MONGODB_PASSWORD, which take
    precedence over a user in its MONGODB_URL). Made once per database and server: the
    replicas of one service (and a restarted one) share it, so a later replica never changes
    the password an earlier one still connects with."""
    import secrets

    from pymongo import MongoClient

    from mptf_cli.mongo_users import ensure_user, roles

    key = (admin_url.split("@", 1)[-1], database)
    if key not in _service_users:
        user, password = f"svc.{database}", secrets.token_urlsafe(18)
        with MongoClient(admin_url, serverSelectionTimeoutMS=10000) as c:
            ensure_user(c, user, password, roles(database))
        _service_users[key] = {"MONGODB_USERNAME": user, "MONGODB_PASSWORD": password}
    return dict(_service_users[key])


def provision(tag: str) -> None:
    """The topics and ACLs of a test's deployment (prefix `<tag>.`), made once, as admin."""
    if tag in _provisioned:
        return
    from mptf_cli.provision import admin_client, apply

    # a client of its own each time: one kept would log every broker restart of the suite
    admin = admin_client(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "admin", credentials()["admin"])
    apply(admin, credentials(), prefix=f"{tag}.", entities=TEST_ENTITIES,
          funders=TEST_FUNDERS, users=False)
    _provisioned.add(tag)


def isolated(settings_cls: type[T], **kw: Any) -> T:
    """Settings for one test: its own topics (prefix, provisioned with their ACLs) and its own
    database; the service's own Kafka principal (svc-<name>)."""
    tag = kw.pop("tag", None) or unique()
    name = kw.get("service_name") or settings_cls.model_fields["service_name"].default
    if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
        provision(tag)
    # published outbox documents are kept (marked sent) so that a test can read what its
    # service published; services run as processes (start_service) delete them as deployed
    return settings_cls(**{"topic_prefix": f"{tag}.", "mongodb_database": f"{tag}_{name}",
                           "consumer_batch_max": 200, "outbox_poll_seconds": 0.2,
                           "outbox_keep_sent_hours": 24.0, **kw})


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 20.0,
                     every: float = 0.1) -> T:
    """Poll until `check` returns a truthy value; fail with the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def produce(topic: str, records: list[tuple[bytes | None, bytes, list]], *,
                  user: str | None = None) -> None:
    """Send records to `topic` as `user`: by default the principal that may write it (the
    entity of an inbound topic, the owning service of a fact topic)."""
    p = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         enable_idempotence=True, **kafka_auth(user or writer_of(topic)))
    await p.start()
    try:
        for key, value, headers in records:
            await p.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await p.stop()


def writer_of(topic: str) -> str:
    """The principal that may write `topic` (prefixed or not)."""
    from shared import kafka_acl
    from shared import topics as T

    sender = T.inbound_sender(topic)
    if sender:
        return kafka_acl.entity_user(sender)
    for svc, written in kafka_acl.WRITES.items():
        if any(topic.endswith(t) for t in written):
            return kafka_acl.service_user(svc)
    return "admin"


def inbound(settings_or_tag: Any, base: str, entity: str = "IOM") -> str:
    """An entity's own inbound topic of kind `base` in a test's deployment."""
    from shared import topics as T

    prefix = (settings_or_tag.topic_prefix if hasattr(settings_or_tag, "topic_prefix")
              else f"{settings_or_tag}.")
    return prefix + T.inbound_topic(base, entity)


def event_record(model: Any, *, source: str = "urn:mptf:entity:IOM", event_id: str | None = None,
                 traceparent: str | None = None, key: str | None = None):
    env = Envelope(source=source, type=model.TYPE, subject=key, traceparent=traceparent,
                   **({"id": event_id} if event_id else {}))
    return (key.encode() if key else None, model.model_dump_json().encode(), env.headers())


async def read_to_end(topic: str, *, timeout: float = 120.0) -> list[Any]:
    """Every record on `topic` up to its end offsets as of now, however many (read_all stops
    at the first quiet moment; this stops only at the end)."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=None, max_partition_fetch_bytes=4 << 20, **kafka_auth())
    out: list[Any] = []

    async def read() -> None:
        await c.start()
        while not c.assignment():  # noqa: ASYNC110 - no group: every partition, once known
            await asyncio.sleep(0.05)
        parts = sorted(c.assignment())
        end = await c.end_offsets(parts)
        while [tp for tp in parts if await c.position(tp) < end[tp]]:
            for recs in (await c.getmany(timeout_ms=500, max_records=5000)).values():
                out.extend(recs)

    try:  # every step bounded: a partition without a leader fails the read, never hangs it
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AssertionError(f"{topic} not read to its end in {timeout} s "
                             f"({len(out)} records read)") from None
    finally:
        await c.stop()
    return out


async def read_all(topic: str, *, min_count: int = 0, timeout: float = 15.0) -> list[Any]:
    """Every record on `topic` (from the beginning), waiting for at least `min_count`."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=None, **kafka_auth())
    await asyncio.wait_for(c.start(), 60)
    out: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            batch = await c.getmany(timeout_ms=300)
            for recs in batch.values():
                out.extend(recs)
            if min_count and len(out) >= min_count:
                # drain what is already there, then stop
                more = await c.getmany(timeout_ms=500)
                for recs in more.values():
                    out.extend(recs)
                break
            if not min_count and not batch and out:
                break
    finally:
        await c.stop()
    return out


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}


def value_json(record: Any) -> Any:
    return json.loads(record.value)


def asyncapi_violations(records: list[Any]) -> list[str]:
    """What an AsyncAPI validator finds wrong with real records against the committed
    document (docs/asyncapi.json, AsyncAPI 3; a contract test keeps it equal to what the
    registry generates): each record's message is the one whose example names its CloudEvents
    type; its payload and headers are validated against that message's schemas as the
    AsyncAPI schema format defines them (JSON Schema draft 07), formats (date-time, ...)
    included. An empty list: every record is what the document says."""
    import jsonschema

    document = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    validators = {
        m["examples"][0]["headers"]["ce_type"]: [
            (part, jsonschema.Draft7Validator(
                {**m[part], "components": document["components"]},
                format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER))
            for part in ("payload", "headers")]
        for m in document["components"]["messages"].values()}
    found: list[str] = []
    for record in records:
        headers = headers_of(record)
        kind = headers.get("ce_type", "")
        if kind not in validators:
            found.append(f"no message in the document for type {kind!r}")
            continue
        try:
            payload = json.loads(record.value)
        except ValueError as e:
            found.append(f"{kind} payload is not JSON: {e}")
            continue
        for part, validator in validators[kind]:
            found += [f"{kind} {part} /{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                      for e in validator.iter_errors(payload if part == "payload" else headers)]
    return found


def consumed(topic: str, type_: str, outcome: str = "ok") -> float:
    """How many events of `type_` this process's consumers handled from `topic`."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(
        "mptf_events_consumed_total", {"topic": topic, "type": type_, "outcome": outcome}) or 0


async def pledge_and_deposit(http: Any, cid: str, contributor: str, usd: str, *,
                             base: str = "", pledged: str | None = None,
                             year: int = 2026) -> None:
    """A pledge (of `pledged`, or of `usd`) and a deposit of `usd` through funding's HTTP API
    at `base` (or the client's own base URL), in US dollars."""
    r = await http.post(f"{base}/v1/contributions", headers=FMU, json={
        "contribution_id": cid, "contributor": contributor, "contributor_name": contributor,
        "currency": "USD", "amount": pledged or usd, "year": year})
    assert r.status_code == 201, r.text
    r = await http.post(f"{base}/v1/contributions/{cid}/deposits", headers=FMU,
                        json={"deposit_id": f"{cid}-1", "amount": usd, "usd_amount": usd})
    assert r.status_code == 201, r.text


def documented_fields_missing(openapi: dict[str, Any], method: str, path: str, status: int,
                             body: Any) -> list[str] | None:
    """Compare a real answer with the example the OpenAPI document shows for its route:
    the fields at the top (of the first item, for a list) that one has and the other lacks.
    None when the route shows no JSON example for that status."""
    import re

    for template, ops in openapi["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            answer = ops.get(method.lower(), {}).get("responses", {}).get(str(status), {})
            example = answer.get("content", {}).get("application/json", {}).get("example")
            break
    else:
        return None
    if example is None:
        return None
    if isinstance(example, list):
        if not (example and body):
            return []
        example, body = example[0], body[0]
    if not isinstance(example, dict):
        return []
    return sorted(set(example) ^ set(body))


# -- services as separate processes --------------------------------------------------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port for a server the tests start, below 32768: Linux hands out 32768-60999 as
    clients' own ports, so a server told to listen there may find its port taken by a
    client's connection (30000-32767: above every port the stack script uses; each port
    handed out once per process, since its server binds it only later)."""
    import random
    import socket

    for _ in range(1000):
        port = random.randrange(30000, 32768)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port in 30000-32767")


def start_service(service: str, tag: str, port: int, workdir: Any, *,
                  module: str | None = None, **env: str) -> Any:
    """`python -m services.<service>` (or `module`) on its own port, with the test's topics
    and database."""
    import subprocess
    import sys

    provision(tag)
    # its own Mongo user, on its own database alone: what each service needs of its store is
    # proven by every test that starts one
    database = env.get("MPTF_MONGODB_DATABASE", f"{tag}_{service}")
    user = service_user(env.get("MONGODB_URL", os.environ["MONGODB_URL"]), database)
    full = {**os.environ, "MPTF_TOPIC_PREFIX": f"{tag}.",
            "MPTF_MONGODB_DATABASE": database, **user, "MPTF_HTTP_PORT": str(port),
            "MPTF_OTEL_EXPORTER": "file",
            "MPTF_OTEL_FILE": str(workdir / f"{service}-{port}.spans"),
            "MPTF_OUTBOX_POLL_SECONDS": "0.2", **env}
    # appended: a replica restarted on its port (the fault run) keeps its earlier life's log
    log = (workdir / f"{service}-{port}.log").open("a")
    return subprocess.Popen([sys.executable, "-m", module or f"services.{service}"], cwd=ROOT,
                            env=full,
                            stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(http: Any, port: int, timeout: float = 60, every: float = 0.3) -> None:
    import httpx

    async def ready() -> bool:
        try:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, timeout=timeout, every=every)


def stop_all(procs: list[Any]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except Exception:
            p.kill()


async def all_pages(http: Any, url: str, *, headers: dict[str, str],
                    params: dict[str, Any] | None = None, retry: Any = None) -> list[Any]:
    """Every item of a paged list route, following its `X-Next-Cursor` to the last page.
    `retry`: a coroutine function (method, url, **kw) to call with instead of `http`."""
    items: list[Any] = []
    params = dict(params or {})
    while True:
        if retry is not None:
            r = await retry(http, "GET", url, headers=headers, params=params)
        else:
            r = await http.get(url, headers=headers, params=params)
        assert r.status_code == 200, r.text
        items += r.json()
        cursor = r.headers.get("x-next-cursor")
        if not cursor:
            return items
        params["cursor"] = cursor


async def notices(store: Any, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every notification of the delivery log that `query` names: the rows of
    NotificationsStore.deliveries, all pages (a fact's inbox notices are one document)."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = await store.deliveries(query or {}, cursor, 500)
        rows += page
        if not cursor:
            return rows


def record_queries(mp: Any, coll: Any, methods: tuple[str, ...],
                   into: list[tuple[dict[str, Any], Any]]) -> None:
    """Within `mp` (a pytest MonkeyPatch), note each query (and its index hint) that the
    `methods` (find, update_many, ...) of `coll`'s collection are given."""
    for name in methods:
        original = getattr(type(coll), name)

        def spy(c: Any, query: dict[str, Any] | None = None, *args: Any, _o: Any = original,
                **kw: Any) -> Any:
            # (every collection's method is patched: another's call goes through untouched)
            if c.name == coll.name:
                into.append((query or {}, kw.get("hint")))
            return _o(c, query, *args, **kw)

        mp.setattr(type(coll), name, spy)


async def assert_index_scans(coll: Any, queries: list[tuple[dict[str, Any], Any]]) -> None:
    """Each query (with its hint) is answered by an index scan, never a collection scan:
    the local Mongo server would make one under its global lock."""
    assert queries
    for query, hint in queries:
        cursor = coll.find(query)
        plan = str((await (cursor.hint(hint) if hint else cursor).explain())[
            "queryPlanner"]["winningPlan"])
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, (query, plan)


def commands_started(database: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every command named in `names` that any client made from now on starts on `database`,
    as sent (pymongo's global listeners: registered for the rest of the process, so only
    this one database, a test's own, is looked at)."""
    from pymongo import monitoring

    sent: list[dict[str, Any]] = []

    class Started(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.database_name == database and event.command_name in names:
                sent.append(dict(event.command))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    monitoring.register(Started())
    return sent


ROLES = ("anonymous", "entity", "fmu", "funder", "operator", "rco")


def readme_authz_table(services: list[str]) -> dict[tuple[str, str, str], dict[str, str]]:
    """(service, METHOD, path) -> {role: expected answer} from the README's table "Who may
    call what" (a row for "all four" stands for each of `services`)."""
    import re

    text = (ROOT / "README.md").read_text()
    start = text.index("| service | route | anonymous | entity | fmu | funder | operator | rco |")
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for route in re.findall(r"`([A-Z]+) ([^`]+)`", cells[1]):
            for svc in services if cells[0] == "all four" else [cells[0]]:
                out[(svc, *route)] = dict(zip(ROLES, cells[2:], strict=True))
    return out
