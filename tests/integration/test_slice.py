"""The thin slice, as separate processes: a concept note POSTed to intake and another
published on mptf.inbound.concept-notes are stored by intake, announced as ProgrammeSubmitted
through its outbox, and delivered to each PUNO's inbox by notifications; one trace spans both
services."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted, SubmitConceptNote
from tests.support import (
    IOM,
    OPERATOR,
    event_record,
    eventually,
    free_port,
    produce,
    read_all,
    start_service,
    stop_all,
    unique,
    wait_ready,
)


def spans_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_note_travels_from_intake_to_notifications_in_one_trace(tmp_path: Path) -> None:
    tag = unique()
    ports = {"intake": free_port(), "notifications": free_port()}
    procs = {s: start_service(s, tag, p, tmp_path) for s, p in ports.items()}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for p in ports.values():
                await wait_ready(http, p)

            # one note over HTTP, from IOM (a PUNO of it)
            r = await http.post(f"http://127.0.0.1:{ports['intake']}/v1/concept-notes",
                                json=CONCEPT_NOTE_EXAMPLE,
                                headers=IOM)
            assert r.status_code == 201, r.text
            http_pid = r.json()["programme_id"]

            # one over the inbound topic, from ILO's system
            note = SubmitConceptNote.model_validate(
                {**CONCEPT_NOTE_EXAMPLE, "entity_reference": "ILO-PHL-7"})
            await produce(f"{tag}.{topics.inbound_topic(topics.INBOUND_CONCEPT_NOTES, 'ILO')}",
                          [event_record(note, source="urn:mptf:entity:ILO", key="ILO-PHL-7")])

            facts = await read_all(f"{tag}.{topics.PROGRAMMES}", min_count=4)
            by_ref = {json.loads(f.value)["entity_reference"]: f.key.decode() for f in facts
                      if ("ce_type", ProgrammeSubmitted.TYPE.encode()) in f.headers}
            assert by_ref["IOM-PHL-2026-014"] == http_pid
            kafka_pid = by_ref["ILO-PHL-7"]

            async def deliveries() -> list[dict]:
                r = await http.get(f"http://127.0.0.1:{ports['notifications']}/v1/deliveries",
                                   params={"fact_type": ProgrammeSubmitted.TYPE},
                                   headers=OPERATOR)
                got = r.json()
                return got if len(got) >= 6 else []

            got = await eventually(deliveries, timeout=30)
            pairs = sorted((d["programme_id"], d["recipient"]) for d in got)
            assert pairs == sorted((pid, e) for pid in (http_pid, kafka_pid)
                                   for e in ("ILO", "IOM", "UN-WOMEN"))
    finally:
        stop_all(list(procs.values()))

    intake_spans = spans_of(tmp_path / f"intake-{ports['intake']}.spans")
    notif_spans = spans_of(tmp_path / f"notifications-{ports['notifications']}.spans")
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
