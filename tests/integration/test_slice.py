"""The thin slice, as separate processes: a concept note POSTed to intake and another
published on mptf.inbound.concept-notes are stored by intake, announced as ProgrammeSubmitted
through its outbox, and delivered to each PUNO's inbox by notifications; one trace spans both
services."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted, SubmitConceptNote
from tests.support import event_record, eventually, produce, read_all, unique

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(service: str, tag: str, port: int, spans: Path, logs: Path) -> subprocess.Popen:
    env = {**os.environ, "MPTF_TOPIC_PREFIX": f"{tag}.", "MPTF_MONGODB_DATABASE":
           f"{tag}_{service}", "MPTF_HTTP_PORT": str(port), "MPTF_OTEL_EXPORTER": "file",
           "MPTF_OTEL_FILE": str(spans), "MPTF_OUTBOX_POLL_SECONDS": "0.2"}
    return subprocess.Popen([sys.executable, "-m", f"services.{service}"], cwd=ROOT, env=env,
                            stdout=logs.open("w"), stderr=subprocess.STDOUT)


def spans_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_note_travels_from_intake_to_notifications_in_one_trace(tmp_path: Path) -> None:
    tag = unique()
    ports = {"intake": free_port(), "notifications": free_port()}
    procs = {s: start(s, tag, p, tmp_path / f"{s}.spans", tmp_path / f"{s}.log")
             for s, p in ports.items()}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for p in ports.values():
                async def ready(p: int = p) -> bool:
                    try:
                        return (await http.get(f"http://127.0.0.1:{p}/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(ready, timeout=60, every=0.3)

            # one note over HTTP, from IOM (a PUNO of it)
            r = await http.post(f"http://127.0.0.1:{ports['intake']}/v1/concept-notes",
                                json=CONCEPT_NOTE_EXAMPLE,
                                headers={"authorization": "Bearer dev-iom"})
            assert r.status_code == 201, r.text
            http_pid = r.json()["programme_id"]

            # one over the inbound topic, from ILO's system
            note = SubmitConceptNote.model_validate(
                {**CONCEPT_NOTE_EXAMPLE, "entity_reference": "ILO-PHL-7"})
            await produce(f"{tag}.{topics.INBOUND_CONCEPT_NOTES}",
                          [event_record(note, source="urn:mptf:entity:ILO", key="ILO-PHL-7")])

            facts = await read_all(f"{tag}.{topics.PROGRAMMES}", min_count=4)
            by_ref = {json.loads(f.value)["entity_reference"]: f.key.decode() for f in facts
                      if ("ce_type", ProgrammeSubmitted.TYPE.encode()) in f.headers}
            assert by_ref["IOM-PHL-2026-014"] == http_pid
            kafka_pid = by_ref["ILO-PHL-7"]

            async def deliveries() -> list[dict]:
                r = await http.get(f"http://127.0.0.1:{ports['notifications']}/v1/deliveries",
                                   headers={"authorization": "Bearer dev-operator"})
                got = r.json()
                return got if len(got) >= 6 else []

            got = await eventually(deliveries, timeout=30)
            pairs = sorted((d["programme_id"], d["recipient"]) for d in got)
            assert pairs == sorted((pid, e) for pid in (http_pid, kafka_pid)
                                   for e in ("ILO", "IOM", "UN-WOMEN"))
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=20)

    intake_spans = spans_of(tmp_path / "intake.spans")
    notif_spans = spans_of(tmp_path / "notifications.spans")
    post = next(s for s in intake_spans if s["name"] == "POST /v1/concept-notes"
                and s["attributes"].get("http.response.status_code") == 201)
    publish = next(s for s in intake_spans if s["name"].startswith("publish ")
                   and s["attributes"]["mptf.programme_id"] == http_pid)
    consume = next(s for s in notif_spans if s["name"].startswith("consume ")
                   and s["attributes"]["mptf.programme_id"] == http_pid)
    # the consumer's span continues the producer's trace: one trace, two services
    assert publish["trace_id"] == post["trace_id"] == consume["trace_id"]
    assert consume["parent_id"] == publish["span_id"]
    assert consume["service"] == "mptf-notifications" and post["service"] == "mptf-intake"
    # and what notifications published because of it stays in the same trace
    assert any(s["name"].startswith("publish org.migrationmptf.notification.delivered")
               and s["trace_id"] == post["trace_id"] for s in notif_spans)
