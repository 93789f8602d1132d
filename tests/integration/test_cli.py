"""The operators' tools against the real broker: a report that arrived before its programme
was known is dead-lettered; once the programme is known, `mptf dlq replay` sends it back and
it is accepted. `mptf dlq list` and `mptf lag` show what is there."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime

from typer.testing import CliRunner

from mptf_cli import kafka_tools
from mptf_cli.main import app as cli
from services.monitoring.app import MonitoringSettings
from services.monitoring.app import build as build_monitoring
from shared import topics
from shared.contracts.monitoring import SubmitProgressReport
from tests.integration.conftest import running
from tests.integration.test_monitoring import funded_programme, publish, report, until_on_going
from tests.support import event_record, eventually, isolated, produce
from tests.support import inbound as inbound_topic


async def test_a_dead_letter_is_listed_then_replayed_once_its_cause_is_fixed() -> None:
    s = isolated(MonitoringSettings, clock_fixed=datetime(2026, 11, 1, tzinfo=UTC))
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    inbound = inbound_topic(s, topics.INBOUND_PROGRESS_REPORTS, "IOM")
    dlq = s.topic(topics.INBOUND_PROGRESS_REPORTS) + ".dlq"
    r = SubmitProgressReport.model_validate(report("jp-late", "annual-narrative", 2026))
    async with running(build_monitoring, s) as (_app, rt, http):
        await produce(inbound, [event_record(r, key="jp-late")])

        async def dead() -> list[kafka_tools.DeadLetter]:
            return await kafka_tools.read_dead_letters(bootstrap, dlq, 1)

        (letter,) = await eventually(dead)
        assert letter.meta("dlq_reason") == "not-found"

        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MPTF_TOPIC_PREFIX": s.topic_prefix,
               "COLUMNS": "200"}
        out = await asyncio.to_thread(CliRunner().invoke, cli, [
            "dlq", "list", "--topic", topics.INBOUND_PROGRESS_REPORTS], env=env)
        assert out.exit_code == 0, out.output
        assert "not-found" in out.output and "1 dead letter(s)" in out.output

        await publish(s, funded_programme("jp-late", "2026-01-15T00:00:00Z", 24))
        await until_on_going(http, "jp-late")
        out = await asyncio.to_thread(CliRunner().invoke, cli, [
            "dlq", "replay", "--topic", topics.INBOUND_PROGRESS_REPORTS,
            "--reason", "not-found"], env=env)
        assert out.exit_code == 0 and "replayed 1 of 1" in out.output

        async def accepted() -> bool:
            return await rt.store.db.reports.count_documents({"programme_id": "jp-late"}) == 1

        await eventually(accepted)
        rows = await kafka_tools.consumer_lag(bootstrap, s.group_id)
        assert {row["topic"] for row in rows} >= {inbound}
        assert all(row["lag"] >= 0 for row in rows)


async def test_dlq_replay_at_a_partition_and_offset_sends_exactly_that_record() -> None:
    """`--at P:O` names one record: with dead letters at the same offset in several
    partitions, only the one named goes back; a position that holds none is refused."""
    s = isolated(MonitoringSettings, clock_fixed=datetime(2026, 11, 1, tzinfo=UTC))
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    inbound = inbound_topic(s, topics.INBOUND_PROGRESS_REPORTS, "IOM")
    dlq = s.topic(topics.INBOUND_PROGRESS_REPORTS) + ".dlq"
    pids = [f"jp-unknown-{i}" for i in range(12)]
    async with running(build_monitoring, s) as (_app, _rt, _http):
        await produce(inbound, [event_record(SubmitProgressReport.model_validate(
            report(pid, "annual-narrative", 2026)), key=pid) for pid in pids])

        async def all_dead() -> list[kafka_tools.DeadLetter]:
            got = await kafka_tools.read_dead_letters(bootstrap, dlq, 1)
            return got if len(got) == len(pids) else []

        letters = await eventually(all_dead)
        firsts = [d for d in letters if d.offset == 0]
        assert len(firsts) >= 2  # offset 0 exists in several partitions
        chosen = firsts[1]
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MPTF_TOPIC_PREFIX": s.topic_prefix,
               "COLUMNS": "200"}
        before = await kafka_tools.read_dead_letters(bootstrap, inbound, 1)
        for at in (f"{chosen.partition}:0", f"{dlq}:{chosen.partition}:0"):
            out = await asyncio.to_thread(CliRunner().invoke, cli, [
                "dlq", "replay", "--topic", topics.INBOUND_PROGRESS_REPORTS, "--at", at],
                env=env)
            assert out.exit_code == 0 and "replayed 1 of 1" in out.output, out.output
        out = await asyncio.to_thread(CliRunner().invoke, cli, [
            "dlq", "replay", "--topic", topics.INBOUND_PROGRESS_REPORTS, "--at", "99:0"],
            env=env)
        assert out.exit_code != 0 and "no dead letter at 99:0" in out.output

        async def resent() -> list[kafka_tools.DeadLetter]:
            got = await kafka_tools.read_dead_letters(bootstrap, inbound, 1)
            return got if len(got) == len(before) + 2 else []

        records = await eventually(resent)
    # both replays sent the one record named, and nothing else
    sent = Counter(r.key for r in records)
    assert sent[chosen.key] == 3 and all(n == 1 for k, n in sent.items() if k != chosen.key)
