"""The thin slice, as separate processes: a concept note POSTed to intake and another
published on mptf.inbound.concept-notes are stored by intake, announced as ProgrammeSubmitted
through its outbox, and delivered to each PUNO's inbox by notifications; one trace spans both
services; and with a sample ratio, each programme is traced whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted, SubmitConceptNote
from shared.contracts.notifications import NotificationDelivered
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


def _trace(record: Any) -> tuple[str, bool]:
    """A record's trace id, and whether its trace is kept (the traceparent's sampled flag)."""
    tp = dict(record.headers)["traceparent"].decode()
    _, trace_id, _, flags = tp.split("-")
    return trace_id, bool(int(flags, 16) & 1)


async def test_with_a_sample_ratio_each_programme_is_traced_whole_or_not_at_all(
        tmp_path: Path) -> None:
    """MPTF_OTEL_SAMPLE_RATIO=0.5 in both services: a note's trace is kept by its trace id
    where it begins (intake's POST), and notifications follows that decision. A kept note has
    its spans in both services; one not kept has none in either, yet its trace id still
    travels, flag off, on its fact and on every notice notifications publishes about it."""
    tag = unique()
    ports = {"intake": free_port(), "notifications": free_port()}
    procs = {s: start_service(s, tag, p, tmp_path, MPTF_OTEL_SAMPLE_RATIO="0.5")
             for s, p in ports.items()}
    notes = 20
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for p in ports.values():
                await wait_ready(http, p)
            pids = []
            for i in range(notes):
                r = await http.post(f"http://127.0.0.1:{ports['intake']}/v1/concept-notes",
                                    json={**CONCEPT_NOTE_EXAMPLE,
                                          "entity_reference": f"IOM-PHL-S{i}"}, headers=IOM)
                assert r.status_code == 201, r.text
                pids.append(r.json()["programme_id"])

            async def records(topic: str, ce_type: str, count: int) -> list:
                got = [f for f in await read_all(f"{tag}.{topic}", timeout=3)
                       if ("ce_type", ce_type.encode()) in f.headers
                       and f.key.decode() in pids]
                return got if len(got) >= count else []

            submitted = await eventually(
                lambda: records(topics.PROGRAMMES, ProgrammeSubmitted.TYPE, notes), timeout=30)
            delivered = await eventually(
                lambda: records(topics.NOTIFICATIONS, NotificationDelivered.TYPE, 3 * notes),
                timeout=60)
    finally:
        stop_all(list(procs.values()))

    trace_of = {f.key.decode(): _trace(f) for f in submitted}
    assert set(trace_of) == set(pids)
    # kept by trace id: the lower half of the ids' last 64 bits, at ratio 0.5
    assert all(kept == (int(tid[16:], 16) < 2**63) for tid, kept in trace_of.values())
    kept = {pid for pid, (_, k) in trace_of.items() if k}
    assert kept and kept != set(pids)  # both outcomes (20 notes: all alike 2 times in 2**20)
    # every notice about a note carries the note's trace id and decision
    notices = [f for f in delivered
               if json.loads(f.value)["fact_type"] == ProgrammeSubmitted.TYPE]
    assert {f.key.decode() for f in notices} == set(pids)
    for f in notices:
        assert _trace(f) == trace_of[f.key.decode()]

    spans = {s: spans_of(tmp_path / f"{s}-{p}.spans") for s, p in ports.items()}
    for pid, (trace_id, k) in trace_of.items():
        names = {s: {sp["name"] for sp in spans[s] if sp["trace_id"] == trace_id}
                 for s in ports}
        if k:
            assert "POST /v1/concept-notes" in names["intake"], pid
            assert f"publish {ProgrammeSubmitted.TYPE}" in names["intake"], pid
            assert f"consume {ProgrammeSubmitted.TYPE}" in names["notifications"], pid
            assert f"publish {NotificationDelivered.TYPE}" in names["notifications"], pid
        else:
            assert names == {"intake": set(), "notifications": set()}, pid
