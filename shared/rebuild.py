"""A service rebuilt from the log (`mptf rebuild <service>`): its read models made again, in a
fresh database, from the fact topics alone.

The facts are kept for good (shared.topics); commands (inbound topics, HTTP) are not, and
need not be: whatever a command changed, the service recorded as one of its own facts. So a
service's state is a function of facts: its own, each *projected* (the same store code that
wrote the state when the fact was made, given the fact instead of the command), and the other
services' facts it reads, applied by the handlers that consume them live. Handlers are
deterministic under replay: the time they record is the fact's own, never the wall clock's,
and lists that several topics feed (histories, timelines) are kept in the facts' own order
(`chronological`), not in the order they happened to arrive.

A rebuild reads every partition of the service's `Plan.topics` from the first record to the
end it found on starting (a consumer without a group: nobody's offsets move), merges the
partitions by the facts' times (each partition's own order kept), and applies them in
batches through `shared.consumer.apply_each` with the live consumers' names, so the rebuilt
inbox knows what it has applied: a service switched to the rebuilt database does not apply
a fact twice when its consumer group redelivers it. Nothing is published: a replaying
unit of work writes no outbox (`UnitOfWork.replaying`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.consumer import Incoming, Rejection
from shared.contracts import REGISTRY
from shared.envelope import decode
from shared.errors import PermanentMessageError
from shared.store import Aggregate, Store, decimals

Project = Callable[[Store, list[Incoming]], Awaitable[list[Rejection]]]


@dataclass(frozen=True)
class Plan:
    """What a service is rebuilt from: the fact topics it reads and writes (bare names,
    without the deployment's prefix), the function applying a batch of their facts, the
    collections that are its read models (what the rebuild makes again and compares), and
    those that are configuration, not facts (carried over from the live database first);
    `unfacted`: fields of read models (by collection) that are the service's own bookkeeping
    of when it does things, not made from facts: a rebuild makes them afresh and `compare`
    leaves them out; `counters`: read models that are a store's counters (Aggregate),
    compared by value (a counter at zero is as none)."""

    topics: tuple[str, ...]
    project: Project
    read_models: tuple[str, ...]
    carried: tuple[str, ...] = ()
    unfacted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    counters: tuple[str, ...] = ()


async def carry(live: Any, target: Any, collections: Iterable[str]) -> int:
    """Copy configuration collections from the live database; returns how many documents."""
    n = 0
    for name in collections:
        docs = await live[name].find().to_list(None)
        if docs:
            await target[name].insert_many(docs)
        n += len(docs)
    return n


@dataclass
class Report:
    records: int = 0  # read from the topics
    applied: int = 0  # facts applied
    undecodable: list[str] = field(default_factory=list)  # topic:partition:offset reason
    refused: list[str] = field(default_factory=list)  # facts the rules refused (as live)


def chronological(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """History or timeline entries in the order of the facts' own times (to the store's
    millisecond), then by fact id: the same list whatever order the facts arrived in. Entries
    without a fact id (one transaction's own steps) keep their order among themselves."""

    def key(e: dict[str, Any]) -> tuple[Any, ...]:
        at = e.get("at")
        ms = (int(at.timestamp() * 1000) if isinstance(at, datetime) else 0)
        return ms, e.get("fact_id") or e.get("id") or ""

    return sorted(entries, key=key)


def runs(batch: list[Incoming], *, own: Callable[[Incoming], bool],
         wanted: Callable[[Incoming], bool]) -> Iterator[tuple[bool, list[Incoming]]]:
    """The facts of a batch a service applies (`wanted`), in their order, as runs of its own
    facts (`own`: projected) and of the others' (applied by the live consumer)."""
    for mine, run in itertools.groupby((i for i in batch if wanted(i)), key=own):
        yield mine, list(run)


async def read_log(bootstrap: str, topics: Iterable[str], auth: dict[str, Any], *,
                   max_bytes: int = 1 << 20,
                   progress: Callable[[int, int], None] | None = None
                   ) -> tuple[list[Incoming], Report]:
    """Every record of `topics` from the first to the end found now, decoded; merged across
    partitions by the facts' times, each partition's order kept."""
    from aiokafka import AIOKafkaConsumer

    report = Report()
    topics = list(topics)
    # subscribed without a group, a consumer is assigned every partition of its topics
    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest", **auth)
    await c.start()
    parts: list[list[Incoming]] = []
    try:
        tps = sorted(c.assignment())
        if not tps:
            return [], report
        await c.seek_to_beginning(*tps)
        start = await c.beginning_offsets(tps)
        end = await c.end_offsets(tps)
        total = sum(end[tp] - start[tp] for tp in tps)
        by_tp: dict[Any, list[Incoming]] = {tp: [] for tp in tps}
        done = 0
        while [tp for tp in tps if await c.position(tp) < end[tp]]:
            for tp, recs in (await c.getmany(timeout_ms=500, max_records=5000)).items():
                for r in recs:
                    if r.offset >= end[tp]:
                        continue
                    done += 1
                    inc = _decode(r, max_bytes, report)
                    if inc is not None:
                        by_tp[tp].append(inc)
            if progress:
                progress(min(done, total), total)
        report.records = done
        parts = list(by_tp.values())
    finally:
        await c.stop()
    return merge(parts), report


def merge(logs: Iterable[list[Incoming]]) -> list[Incoming]:
    """Facts of several logs (partitions) in one order: each key's facts in their log's
    order (the order they were committed: shared.store.UnitOfWork._flush), the keys' streams
    merged by the facts' times. A log is not in time order across its keys (each key's facts
    are published in order by the relay holding the key's shard, the shards by different
    relays), so each key's stream is merged on its own, on the latest time it has reached."""
    streams: dict[tuple[int, str | None], list[tuple[datetime, int, Incoming]]] = {}
    n = 0
    for i, log in enumerate(logs):
        for inc in log:
            stream = streams.setdefault((i, inc.envelope.subject), [])
            at = max(inc.envelope.time, stream[-1][0]) if stream else inc.envelope.time
            stream.append((at, n, inc))
            n += 1
    return [inc for _, _, inc in heapq.merge(*streams.values(), key=lambda x: x[:2])]


def _decode(rec: Any, max_bytes: int, report: Report) -> Incoming | None:
    where = f"{rec.topic}:{rec.partition}:{rec.offset}"
    try:
        env, data = decode(rec.headers, rec.value, max_bytes=max_bytes)
        contract = REGISTRY.get(env.type)
        if contract is None:
            raise PermanentMessageError("unknown-type", env.type)
        return Incoming(rec, env, contract.model.model_validate(data))
    except (PermanentMessageError, ValidationError) as e:
        report.undecodable.append(f"{where} {type(e).__name__}: {str(e)[:200]}")
        return None


async def replay(store: Store, plan: Plan, facts: list[Incoming], *, batch: int = 500,
                 report: Report | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Report:
    """Apply `facts` (in their order) to `store`, `batch` per transaction, publishing
    nothing."""
    report = report or Report()
    store.replaying = True
    await store.ensure_indexes()
    for n in range(0, len(facts), batch):
        chunk = facts[n:n + batch]
        for r in await plan.project(store, chunk):
            report.refused.append(f"{r.incoming.type} {r.incoming.id}: {r.reason} {r.detail}")
        report.applied += len(chunk)
        if progress:
            progress(min(n + batch, len(facts)), len(facts))
        await asyncio.sleep(0)
    return report


async def compare(live: Any, rebuilt: Any, plan: Plan, *, limit: int = 20) -> list[str]:
    """The differences between two databases' read models (`plan`'s), document by document
    (empty: the same), but for the `unfacted` fields. Each difference names the collection,
    the document and the first field that differs."""
    out: list[str] = []
    for name in plan.read_models:
        skip = plan.unfacted.get(name, ())
        projection = {f: 0 for f in skip} or None
        # amounts by value (Decimal128 keeps its exponent: 1.50 and 1.5 are the same money)
        shape = Aggregate.stored if name in plan.counters else (lambda d: d)
        a = {d["_id"]: decimals(shape(d)) async for d in live[name].find({}, projection)}
        b = {d["_id"]: decimals(shape(d)) async for d in rebuilt[name].find({}, projection)}
        for k in sorted(set(a) | set(b), key=str):
            if len(out) >= limit:
                return out
            if k not in b:
                out.append(f"{name} {k}: not rebuilt")
            elif k not in a:
                out.append(f"{name} {k}: rebuilt but not live")
            elif a[k] != b[k]:
                out.append(f"{name} {k}: {_first_difference(a[k], b[k])}")
    return out


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k, _NONE) != b.get(k, _NONE):
                return _first_difference(a.get(k, _NONE), b.get(k, _NONE), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path.lstrip('.') or '(document)'}: live {a!r:.300} rebuilt {b!r:.300}"


_NONE = "(absent)"
