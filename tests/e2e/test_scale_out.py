"""Scale out: three intake processes in one consumer group over six-partition topics. One is
killed (SIGKILL) mid-stream; the others take over its partitions and every concept note ends
as exactly one programme, announced under exactly one event id."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
from motor.motor_asyncio import AsyncIOMotorClient

from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeSubmitted, SubmitConceptNote
from shared.envelope import Envelope
from tests.support import (
    eventually,
    free_port,
    headers_of,
    kafka_auth,
    read_to_end,
    start_service,
    stop_all,
    unique,
    wait_ready,
)

N = 300


async def test_killing_one_of_three_instances_loses_and_doubles_nothing(tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    tag = unique("scale")
    ports = [free_port() for _ in range(3)]
    procs = [start_service("intake", tag, p, tmp_path, MPTF_CONSUMER_BATCH_MAX="20",
                           MPTF_OUTBOX_LEASE_SECONDS="3") for p in ports]
    db = AsyncIOMotorClient(os.environ["MONGODB_URL"], tz_aware=True)[f"{tag}_intake"]
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for p in ports:
                await wait_ready(http, p)
        producer = AIOKafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
                                    enable_idempotence=True, **kafka_auth("entity-IOM"))
        await producer.start()
        killed = False
        try:
            for i in range(N):
                ref = f"SCALE-{i:04}"
                note = SubmitConceptNote.model_validate({**CONCEPT_NOTE_EXAMPLE,
                                                         "entity_reference": ref})
                env = Envelope(source="urn:mptf:entity:IOM", type=note.TYPE)
                await producer.send_and_wait(f"{tag}.{topics.INBOUND_CONCEPT_NOTES}.IOM",
                                             note.model_dump_json().encode(),
                                             key=ref.encode(), headers=env.headers())
                if i == N // 3:  # mid-stream, once it is busy
                    async def busy() -> bool:
                        return await db.programmes.count_documents({}) > 20

                    await eventually(busy)
                    procs[0].send_signal(signal.SIGKILL)
                    killed = True
                await asyncio.sleep(0.01)
        finally:
            await producer.stop()
        assert killed and procs[0].wait(timeout=10) == -signal.SIGKILL

        async def all_in() -> bool:
            return await db.programmes.count_documents({}) == N

        await eventually(all_in, timeout=90)

        async def all_published() -> bool:  # the killed relay's lease lapses first
            return await db.outbox.count_documents({"sent_at": None}) == 0

        await eventually(all_published, timeout=60)
        facts = await read_to_end(f"{tag}.{topics.PROGRAMMES}")
    finally:
        stop_all(procs)
    submitted = [(headers_of(f)["ce_id"], json.loads(f.value)["entity_reference"])
                 for f in facts if headers_of(f)["ce_type"] == ProgrammeSubmitted.TYPE]
    by_ref: dict[str, set[str]] = {}
    for event_id, ref in submitted:
        by_ref.setdefault(ref, set()).add(event_id)
    assert sorted(by_ref) == [f"SCALE-{i:04}" for i in range(N)]  # nothing lost
    assert all(len(ids) == 1 for ids in by_ref.values())  # nothing doubled (one event id)
    refs = [d["entity_reference"] async for d in db.programmes.find({}, {"entity_reference": 1})]
    assert len(refs) == len(set(refs)) == N
