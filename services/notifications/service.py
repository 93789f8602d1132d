"""Notifications' use cases: facts become notices (once each), and the dispatcher sends the
webhook and e-mail ones with retries, backoff and a circuit breaker per endpoint."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.notifications.channels import DeliveryError, Senders
from services.notifications.domain import (
    CircuitBreaker,
    Notice,
    Programme,
    backoff,
    channels,
    message_for,
    programme_view,
)
from services.notifications.store import NotificationsStore
from shared import topics
from shared.consumer import Incoming, Rejection, apply_each, programmes_of
from shared.contracts import REGISTRY
from shared.contracts.funding import (
    AllocationMade,
    ContributionDeposited,
    ContributionPledged,
    FundsRefunded,
    FundsTransferred,
)
from shared.contracts.intake import ProgrammeSubmitted
from shared.contracts.monitoring import ReportOverdue
from shared.contracts.notifications import (
    NotificationDelivered,
    NotificationFailed,
    NotificationRead,
    NotificationRequeued,
    NotificationRetrying,
)
from shared.envelope import utcnow
from shared.logging import get_logger
from shared.rebuild import Plan, runs
from shared.runtime import keep_running
from shared.store import UnitOfWork, is_duplicate

log = get_logger("mptf.notifications")
FACTS_CONSUMER = "notifications.facts"


# Facts that name no recipients of their own: without the programme (its PUNOs, its
# countries) nobody can be addressed, so they wait for the programme's submission.
SELF_ADDRESSED = {ProgrammeSubmitted.TYPE, FundsTransferred.TYPE, FundsRefunded.TYPE,
                  ContributionDeposited.TYPE, ContributionPledged.TYPE, ReportOverdue.TYPE}


async def notify(store: NotificationsStore, uow: UnitOfWork, fact_id: str, fact_type: str,
                 ev: Any, traceparent: str | None, digest_hour: int, at: datetime) -> int:
    """Record the notices a fact causes (each once), as of the fact's time `at`. Everyone
    it concerns gets an inbox notice, registered or not (contributors whose money it
    concerns, the RC office, the FMU, the PUNOs): the directory adds webhook and e-mail
    where they are registered. Returns how many of its new notices wait for the dispatcher
    (webhook and e-mail)."""
    pid = getattr(ev, "programme_id", None)
    msg = message_for(ev, await store.programme(uow, pid))
    if msg is None or not msg.recipients:
        return 0
    recipients = list(msg.addressed())
    contacts = await store.contacts(uow, recipients)
    data = ev.model_dump(mode="json")
    notices = [Notice(fact_id, fact_type, pid, r, ch, msg.subject, msg.body, msg.action,
                      data if ch != "inbox" else None)
               for r in recipients for ch in channels(contacts.get(r), fact_type)]
    return await store.record(uow, notices, contacts, at, digest_hour, traceparent)


async def addressees(events: list[Incoming],
                     programme: Callable[[str | None], Awaitable[Programme | None]]
                     ) -> tuple[list[str], list[Programme]]:
    """Whom a batch's facts address, as far as `programme` knows their programmes (a
    submission in the batch stands for its programme), and the programmes that said so:
    their directory entries are then read in one query. notify() still reads any it finds
    missing (a programme the batch itself changes)."""
    codes: dict[str, None] = {}
    submitted: dict[str, Programme] = {}
    known: dict[str, Programme] = {}
    for inc in events:
        ev: Any = inc.event
        pid = getattr(ev, "programme_id", None)
        if isinstance(ev, ProgrammeSubmitted):
            p: Programme | None = submitted.setdefault(
                pid, Programme.from_doc(programme_view(ev)))
        else:
            p = submitted.get(pid) or await programme(pid)
        if p is not None:
            known[p.programme_id] = p
        msg = message_for(ev, p)
        if msg is not None:
            codes.update(dict.fromkeys(msg.addressed()))
    return list(codes), list(known.values())


async def read_programmes(store: NotificationsStore, uow: UnitOfWork, events: list[Incoming]
                          ) -> None:
    """The batch's programmes and the directory entries of whom its facts address, cached in
    the transaction. The entries that the programmes as this process last read them
    (store.recent) address are read while the programmes are: the directory is
    configuration, never written by a transaction of facts, so a read outside it a moment
    earlier answers as one inside would. Those it did not guess are read once the
    programmes are known (a round trip more, as there was always)."""
    guess, _ = await addressees(events, store.recent_programme)
    if guess:
        loaded, found = await asyncio.gather(
            programmes_of()(uow, events), store.read_contacts(guess),
            return_exceptions=True)  # (neither left running if the other fails)
        for x in (loaded, found):
            if isinstance(x, BaseException):
                raise x
        assert isinstance(found, dict)
        uow.docs("directory").seed(guess, found)
    else:
        await programmes_of()(uow, events)
    codes, programmes = await addressees(events, lambda pid: store.programme(uow, pid))
    for p in programmes:
        store.recent.put(p)
    await store.contacts(uow, codes)
    await store.load_parked(uow, [inc.event.programme_id for inc in events
                                  if isinstance(inc.event, ProgrammeSubmitted)])


async def handle_facts(store: NotificationsStore, batch: list[Incoming], *, digest_hour: int,
                       wake: asyncio.Event | None = None) -> list[Rejection]:
    """One transaction per batch: redelivered facts are skipped; each notice is recorded once
    (its id is fact + recipient + channel). Facts on different topics arrive in no set
    order: one about a programme not yet known is parked, and notified from when the
    programme's submission arrives. The dispatcher is woken when the batch queued webhook or
    e-mail notices; inbox notices need nothing more."""
    queued = 0

    async def apply(uow: UnitOfWork, inc: Incoming) -> None:
        nonlocal queued
        ev: Any = inc.event
        pid = getattr(ev, "programme_id", None)
        # the fact's own time and trace: the same notices when replayed (shared.rebuild)
        at, trace = inc.envelope.time, inc.envelope.traceparent
        if isinstance(ev, AllocationMade):
            await store.add_contributors(uow, pid, [f.contributor for f in ev.funded_by])
        if isinstance(ev, ProgrammeSubmitted):
            await store.remember_programme(uow, programme_view(ev))
        elif pid and inc.type not in SELF_ADDRESSED and not await store.programme(uow, pid):
            await store.park(uow, inc.id, inc.type, pid, ev.model_dump(mode="json"), trace,
                             at)
            return
        queued += await notify(store, uow, inc.id, inc.type, ev, trace, digest_hour, at)
        if isinstance(ev, ProgrammeSubmitted):
            parked = await store.unpark(uow, pid)
            if not careful:  # a parked fact has made no notice yet (see expect_new)
                store.expect_new(uow, [p["_id"] for p in parked])
            for p in parked:
                fact = REGISTRY[p["type"]].model.model_validate(p["data"])
                queued += await notify(store, uow, p["_id"], p["type"], fact,
                                        p.get("traceparent"), digest_hour,
                                        p.get("at") or utcnow())

    careful = False  # look each notice up before making it (see NotificationsStore.expect_new)

    async def preload(uow: UnitOfWork, events: list[Incoming]) -> None:
        await read_programmes(store, uow, events)
        if not careful:
            store.expect_new(uow, [i.id for i in events])

    try:
        rejections = await apply_each(store, FACTS_CONSUMER, batch, apply, preload)
    except (BulkWriteError, DuplicateKeyError) as e:
        if not is_duplicate(e):
            raise
        # a fact notified before came again after its inbox record expired: nothing of the
        # failed attempt was committed; this time each notice is looked up first
        log.info("facts_seen_before", facts=len(batch), detail=str(e)[:200])
        careful, queued = True, 0
        rejections = await apply_each(store, FACTS_CONSUMER, batch, apply, preload)
    if queued and wake is not None:
        wake.set()
    return rejections


class Dispatcher:
    """Sends due webhook and e-mail deliveries. Each group is sent concurrently with the
    others, so a slow or dead endpoint never holds up other recipients."""

    def __init__(self, store: NotificationsStore, senders: Senders, *, max_attempts: int,
                 backoff_base: float, backoff_cap: float, lease_seconds: float,
                 breaker: CircuitBreaker, batch: int = 200, poll: float = 0.5,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.senders, self.breaker = store, senders, breaker
        self.max_attempts, self.backoff_base, self.backoff_cap = (max_attempts, backoff_base,
                                                                  backoff_cap)
        self.lease, self.batch, self.poll, self.clock = lease_seconds, batch, poll, clock
        # the replica's member id: a dead replica's claims are handed back when it is reaped
        # (NotificationsStore.orphaned), not after the lease
        self.owner = store.members.owner
        self.wake = asyncio.Event()

    async def run_once(self) -> int:
        now = self.clock()
        docs = await self.store.claim_due(self.owner, now, self.batch, self.lease)
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for d in docs:  # digests go together per recipient and channel
            key = (d["recipient"], d["channel"], "digest" if d.get("digest") else d["_id"])
            groups[key].append(d)
        await asyncio.gather(*(self._send(k[0], k[1], g) for k, g in groups.items()))
        return len(docs)

    async def _send(self, recipient: str, channel: str, docs: list[dict[str, Any]]) -> None:
        now = self.clock()
        contact = await self.store.contact(recipient)
        if contact is None or (channel == "webhook" and not contact.webhook_url) or (
                channel == "email" and not contact.email):
            await self.store.failed(docs, self.owner, now, "the recipient has no such "
                                    "contact point any more", 1, now)
            return
        endpoint = self.senders.endpoint(channel, contact)
        mono = asyncio.get_running_loop().time()
        if not self.breaker.allow(endpoint, mono):
            wait = (self.breaker.reopens_at(endpoint) or mono) - mono
            await self.store.release(docs, self.owner, now + timedelta(seconds=max(wait, 0.1)))
            return
        try:
            await self.senders.send(channel, contact, docs)
        except DeliveryError as e:
            self.breaker.failure(endpoint, asyncio.get_running_loop().time())
            attempt = max(d.get("attempts", 0) for d in docs) + 1
            done = self.clock()  # outcomes carry the time they happened
            due = done + timedelta(seconds=backoff(attempt, self.backoff_base, self.backoff_cap))
            died = await self.store.failed(docs, self.owner, done, str(e), self.max_attempts,
                                           due)
            log.warning("delivery_failed", recipient=recipient, channel=channel,
                        attempt=attempt, error=str(e)[:200], dead=died,
                        programme_id=docs[0].get("programme_id"))
            return
        self.breaker.success(endpoint)
        await self.store.delivered(docs, self.owner, self.clock())

    async def _idle(self, sent: int) -> None:
        """After a round that sent something, go again at once; else wait for new notices
        (or the poll interval, for retries that fall due)."""
        if sent:
            return
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.poll)

    async def run(self) -> None:
        await keep_running("dispatcher", self.run_once, self._idle, cap=30)


# -- rebuilt from the log (shared.rebuild; `mptf rebuild notifications`) ----------------------
OWN_FACTS_CONSUMER = "notifications.own-facts"
FOREIGN = frozenset(c.type for c in REGISTRY.values()
                    if c.topic in (topics.PROGRAMMES, topics.FUNDING, topics.MONITORING))
OUTCOMES = (NotificationDelivered, NotificationRetrying, NotificationFailed,
            NotificationRequeued, NotificationRead)


async def project(store: NotificationsStore, batch: list[Incoming]) -> list[Rejection]:
    """The others' facts as the live consumer makes notices of them (at the facts' times),
    and our own facts (each delivery's outcomes, requeues and read marks) as the store code
    that made them wrote them; in the batch's order, run by run."""
    digest_hour = store.settings.digest_hour_utc  # type: ignore[attr-defined]
    out: list[Rejection] = []
    for own, run in runs(batch, own=lambda i: isinstance(i.event, OUTCOMES),
                         wanted=lambda i: i.type in FOREIGN or isinstance(i.event, OUTCOMES)):
        if own:
            out += await apply_each(store, OWN_FACTS_CONSUMER, run,
                                    lambda uow, inc: store.outcome(uow, inc.event))
        else:
            out += await handle_facts(store, run, digest_hour=digest_hour)
    return out


# the directory (contact points and their webhook secrets) is configuration, never
# published: a rebuild carries it over from the live database, and makes the rest anew
REBUILD = Plan(topics=(topics.PROGRAMMES, topics.FUNDING, topics.MONITORING,
                       topics.NOTIFICATIONS),
               project=project,  # type: ignore[arg-type]
               read_models=("programmes", "deliveries"), carried=("directory",))
