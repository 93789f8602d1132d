"""examples/entity_system.py, a standalone entity system (librdkafka and the AsyncAPI
document, none of our code), submits a concept note and a progress report on the secured
broker as IOM; intake and monitoring accept both. With another entity's password it is
refused at the door."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.monitoring.app import MonitoringSettings
from services.monitoring.app import build as build_monitoring
from tests.integration.conftest import running
from tests.integration.test_monitoring import at, funded_programme, publish, until_on_going
from tests.support import ROOT, credentials, eventually, isolated, unique


def example(tag: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples/entity_system.py"), "--entity", "IOM",
         "--prefix", f"{tag}.", "--bootstrap", os.environ["KAFKA_BOOTSTRAP_SERVERS"], *args],
        capture_output=True, text=True, timeout=60, cwd=Path("/"),
        env={"PATH": os.environ["PATH"], "KAFKA_PASSWORD": password})


async def test_the_example_entity_system_submits_a_note_and_a_report() -> None:
    tag = unique("ex")
    iset = isolated(IntakeSettings, tag=tag)
    mset = isolated(MonitoringSettings, tag=tag, clock_fixed=at("2026-11-01"))
    pw = credentials()["entity-IOM"]
    async with running(build_intake, iset) as (_, irt, _ih), \
            running(build_monitoring, mset) as (_, mrt, mhttp):
        out = await asyncio.to_thread(example, tag, pw, "note", "--reference", "IOM-EX-1")
        assert out.returncode == 0, out.stderr
        sent = json.loads(out.stdout)
        assert sent["topic"] == f"{tag}.mptf.inbound.concept-notes.IOM"

        async def stored() -> bool:
            return await irt.store.db.programmes.count_documents(
                {"entity_reference": "IOM-EX-1"}) == 1

        await eventually(stored)

        await publish(mset, funded_programme("jp-ex", "2026-01-15T00:00:00Z", 24))
        await until_on_going(mhttp, "jp-ex")
        out = await asyncio.to_thread(example, tag, pw, "report", "--programme", "jp-ex")
        assert out.returncode == 0, out.stderr

        async def accepted() -> bool:
            return await mrt.store.db.reports.count_documents({"programme_id": "jp-ex"}) == 1

        await eventually(accepted)

        out = await asyncio.to_thread(example, tag, credentials()["entity-ILO"], "note",
                                      "--reference", "IOM-EX-2")
        assert out.returncode != 0  # ILO's password is not IOM's: authentication fails
