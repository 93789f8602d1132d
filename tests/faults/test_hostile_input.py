"""The hostile-input run (part of the fault run's session): property-based (hypothesis) cases
over every POST and PUT route of every service and every inbound topic, a tenth of them
nested far deeper than any message of ours and a tenth with an integer of over 4,300
digits. Each HTTP case must get a 4xx problem+json answer (or a 2xx where the body happens
to be acceptable), never a 5xx; each Kafka case, all of which are invalid by construction,
must reach the dead-letter topic with its reason while the consumer keeps going. Prints its
figures."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.monitoring.app import MonitoringSettings
from services.monitoring.app import build as build_monitoring
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.contracts.monitoring import REPORT_EXAMPLE, SubmitProgressReport
from shared.envelope import Envelope
from shared.jsondepth import MAX_DEPTH
from tests.integration.conftest import running
from tests.support import bearer, headers_of, isolated, produce, read_all, unique

HTTP_CASES = 700
KAFKA_CASES = 400
ROLE_FOR = {"intake": "dev-iom", "funding": "dev-fmu", "monitoring": "dev-iom",
            "notifications": "dev-operator"}

hostile_scalar = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF),
            max_size=40),
    st.sampled_from(["\x00", "\ud800", "x\uffff", "Maria Lopez Garcia, 34, from Honduras",
                     "ana@example.org", "", " ", "9" * 400, "<script>", "'; drop"]),
    st.booleans(), st.none())
hostile_json = st.recursive(hostile_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def deep(rnd: random.Random) -> bytes:
    """Raw JSON nested past MAX_DEPTH: arrays, objects or both, from just past it to far
    past what Python's decoder can decode (a RecursionError there); at most 160 KB, within
    the size limit, so that its depth is what is refused."""
    n = rnd.choice([MAX_DEPTH + 1, rnd.randint(MAX_DEPTH + 2, 1_500), rnd.randint(1_500, 20_000)])
    opener, closer = rnd.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")])
    return opener * n + b"0" * (opener != b"[") + closer * n


def huge(rnd: random.Random) -> bytes:
    """A JSON integer longer than Python converts from text (4,300 digits), within the size
    limit: json.loads raises a plain ValueError for it, not a JSONDecodeError."""
    return rnd.choice([b"", b"-"]) + b"9" * rnd.randint(4_301, 100_000)


def mutate(example: dict[str, Any], rnd: random.Random, value: Any) -> Any:
    """An example body with one field (perhaps nested) replaced, dropped, or the whole body
    replaced: close to valid, so validation deep inside is reached."""
    body = json.loads(json.dumps(example))
    how = rnd.random()
    if how < 0.1 or not isinstance(body, dict) or not body:
        return value
    key = rnd.choice(list(body))
    if how < 0.2:
        body.pop(key)
    elif isinstance(body[key], list) and body[key] and isinstance(body[key][0], dict):
        inner = body[key][0]
        inner[rnd.choice(list(inner))] = value
    else:
        body[key] = value
    return body


def collect(strategy: Any, n: int) -> list[Any]:
    """n generated cases (derandomized: the same cases each run)."""
    out: list[Any] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(case: Any) -> None:
        out.append(case)

    gather()
    return out[:n]


def route_examples(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, example body) of every POST and PUT route (empty body: no example)."""
    spec = app.openapi()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in ("post", "put"):
                continue
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ex = content.get("example") or next(iter(content.get("examples", {}).values()),
                                                {}).get("value", {})
            out.append((method.upper(), path, ex or {}))
    return out


async def test_hostile_input_never_gets_a_5xx_and_every_kafka_case_is_dead_lettered() -> None:
    figures: Counter[str] = Counter()
    tag = unique("hostile")
    builds = {"intake": (build_intake, IntakeSettings), "funding": (build_funding,
              FundingSettings), "monitoring": (build_monitoring, MonitoringSettings),
              "notifications": (build_notifications, NotificationsSettings)}
    # generated before the services start: their threads use the random module, which
    # hypothesis warns about while it generates
    values = collect(hostile_json, HTTP_CASES)
    kafka_values = collect(hostile_json, KAFKA_CASES)
    rnd = random.Random(13)
    bad: list[str] = []
    async with AsyncExitStack() as stack:
        apps = {}
        for svc, (build, cls) in builds.items():
            apps[svc] = await stack.enter_async_context(running(build, isolated(cls, tag=tag)))
        routes = [(svc, *r) for svc, (app, _rt, _h) in apps.items() for r in route_examples(app)]
        for i, value in enumerate(values):
            svc, method, path, example = routes[i % len(routes)]
            url = (path.replace("{programme_id}", "jp-hostile").replace("{code}", "UNHCR")
                   .replace("{contribution_id}", "c-hostile")
                   .replace("{notification_id}", "n-hostile"))
            body = mutate(example, rnd, value)
            try:
                raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
            except (TypeError, ValueError):
                raw = repr(body).encode("utf-8", "surrogatepass")
            if i % 10 == 9 and raw.endswith(b"}"):  # a field nested far deeper than ours
                raw = raw[:-1] + (b", " if len(raw) > 2 else b"") + b'"x": ' + deep(rnd) + b"}"
            elif i % 10 == 8 and raw.endswith(b"}"):  # an integer past Python's 4,300 digits
                raw = raw[:-1] + (b", " if len(raw) > 2 else b"") + b'"x": ' + huge(rnd) + b"}"
            r = await apps[svc][2].request(method, url, content=raw, headers={
                **bearer(ROLE_FOR[svc]), "content-type": "application/json"})
            figures["hostile HTTP cases"] += 1
            figures[f"hostile HTTP answered {r.status_code // 100}xx"] += 1
            if r.status_code >= 500 or (400 <= r.status_code < 500 and
                                        r.headers["content-type"] != "application/problem+json"):
                bad.append(f"{method} {path}: {r.status_code} {r.text[:200]} for {raw[:200]!r}")

        # Kafka: every case is invalid by construction, so every one must be dead-lettered
        rnd = random.Random(17)
        kinds = {topics.INBOUND_CONCEPT_NOTES: (SubmitConceptNote, CONCEPT_NOTE_EXAMPLE),
                 topics.INBOUND_PROGRESS_REPORTS: (SubmitProgressReport, REPORT_EXAMPLE)}
        sent: dict[str, list[tuple[bytes, str]]] = {k: [] for k in kinds}
        records: dict[str, list[tuple[bytes, bytes, Any]]] = {k: [] for k in kinds}
        for i, value in enumerate(kafka_values):
            kind = list(kinds)[i % 2]
            model, example = kinds[kind]
            key = f"h-{i}".encode()
            env = Envelope(source="urn:mptf:entity:IOM", type=model.TYPE).headers()
            shape = i % 5
            if shape == 0:  # not JSON at all
                value_bytes, reason = (b"\xff\xfe{" + json.dumps(str(value)).encode(
                    "utf-8", "surrogatepass"))[:500], "malformed-json"
            elif shape == 1:  # an unknown version of the type
                value_bytes = json.dumps(example).encode()
                env = Envelope(source="urn:mptf:entity:IOM",
                               type=model.TYPE.replace(".v1", f".v{rnd.randint(2, 99)}")).headers()
                reason = "unknown-type"
            elif shape == 2:  # a claimed sender that is not the topic's
                value_bytes = json.dumps(example).encode()
                env = Envelope(source=f"urn:mptf:entity:{rnd.choice(['ILO', 'X', ''])}",
                               type=model.TYPE).headers()
                reason = "forbidden"
            elif i % 10 == 4:  # nested far deeper than any message of ours
                value_bytes = json.dumps(example).encode()[:-1] + b', "x": ' + deep(rnd) + b"}"
                reason = "malformed-json"
            elif i % 10 == 8:  # an integer past Python's limit on digits (4,300)
                value_bytes = json.dumps(example).encode()[:-1] + b', "x": ' + huge(rnd) + b"}"
                reason = "malformed-json"
            else:  # a required field made hostile: a list of hostile values never validates
                body = json.loads(json.dumps(example))
                body[rnd.choice(["title", "programme_id"] if "title" in body
                                else ["programme_id", "kind"])] = [value, {"x": value}]
                value_bytes = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
                reason = "invalid"
            env = [(k, v) for k, v in env if k != "ce_id"] + [("ce_id", uuid.uuid4().hex.encode())]
            records[kind].append((key, value_bytes, env))
            sent[kind].append((key, reason))
            figures["hostile Kafka cases"] += 1
        for kind, recs in records.items():  # as IOM's system, on its own topics
            await produce(f"{tag}.{topics.inbound_topic(kind, 'IOM')}", recs)
        for kind, cases in sent.items():
            dead = await read_all(f"{tag}.{kind}.dlq", min_count=len(cases), timeout=120)
            reasons = {d.key: headers_of(d)["dlq_reason"] for d in dead}
            for key, reason in cases:
                got = reasons.get(key)
                if got is None:
                    bad.append(f"{kind} {key!r}: not dead-lettered")
                elif got != reason:
                    bad.append(f"{kind} {key!r}: dead-lettered as {got}, expected {reason}")
                else:
                    figures[f"hostile Kafka dead-lettered as {reason}"] += 1
        for _app, _rt, http in apps.values():
            ready = (await http.get("/readyz")).status_code == 200
            figures["services up after the hostile run"] += int(ready)
    print("\nHOSTILE INPUT FIGURES")
    for k, v in sorted(figures.items()):
        print(f"  {k:44s} {v}")
    assert not bad, "\n".join(bad[:30])
    assert figures["hostile HTTP cases"] + figures["hostile Kafka cases"] >= 1000
    assert figures["services up after the hostile run"] == 4
