"""Property-based, across services: random programme lives (submissions, SC decisions,
deposits, withdrawals, cancellations, suspensions and resumptions, top-ups, extensions,
tranches, refunds) run through intake's, funding's and monitoring's own service and store
layers against the real store, while the facts each publishes (read from its outbox) reach
the other two in random interleavings of their topics, in batches, with redeliveries. When
everything has been delivered, the three agree on every programme's state, and funding and
monitoring on its money per PUNO (allocated, transferred, refunded, owed); no fact was
dead-lettered; and each service rebuilt from the facts alone (`mptf rebuild`), in the
order of the facts' times rather than of their arrival, have the same read models."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from services.funding import service as funding
from services.funding.app import FundingSettings
from services.funding.commands import (
    BudgetLineIn,
    BudgetRevision,
    Decision,
    Deposit,
    Extension,
    Pledge,
    Refund,
    ScDecision,
)
from services.funding.store import FundingStore
from services.funding.store import py as fpy
from services.intake import service as intake
from services.intake.app import IntakeSettings
from services.intake.store import IntakeStore
from services.monitoring import service as monitoring
from services.monitoring.app import MonitoringSettings
from services.monitoring.store import MonitoringStore, amounts
from shared import lifecycle, rebuild, topics
from shared.consumer import Incoming
from shared.contracts import REGISTRY
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, SubmitConceptNote
from shared.envelope import Envelope
from shared.errors import MptfError
from tests.support import unique

N = 3  # programmes
CONSUMERS = {  # who reads which topic
    "intake": (topics.FUNDING, topics.MONITORING),
    "funding": (topics.PROGRAMMES, topics.MONITORING),
    "monitoring": (topics.PROGRAMMES, topics.FUNDING),
}
LANES = [(c, t) for c, ts in CONSUMERS.items() for t in ts]

i = st.integers(0, N - 1)
approve = st.tuples(st.just("approve"), i, st.integers(1, 3))
deposit = st.tuples(st.just("deposit"), st.integers(50, 900))
command = st.one_of(
    deposit, deposit, approve, approve, approve,
    st.tuples(st.just("tranche"), i),
    st.tuples(st.just("reject"), i), st.tuples(st.just("defer"), i),
    st.tuples(st.just("withdraw"), i),
    st.tuples(st.just("cancel"), i), st.tuples(st.just("suspend"), i),
    st.tuples(st.just("resume"), i), st.tuples(st.just("topup"), i, st.integers(1, 90)),
    st.tuples(st.just("topup"), i, st.integers(1, 90)),
    st.tuples(st.just("tranche"), i), st.tuples(st.just("refund"), i, st.integers(1, 100)),
    st.tuples(st.just("extend"), i, st.integers(1, 6)),
)
delivery = st.one_of(
    st.tuples(st.just("deliver"), st.integers(0, len(LANES) - 1), st.integers(1, 6)),
    st.tuples(st.just("redeliver"), st.integers(0, len(LANES) - 1), st.integers(0, 10_000)),
)
step = st.one_of(command, delivery, delivery)


def note(k: int) -> SubmitConceptNote:
    return SubmitConceptNote.model_validate({
        **CONCEPT_NOTE_EXAMPLE, "entity_reference": f"AGREE-{k}",
        "punos": [{"entity": "IOM", "convening": True, "budget_usd": f"{100 + 50 * k}000"},
                  {"entity": "ILO", "budget_usd": "80000"}]})


def note_event(what: str) -> None:
    """Hypothesis's statistics, when running under it."""
    with contextlib.suppress(InvalidArgument):
        event(what)


class World:
    """The three services' stores, and the facts each has published, per topic."""

    def __init__(self) -> None:
        tag = unique("agree")
        kw = {"topic_prefix": f"{tag}.", "consumer_batch_max": 50}
        self.settings = {
            "intake": IntakeSettings(mongodb_database=f"{tag}_intake", **kw),
            "funding": FundingSettings(mongodb_database=f"{tag}_funding",
                                       transfer_tranches=[D("0.5"), D("0.5")], **kw),
            "monitoring": MonitoringSettings(mongodb_database=f"{tag}_monitoring", **kw)}
        self.intake = IntakeStore(self.settings["intake"])
        self.funding = FundingStore(self.settings["funding"])
        self.monitoring = MonitoringStore(self.settings["monitoring"])
        self.rules = self.settings["funding"].rules()
        self.published: dict[str, list[dict[str, Any]]] = {t: [] for t in (
            topics.PROGRAMMES, topics.FUNDING, topics.MONITORING)}
        self.read = {lane: 0 for lane in LANES}  # each lane's offset
        self.pids: list[str] = []
        self.rejected: list[str] = []

    async def start(self) -> None:
        for s in (self.intake, self.funding, self.monitoring):
            await s.ensure_indexes()
        await funding.pledge(self.funding, Pledge(
            contribution_id="c", contributor="DEU", contributor_name="Germany",
            currency="USD", amount=D("100000000"), year=2026))
        for k in range(N):
            out = await intake.submit(self.intake, self.settings["intake"].rules(), note(k),
                                      "IOM")
            self.pids.append(out.programme_id)
        await self.collect()
        # funding has heard of the notes (so the SC can decide); the rest is left to chance
        await self.step(("deliver", LANES.index(("funding", topics.PROGRAMMES)), 2 * N))

    async def collect(self) -> None:
        """What each service committed to its outbox since last time, onto its topics."""
        seen = {t: {e["id"] for e in evs} for t, evs in self.published.items()}
        for store in (self.intake, self.funding, self.monitoring):
            for e in await store.outbox_events():
                if e["topic"] in self.published and e["id"] not in seen[e["topic"]]:
                    self.published[e["topic"]].append(e)
                    seen[e["topic"]].add(e["id"])

    def incoming(self, e: dict[str, Any], offset: int) -> Incoming:
        env = Envelope.model_validate(e["envelope"])
        event = REGISTRY[e["type"]].model.model_validate_json(e["value"])
        return Incoming(SimpleNamespace(topic=e["topic"], partition=0, offset=offset), env,
                        event)  # type: ignore[arg-type]

    async def deliver(self, lane: tuple[str, str], records: list[tuple[int, dict]]) -> None:
        consumer = lane[0]
        accepts = {"intake": set(lifecycle.HISTORY_TYPES), "funding": {
            "org.migrationmptf.programme.screened.v1", "org.migrationmptf.programme.withdrawn.v1",
            "org.migrationmptf.programme.operationally-closed.v1",
            "org.migrationmptf.programme.financially-closed.v1"},
            "monitoring": set(monitoring.PROGRAMME_FACTS) | set(monitoring.FUNDING_FACTS)}
        batch = [self.incoming(e, n) for n, e in records if e["type"] in accepts[consumer]]
        if not batch:
            return
        if consumer == "intake":
            rej = await intake.handle_facts(self.intake, batch)
        elif consumer == "funding":
            rej = await funding.handle_programme_facts(self.funding, self.rules, batch)
        else:
            rej = await monitoring.handle_facts(self.monitoring, batch)
        self.rejected += [f"{consumer}: {r.incoming.type} {r.reason} {r.detail}" for r in rej]
        await self.collect()

    async def step(self, s: tuple) -> None:
        if s[0] in ("deliver", "redeliver"):
            lane = LANES[s[1]]
            log = self.published[lane[1]]
            if s[0] == "deliver":
                start = self.read[lane]
                end = min(len(log), start + s[2])
                self.read[lane] = end
                await self.deliver(lane, [(n, log[n]) for n in range(start, end)])
            elif self.read[lane]:  # a record this consumer already had, again
                n = s[2] % self.read[lane]
                await self.deliver(lane, [(n, log[n])])
            return
        before = sum(len(v) for v in self.published.values())
        try:
            await self.command(s)
        except MptfError as e:
            # refused by the rules: it published nothing (its transaction never committed)
            await self.collect()
            assert sum(len(v) for v in self.published.values()) == before, (s, e)
            note_event(f"a {s[0]} refused")
            return
        await self.collect()

    async def command(self, s: tuple) -> None:
        f, r = self.funding, self.rules
        pid = self.pids[s[1]] if len(s) > 1 and s[0] != "deposit" else ""
        n = sum(len(v) for v in self.published.values())
        if s[0] == "deposit":
            usd = D(s[1]) * 1000
            await funding.deposit(f, r, "c", Deposit(deposit_id=f"d{n}", amount=usd,
                                                     usd_amount=usd))
        elif s[0] in ("approve", "reject", "defer"):
            await funding.decide(f, r, Decision(
                programme_id=pid, decision=s[0], decision_id=f"sc{n}", rationale="why",
                priority=s[2] if s[0] == "approve" else None))
        elif s[0] == "withdraw":
            await intake.withdraw(self.intake, pid, "ILO", "withdrawn")
        elif s[0] in ("cancel", "suspend", "resume"):
            await funding.change(f, r, pid, s[0], ScDecision(decision_id=f"sc{n}",
                                                             rationale="why"))
        elif s[0] == "topup":
            doc = await f.programme(pid) or {}
            iom = next((b["budget_usd"] for b in doc.get("approved_budget", [])
                        if b["entity"] == "IOM"), D(1))
            await funding.change(f, r, pid, "revise-budget", BudgetRevision(
                decision_id=f"sc{n}", approved_budget=[BudgetLineIn(
                    entity="IOM", budget_usd=iom + D(s[2]) * 1000)]))
        elif s[0] == "extend":
            await funding.change(f, r, pid, "extend", Extension(decision_id=f"sc{n}",
                                                                months=s[2]))
        elif s[0] == "tranche":
            await funding.release_tranche(f, r, pid)
        elif s[0] == "refund":
            doc = await f.programme(pid) or {}
            held = doc.get("transferred", {}).get("IOM", D(0)) - doc.get(
                "refunded", {}).get("IOM", D(0))
            amount = (held * s[2] / 100).quantize(D("0.01"))
            if amount > 0:
                await funding.refund(f, r, pid, Refund(refund_id=f"r{n}", entity="IOM",
                                                       amount_usd=amount))

    async def drain(self) -> None:
        while True:
            moved = False
            for lane in LANES:
                log = self.published[lane[1]]
                if self.read[lane] < len(log):
                    start, self.read[lane] = self.read[lane], len(log)
                    await self.deliver(lane, [(n, log[n]) for n in range(start, len(log))])
                    moved = True
            if not moved:
                return

    async def check(self) -> None:
        assert not self.rejected, self.rejected
        for pid in self.pids:
            i = await self.intake.get(pid)
            fd = await self.funding.programme(pid)
            m = await self.monitoring.programme(pid)
            assert i and fd and m
            states = (i["status"], fd["status"], m["status"])
            assert len(set(states)) == 1, (pid, states)
            note_event(f"ended {states[0]}")
            for name in ("allocated", "transferred", "refunded", "owed"):
                mine = {k: v for k, v in (fd.get(name) or {}).items() if v}
                theirs = {k: v for k, v in amounts(m, name).items() if v}
                assert fpy(mine) == theirs, (pid, name, mine, theirs)

    async def rebuilt_alike(self) -> None:
        """Each service rebuilt from the facts alone, merged by their times (not in the order
        the live services happened to receive them), has the live read models."""
        facts = rebuild.merge([self.incoming(e, n) for n, e in enumerate(log)]
                              for log in self.published.values())
        for name, live, plan, store_cls in (
                ("intake", self.intake, intake.REBUILD, IntakeStore),
                ("funding", self.funding, funding.REBUILD, FundingStore),
                ("monitoring", self.monitoring, monitoring.REBUILD, MonitoringStore)):
            fresh = store_cls(self.settings[name].model_copy(
                update={"mongodb_database": f"{live.db.name}_rebuilt"}))
            try:
                report = await rebuild.replay(fresh, plan, facts, batch=7)
                assert not report.refused, report.refused
                assert await rebuild.compare(live.db, fresh.db, plan) == []
                assert not await fresh.outbox_events()  # a rebuild publishes nothing
            finally:
                await fresh.client.drop_database(fresh.db.name)
                await fresh.close()

    async def close(self) -> None:
        for s in (self.intake, self.funding, self.monitoring):
            await s.client.drop_database(s.db.name)
            await s.close()


async def run(steps: list[tuple]) -> None:
    w = World()
    try:
        await w.start()
        for s in steps:
            await w.step(s)
        await w.drain()
        await w.check()
        await w.rebuilt_alike()
        kinds = {e["type"].split(".")[-2] for e in itertools.chain(*w.published.values())}
        note_event("a release" if "released" in kinds else "no release")
        note_event("a top-up" if any(e["type"].endswith("allocation.made.v1") and json.loads(
            e["value"])["allocation_id"].rsplit("-", 1)[-1].startswith("r")
            for e in w.published[topics.FUNDING]) else "no top-up")
    finally:
        await w.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(step, min_size=15, max_size=45))
def test_intake_funding_and_monitoring_agree_whatever_the_order(steps: list[tuple]) -> None:
    asyncio.run(run(steps))


def test_a_withdrawal_racing_an_allocation_agrees_in_every_service() -> None:
    """The race named in the issue, both ways round: intake accepts the withdrawal while
    funding allocates; each service sees the two facts in the opposite order."""
    deliver_all = [("deliver", k, 50) for k in range(len(LANES))]
    approve_then_fund = [("deliver", LANES.index(("funding", topics.PROGRAMMES)), 50),
                         ("approve", 0, 1), ("deposit", 900)]
    for order in ([*approve_then_fund, ("withdraw", 0), *deliver_all],
                  [*approve_then_fund, *deliver_all, ("withdraw", 0), *deliver_all],
                  [("deliver", LANES.index(("funding", topics.PROGRAMMES)), 50),
                   ("approve", 0, 1), ("withdraw", 0), ("deposit", 900), *deliver_all]):
        asyncio.run(run(order))


def test_each_service_answers_as_of_every_earlier_instant() -> None:
    """A programme's life, step by step (approval, deposit and allocation, transfer,
    suspension, resumption, top-up, withdrawal), each step delivered everywhere: what each
    service said after each step is what it answers `as_of` that moment afterwards."""
    from datetime import UTC, datetime

    from services.intake.api import as_of_view

    life = [("approve", 0, 1), ("deposit", 900), ("tranche", 0), ("suspend", 0),
            ("resume", 0), ("topup", 0, 20), ("deposit", 50), ("withdraw", 0)]
    deliver_all = [("deliver", k, 500) for k in range(len(LANES))]

    async def scenario() -> None:
        w = World()
        try:
            await w.start()
            pid = w.pids[0]
            seen = []  # (instant, what each service said then)

            async def snapshot() -> None:
                await asyncio.sleep(0.01)  # facts of the next step come strictly later
                i = await w.intake.get(pid)
                f = await w.funding.programme(pid)
                m = await w.monitoring.programme(pid)
                assert i and f and m
                seen.append((datetime.now(UTC), {
                    "intake": i["status"], "funding": f["status"], "monitoring": m["status"],
                    "transferred": fpy(f.get("transferred") or {}),
                    "monitoring transferred": amounts(m, "transferred")}))
                await asyncio.sleep(0.01)

            for s in [*deliver_all]:
                await w.step(s)
            await snapshot()
            for s in life:
                await w.step(s)
                for d in deliver_all:
                    await w.step(d)
                await snapshot()
            assert [s["funding"] for _, s in seen] == [
                "screened-eligible", "approved", "on-going", "on-going", "suspended",
                "on-going", "on-going", "on-going", "withdrawn"]
            for instant, then in seen:
                i = as_of_view(await w.intake.get(pid), instant)
                f = await w.funding.programme_as_of(pid, instant)
                m = await w.monitoring.programme_as_of(pid, instant)
                assert i and f and m
                now = {"intake": i["status"], "funding": f["status"],
                       "monitoring": m["status"],
                       "transferred": {k: v for k, v in f["transferred"].items() if v},
                       "monitoring transferred": amounts(m, "transferred")}
                assert now == then, (instant, now, then)
            before = await w.funding.programme_as_of(pid, datetime(2000, 1, 1, tzinfo=UTC))
            assert before is None  # it did not exist yet
        finally:
            await w.close()

    asyncio.run(scenario())
