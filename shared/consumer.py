"""Consuming facts, the same way in every service.

`subscribe()` registers a FastStream batch subscriber with a deliberate delivery policy:

* Offsets are committed only after the batch's effects are durable (AckPolicy.NACK_ON_ERROR:
  success commits, an exception seeks back so the batch is redelivered). FastStream's Kafka
  default, ACK_FIRST, commits before the handler runs and would lose work on a crash.
  The commit names the batch's own offsets (the record after each partition's last), not
  the consumer's position: see read-ahead below. It goes out on a task of its own, not
  awaited by the batch, merged with later batches' while one is under way; a clean stop
  waits for it.
* Read-ahead: while a batch's transaction waits on the store, the records the consumer has
  already fetched are taken and decoded, so the process's CPU and the store work at once
  instead of by turns (the next batch is then handed over already decoded). They are not
  committed with the batch; if the batch fails, each of their partitions is sought back to
  its first record with the batch's own.
* Each record is decoded here (envelope, contract lookup, pydantic validation). A record that
  can never succeed goes to `<topic>.dlq` with its reason and original bytes and headers, and
  the consumer moves on: no crash loop.
* The service's handler receives the valid events of a batch at once, so it can make one
  store transaction per batch; it dedupes with `UnitOfWork.claim` in that transaction.
* A transient failure (store or broker unreachable) is retried with exponential backoff.
  An unexpected exception is retried one record at a time; the record that still fails is
  dead-lettered with the error as its reason.
* Every record gets a consumer span continuing the producer's trace (W3C traceparent).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from faststream import AckPolicy
from faststream._internal.endpoint.subscriber.mixins import TasksMixin
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import AckStatus
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError
from pymongo.errors import PyMongoError

from shared import topics as T
from shared.contracts import REGISTRY
from shared.contracts.base import RAW_CHECKED, raw_json_safe
from shared.envelope import Envelope, decode
from shared.errors import MptfError, PermanentMessageError
from shared.kafka import DeadLetters, service_client
from shared.logging import get_logger
from shared.metrics import BATCHES_RUN_AGAIN, CONSUMER_LAG, EVENTS_CONSUMED, HANDLER_SECONDS
from shared.settings import ServiceSettings
from shared.store import Store, UnitOfWork, is_duplicate, is_transient
from shared.telemetry import context_from, tracer

log = get_logger("mptf.consumer")



@dataclass
class Incoming:
    """One decoded, validated event from a consumed record."""

    record: ConsumerRecord
    envelope: Envelope
    event: BaseModel
    span: trace.Span | None = None

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def subject(self) -> str | None:
        return self.envelope.subject

    @property
    def digest(self) -> str:
        """What the event says, as a digest: a redelivery has the same; another event
        under a reused id has not."""
        return hashlib.sha256(self.type.encode() + b"\0" + self.event.model_dump_json(
            ).encode()).hexdigest()[:32]

    @property
    def traceparent(self) -> str | None:
        """The traceparent of this record's consumer span: facts emitted because of it carry
        it on, so the programme's trace continues into the next service."""
        if self.span is None:
            return self.envelope.traceparent
        ctx = self.span.get_span_context()
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


@dataclass
class Rejection:
    """A handler's verdict that an event can never succeed: it is dead-lettered. `value`
    replaces the original bytes only where they must not be kept (personal data)."""

    incoming: Incoming
    reason: str
    detail: str = ""
    value: bytes | None = None


Handler = Callable[[list[Incoming]], Awaitable[Iterable[Rejection] | None]]

# how long decoding ahead runs between two turns of the event loop: briefly, so the batch
# under way (whose handler yields every 32 events) keeps most of the CPU while it computes,
# and is answered as soon as the store replies
READ_AHEAD_TURN_S = 0.0005

# a record that can never succeed: (record, reason, detail, the bytes kept instead or None)
Dead = tuple[ConsumerRecord, str, str, bytes | None]


@dataclass
class Decoded:
    """A batch's records read: the events to handle, the records to dead-letter, and how
    many were facts this subscription does not act on, per topic."""

    events: list[Incoming] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # their topics


@dataclass
class _Backoff:
    failures: int = 0
    cap: float = 10.0

    async def sleep(self) -> None:
        self.failures += 1
        delay = min(self.cap, 0.1 * 2 ** min(self.failures, 10))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))  # jitter

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Subscription:
    topic: str
    name: str
    accepts: frozenset[str]
    handler: Handler
    settings: ServiceSettings
    dead_letters: Callable[[], DeadLetters]
    strict_types: bool = True
    backoff: _Backoff = field(default_factory=_Backoff)
    # records fetched by read_ahead and not yet handed to FastStream (PromptBatchSubscriber)
    ahead: tuple[ConsumerRecord, ...] = field(default=(), init=False, repr=False)
    # records handed over already decoded: (those records, what they decoded to)
    predecoded: tuple[tuple[ConsumerRecord, ...], Decoded] | None = field(
        default=None, init=False, repr=False)
    ahead_of: Any = field(default=None, init=False, repr=False)  # the consumer that read them
    # offsets of handled batches not yet committed (the record after each partition's
    # last), of the consumer that read them; a task of their own commits them (commit)
    to_commit: dict[TopicPartition, int] = field(default_factory=dict, init=False, repr=False)
    to_commit_of: Any = field(default=None, init=False, repr=False)
    committing: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    topics: tuple[str, ...] = field(default=(), init=False)  # (set by subscribe())
    replaces: tuple[str, ...] = field(default=(), init=False)  # subscriptions it took over

    def _decode(self, rec: ConsumerRecord) -> Incoming | None:
        env, data = decode(rec.headers, rec.value, max_bytes=self.settings.max_body_bytes)
        sender = T.inbound_sender(rec.topic)
        if sender is not None and env.source != f"{T.ENTITY_URN}{sender}":
            # only `sender`'s principal can write this topic (shared.kafka_acl): a record
            # claiming another source is a forgery, whoever it claims to be
            raise PermanentMessageError(
                "forbidden", f"written on {sender}'s own topic but claims source "
                f"{env.source[:100]!r}; it must be {T.ENTITY_URN}{sender}")
        contract = REGISTRY.get(env.type)
        if contract is None:
            raise PermanentMessageError("unknown-type", f"no contract for type {env.type!r}")
        if env.type not in self.accepts:
            if self.strict_types:
                raise PermanentMessageError(
                    "unexpected-type", f"{env.type} is not accepted on {self.topic}")
            return None  # a fact this service does not act on
        try:
            # bytes found safe as a whole need no search value by value (shared.contracts.base)
            event = contract.model.model_validate(data, context={RAW_CHECKED: True} if (
                raw_json_safe(rec.value)) else None)
        except ValidationError as e:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in e.errors(include_url=False, include_input=False))
            reason = ("personal-data" if any(x["type"] == "personal_data" for x in e.errors())
                      else "invalid")
            raise PermanentMessageError(reason, detail) from e
        return Incoming(rec, env, event)

    def decode_one(self, rec: ConsumerRecord, into: Decoded) -> None:
        try:
            inc = self._decode(rec)
        except PermanentMessageError as e:
            into.dead.append((rec, e.reason, e.detail, None))
            return
        except Exception as e:
            # decoding does no I/O: what fails here fails at every delivery, so the
            # record is dead-lettered rather than retried for ever
            log.exception("decode_failed", topic=rec.topic, partition=rec.partition,
                          offset=rec.offset)
            into.dead.append((rec, "invalid", f"could not be decoded: {e!r}"[:500], None))
            return
        if inc is None:
            into.ignored.append(rec.topic)
        else:
            into.events.append(inc)

    # -- read-ahead: the next batch decoded while this one's transaction waits on the store --
    async def read_ahead(self, consumer: Any) -> None:
        """Take the records the consumer has already fetched (no wait) and decode them, a
        few at a time so the transaction under way is answered as soon as the store
        replies. Best effort: a consumer that cannot give any now gives them at the next
        poll."""
        if self.ahead or self.predecoded or not self.settings.consumer_read_ahead:
            return
        await asyncio.sleep(0)  # the batch's handler first, to its first wait on the store
        try:
            got = await consumer.getmany(timeout_ms=0, max_records=self.settings.consumer_batch_max)
        except (KafkaError, ConsumerStoppedError):
            return
        except Exception as e:  # (the subscriber's own poll logs and retries these)
            log.warning("read_ahead_failed", topic=self.topic, error=repr(e)[:300])
            return
        records = tuple(r for rs in got.values() for r in rs)
        if not records:
            return
        self.ahead = records  # (taken from the consumer: sought back if this batch fails)
        self.ahead_of = consumer
        decoded = Decoded()
        turn = 0.0
        for rec in records:
            if time.perf_counter() >= turn:
                await asyncio.sleep(0)
                turn = time.perf_counter() + READ_AHEAD_TURN_S
            self.decode_one(rec, decoded)
        self.predecoded = (records, decoded)

    def take_ahead(self, consumer: Any) -> tuple[ConsumerRecord, ...]:
        """The records read ahead, for the subscriber to hand over as its next batch: those
        of partitions `consumer` (the one that read them) still has. Records of a partition
        lost in a rebalance meanwhile are its new owner's; a consumer made anew (the broker
        reconnected) starts from the committed offsets and reads them again itself."""
        records, self.ahead = self.ahead, ()
        if not records:
            return ()
        if consumer is not self.ahead_of:
            self.predecoded = None
            return ()
        assigned = consumer.assignment()
        kept = tuple(r for r in records if TopicPartition(r.topic, r.partition) in assigned)
        if len(kept) == len(records):
            return records  # (the very tuple decoded ahead: process() knows it by identity)
        self.predecoded = None  # (what is left is decoded as it is handled)
        return kept

    def forget_ahead(self, consumer: Any) -> None:
        """This batch failed: the records read ahead go back to the consumer (each of their
        partitions sought to its first one), to come again after the batch's own."""
        records, self.ahead, self.predecoded = self.ahead, (), None
        for tp, offset in _offsets(records, min).items():
            with contextlib.suppress(KafkaError):  # (a partition revoked meanwhile)
                consumer.seek(tp, offset)

    def commit(self, last: dict[TopicPartition, int], consumer: Any) -> None:
        """Have this batch's offsets committed (the record after each partition's `last`),
        after the batches before it: at once if no commit is under way, else with the next
        one, together with those of the batches handled meanwhile. Not awaited: the next
        batch is handled while the broker writes (a round trip and a write of its offsets
        log at every batch, at every hop of the pipeline). A commit that never happens (the
        process dies first) only has those records handled again, and the inbox knows them.
        Not the consumer's position: that is past the records read ahead."""
        if consumer is not self.to_commit_of:  # (a consumer made anew: its own offsets)
            self.to_commit, self.to_commit_of = {}, consumer
        for tp, off in last.items():
            self.to_commit[tp] = max(self.to_commit.get(tp, 0), off + 1)
        if self.committing is None or self.committing.done():
            self.committing = asyncio.create_task(self._commit_offsets(),
                                                  name=f"commit-{self.name}")

    async def _commit_offsets(self) -> None:
        """Commit what batches have offered, until nothing is left: of the partitions still
        assigned. A commit refused (a rebalance under way, the consumer stopping) is left:
        the partitions' next owner gets those records again, and the inbox knows them."""
        while self.to_commit:
            consumer, offsets, self.to_commit = self.to_commit_of, self.to_commit, {}
            try:
                assigned = consumer.assignment()
                if offsets := {tp: off for tp, off in offsets.items() if tp in assigned}:
                    await consumer.commit(offsets)
            except Exception as e:  # (Kafka's errors, a stopped consumer's): logged, left
                log.warning("offset_commit_failed", topic=self.topic, error=repr(e)[:300])

    async def flush_commits(self) -> None:
        """Wait until the offsets offered so far are committed (a clean stop)."""
        while self.committing is not None and not self.committing.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self.committing)

    async def process(self, records: tuple[ConsumerRecord, ...], consumer: Any) -> None:
        start = time.perf_counter()
        decoded: Decoded | None = None
        if self.predecoded is not None and self.predecoded[0] is records:
            decoded = self.predecoded[1]
        self.predecoded = None
        if decoded is None:
            decoded = Decoded()
            for rec in records:
                self.decode_one(rec, decoded)
        for topic in decoded.ignored:
            EVENTS_CONSUMED.labels(topic, "-", "ignored").inc()
        events, dead = decoded.events, list(decoded.dead)

        spans = self._open_spans(events)
        run = asyncio.ensure_future(self._run(events))
        try:
            await self.read_ahead(consumer)
            rejections = await run
        except BaseException as e:
            if not run.done():  # (read-ahead was cancelled: so is the batch)
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
            self.forget_ahead(consumer)
            for s in spans:
                s.set_status(Status(StatusCode.ERROR, repr(e)[:200]))
                s.end()
            if is_transient(e):
                log.warning("consume_transient_failure", topic=self.topic, error=repr(e),
                            attempt=self.backoff.failures + 1)
                await self.backoff.sleep()
                raise NackMessage() from e
            raise
        for s in spans:
            s.end()
        for r in rejections:
            dead.append((r.incoming.record, r.reason, r.detail, r.value))
        try:
            dl = self.dead_letters()
            for rec, reason, detail, value in dead:
                await dl.send(rec, reason, f"{self.name}: {detail}", value=value)
        except Exception as e:
            log.warning("dead_letter_failed", error=repr(e))
            self.forget_ahead(consumer)
            await self.backoff.sleep()
            raise NackMessage() from e
        self.backoff.reset()
        rejected = {id(r.incoming) for r in rejections}
        for inc in events:
            EVENTS_CONSUMED.labels(inc.record.topic, inc.type,
                                   "rejected" if id(inc) in rejected else "ok").inc()
        last = _offsets(records, max)  # (each partition's last record of the batch)
        self.commit(last, consumer)
        HANDLER_SECONDS.labels(self.topic, self.name).observe(time.perf_counter() - start)
        self._report_lag(last, consumer)

    async def _run(self, events: list[Incoming]) -> list[Rejection]:
        if not events:
            return []
        try:
            return list(await self.handler(events) or [])
        except Exception as e:
            if is_transient(e) or len(events) == 1:
                if len(events) == 1 and not is_transient(e):
                    log.exception("handler_failed", event_id=events[0].id,
                                  programme_id=events[0].subject)
                    return [Rejection(events[0], "handler-error", repr(e)[:500])]
                raise
            log.warning("batch_failed_retrying_singly", error=repr(e), size=len(events))
        out: list[Rejection] = []
        for inc in events:  # isolate the record that fails; transient errors propagate
            out += await self._run([inc])
        return out

    def _open_spans(self, events: list[Incoming]) -> list[trace.Span]:
        spans = []
        for inc in events:
            s = tracer().start_span(
                f"consume {inc.type}", context=context_from(inc.envelope.traceparent,
                                                            inc.envelope.tracestate),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "kafka",
                            "messaging.destination.name": inc.record.topic,
                            "messaging.kafka.partition": inc.record.partition,
                            "messaging.kafka.offset": inc.record.offset,
                            "mptf.handler": self.name, "mptf.event_type": inc.type,
                            "mptf.event_id": inc.id,
                            "mptf.programme_id": inc.subject or ""})
            inc.span = s
            spans.append(s)
        return spans

    def _report_lag(self, last: dict[TopicPartition, int], consumer: Any) -> None:
        for tp, off in last.items():
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: S112 - lag is best effort
                continue
            if hw is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, hw - off - 1))


def _offsets(records: Iterable[ConsumerRecord], pick: Callable[[int, int], int]
             ) -> dict[TopicPartition, int]:
    """Each partition's first (pick=min) or last (pick=max) offset among `records`."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        out[tp] = pick(out.get(tp, r.offset), r.offset)
    return out


Preload = Callable[[UnitOfWork, list[Incoming]], Awaitable[None]]


def programmes_of(collection: str = "programmes") -> Preload:
    """A preload for handlers whose events each touch their programme's document: the
    batch's programme documents in one query (see `UnitOfWork.docs`)."""

    async def preload(uow: UnitOfWork, events: list[Incoming]) -> None:
        await uow.docs(collection).load(
            getattr(i.event, "programme_id", None) or i.subject for i in events)

    return preload


class _Redo(Exception):
    """An event refused after it wrote to the store: the transaction is aborted and run
    again without it, so its partial effects never commit."""


async def apply_each(store: Store, consumer: str, batch: list[Incoming],
                     apply: Callable[[UnitOfWork, Incoming], Awaitable[None]],
                     preload: Preload | None = None) -> list[Rejection]:
    """The usual way to consume a batch: one transaction; redeliveries skipped; `preload`
    reads what the fresh events need in one go; each fresh event applied; an event the rules
    refuse (an MptfError) is dead-lettered with its code and not marked seen, and none of
    its effects stay: what it changed in the transaction's buffers is undone, and if it had
    already written to the store the transaction is aborted and run again without it. The
    rest are marked seen with their effects. Every event's effects are all or nothing.

    The batch's events are first taken to be new, without reading the inbox (a round trip
    per batch, at every hop of the pipeline): redeliveries are rare (a restart, a
    rebalance, a relay that published twice). One that was processed before makes marking
    it seen fail on its unique inbox id (E11000), which aborts the whole transaction, so
    nothing of it is committed; the batch then runs again, reading the inbox first, and
    skips what was seen (or dead-letters an event id reused for other content)."""
    rejections: list[Rejection] = []
    refused: dict[str, Rejection] = {}  # refused after writing: left out of the rerun
    careful = False  # read the inbox first (after a redelivery was found the fast way)

    async def work(uow: UnitOfWork) -> None:
        rejections.clear()  # the transaction may run more than once
        seen = await uow.inbox_state(consumer, [i.id for i in batch]) if careful else {}
        fresh = {i.id for i in batch} - set(seen) - set(refused)
        if preload is not None and fresh:
            await preload(uow, [i for i in batch if i.id in fresh])
        done: dict[str, str] = {}  # id -> digest, in order
        for n, inc in enumerate(batch):
            if n % 32 == 31:  # a large batch's CPU work lets the process's other work run
                await asyncio.sleep(0)
            earlier = done.get(inc.id) or seen.get(inc.id)
            if earlier is not None and earlier != inc.digest:
                # a producer reused an event id for other content: never silently dropped
                rejections.append(Rejection(inc, "conflict", (
                    f"event id {inc.id} was already used for other content; "
                    "each event needs its own id")))
                continue
            if inc.id not in fresh or inc.id in done:
                continue
            mark = uow.savepoint()
            try:
                await apply(uow, inc)
            except MptfError as e:
                if is_transient(e.__cause__ or e):
                    raise
                detail = e.detail + "".join(
                    f"; {x.get('field', '')}: {x.get('reason', '')}" for x in e.errors)
                rejection = Rejection(inc, getattr(e, "reason", e.code), detail,
                                      getattr(e, "redacted", None))
                if not uow.rollback_to(mark):
                    refused[inc.id] = rejection
                    raise _Redo() from e
                rejections.append(rejection)
                continue
            done[inc.id] = inc.digest
        await uow.mark_seen(consumer, list(done), done)

    while True:
        try:
            await store.transaction(work)
        except _Redo:
            continue
        except PyMongoError as e:
            if careful or not is_duplicate(e):
                raise  # (a handler's own unique keys: its caller may know what to do)
            careful = True
            BATCHES_RUN_AGAIN.labels(consumer).inc()
            continue
        return [*rejections, *refused.values()]


async def _tolerant_parser(records: Any, original: Any) -> Any:
    """FastStream's parser decodes headers as strict UTF-8 and would fail (and redeliver, for
    ever) on a hostile header. Parse a sanitised copy, but keep the original records so the
    dead letter carries the exact bytes."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        recs = records if isinstance(records, tuple) else (records,)
        clean = tuple(dataclasses.replace(r, headers=[
            (k, v.decode("utf-8", "replace").encode() if isinstance(v, bytes) else v)
            for k, v in (r.headers or ())]) for r in recs)
        msg = await original(clean if isinstance(records, tuple) else clean[0])
        msg.raw_message = records
        return msg


async def _raw(msg: Any, original: Any = None) -> Any:
    """Decoder that leaves bytes alone: decoding (and dead-lettering) happens in `process`."""
    return None


# how long one poll of the broker waits for records when there are none (records that arrive
# meanwhile are handed over at once)
POLL_MS = 100


class PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber, without its idle sleep: after a poll that found nothing
    it sleeps as long again (`batch_timeout_ms`) before the next poll, so a record that
    arrives on an idle consumer waited up to that long (half of it on average) at every hop
    of the pipeline. Here the poll itself is the wait: it returns as soon as records come.
    Only a poll that came back empty early (no partitions assigned yet, a rebalance) sleeps
    for the rest of its time, so the loop never spins.

    FastStream's loop expects only Kafka's own errors from a poll, and ends on any other: the
    subscription would stop consuming without a word. Any other error here is logged and the
    poll tried again a second later (fetched data aiokafka cannot read is read leniently:
    shared.lenient_records)."""

    subscription: Subscription  # (set by subscribe())

    async def stop(self) -> None:
        # LogicSubscriber.stop (faststream 0.7.8, pinned) with the commits flushed between
        # the end of the consume loop (a batch under way waits up to the graceful timeout)
        # and the consumer's stop: the offsets of every batch handled are committed
        await TasksMixin.stop(self)
        await self.subscription.flush_commits()
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def get_msg(self, consumer: Any) -> tuple[ConsumerRecord, ...]:
        if ahead := self.subscription.take_ahead(consumer):
            return ahead  # read (and decoded) while the last batch's transaction ran
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            messages = await consumer.getmany(timeout_ms=self.batch_timeout_ms,
                                              max_records=self.max_records)
        except (KafkaError, ConsumerStoppedError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("poll_failed", error=repr(e)[:300])
            await asyncio.sleep(1.0)
            return ()
        if messages:
            return tuple(r for records in messages.values() for r in records)
        left = self.batch_timeout_ms / 1000 - (loop.time() - started)
        if left > 0:
            await asyncio.sleep(left)
        return ()


def group_of(settings: ServiceSettings, name: str) -> str:
    """The consumer group of a service's subscription `name`."""
    return f"{settings.group_id}.{name}"


def subscribe(broker: KafkaBroker, settings: ServiceSettings, *, topic: str | tuple[str, ...],
              name: str, accepts: Iterable[str], handler: Handler,
              dead_letters: Callable[[], DeadLetters], strict_types: bool = True,
              description: str = "", replaces: tuple[str, ...] = ()) -> Subscription:
    """A batch subscription of `topic` (several fact topics: one consumer and one handler for
    them all, so a service's facts about one programme are not written by two of its own
    transactions at once). `replaces`: the names of subscriptions it takes over, whose
    groups' offsets it starts from (carry_offsets)."""
    topics = (topic,) if isinstance(topic, str) else tuple(topic)
    if len(topics) > 1 and any(t in T.INBOUND for t in topics):
        raise ValueError("an inbound kind is subscribed by pattern, alone")
    full = tuple(settings.topic(t) for t in topics)
    sub = Subscription(",".join(full), name, frozenset(accepts), handler, settings,
                       dead_letters, strict_types)
    sub.topics, sub.replaces = full, replaces
    # an inbound kind is one topic per entity system: all of them, by pattern
    where: dict[str, Any] = ({"pattern": T.inbound_pattern(settings.topic(topics[0]))}
                             if topics[0] in T.INBOUND else {})

    subscriber = broker.subscriber(
        # topics are provisioned by the operators' tooling; services may not create them
        *(() if where else tuple(Topic(t, declare=False) for t in sub.topics)),
        **where,
        # one consumer group per subscription: handlers keep their own offsets, and one
        # joining does not make the service's other consumers rebalance
        group_id=group_of(settings, name),
        batch=True,
        max_records=settings.consumer_batch_max,
        batch_timeout_ms=POLL_MS,
        max_partition_fetch_bytes=settings.consumer_partition_fetch_bytes,
        fetch_max_bytes=settings.consumer_fetch_max_bytes,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw,
        parser=_tolerant_parser,
        title=f"{name}:{'+'.join(topics)}",
        description=description,
    )
    assert isinstance(subscriber, BatchSubscriber)
    subscriber.__class__ = PromptBatchSubscriber  # (same slots: get_msg and stop differ)
    subscriber.subscription = sub

    context = broker.context

    # No parameters: FastStream resolves a handler's context parameter (`msg: KafkaMessage`)
    # through fast_depends, which runs its resolver, a plain function, in a worker thread:
    # a thread's round trip for every batch, at every hop. The message is the context's.
    @subscriber
    async def _consume() -> None:
        msg = context.get_local("message")
        records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        await sub.process(records, msg.consumer)
        # process() committed the batch's own offsets: FastStream's ack would commit the
        # consumer's position, past the records read ahead
        msg.committed = AckStatus.ACKED

    return sub


async def carry_offsets(settings: ServiceSettings, sub: Subscription
                        ) -> dict[TopicPartition, int]:
    """A subscription that replaces others (one consumer for topics they read apart) starts
    where they stopped: before its group first joins, the offsets their groups committed on
    its topics are committed for it. Without this its new group would start at the topics'
    beginning and apply again the facts whose inbox entries have expired. Nothing to do once
    its group has offsets of its own (carried over before, or it has consumed). Returns what
    it committed. Raises when the broker cannot be asked (the caller's start-up retries);
    a commit refused because another replica's consumer has joined the group meanwhile is
    fine when that group now has offsets.

    It first lists the cluster's groups (ListGroups: no group coordinator needed). When none
    of the replaced groups is there (a new deployment, or their offsets have expired) there
    is nothing to carry and nothing more is asked: asking for a group's offsets has the
    broker find the group's coordinator, which on a new cluster waits for the offsets topic
    to be made (~0.35 s of a service's start-up)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    if not sub.replaces or not sub.topics:
        return {}
    group = group_of(settings, sub.name)
    opts = service_client(settings)
    admin = AIOKafkaAdminClient(**opts)

    async def has_offsets() -> bool:
        return any(o.offset >= 0 for o in
                   (await admin.list_consumer_group_offsets(group)).values())

    await admin.start()
    try:
        # (a group with committed offsets is listed, members or not, until they expire)
        listed = {g[0] for g in await admin.list_consumer_groups()}
        olds = [g for g in (group_of(settings, o) for o in sub.replaces) if g in listed]
        if not olds or (group in listed and await has_offsets()):
            return {}
        offsets: dict[TopicPartition, int] = {}
        for old in olds:
            for tp, o in (await admin.list_consumer_group_offsets(old)).items():
                if tp.topic in sub.topics and o.offset >= 0:  # (the lower: nothing skipped)
                    offsets[tp] = min(offsets.get(tp, o.offset), o.offset)
        if not offsets:
            return {}
        consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **opts)
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            await consumer.commit(offsets)
        except KafkaError as e:
            if not await has_offsets():
                raise
            log.info("consumer_offsets_carried_by_another", group=group, error=repr(e)[:200])
            return {}
        finally:
            await consumer.stop()
        log.info("consumer_offsets_carried_over", group=group, replaced=olds,
                 partitions=len(offsets))
        return offsets
    finally:
        await admin.close()
