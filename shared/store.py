"""The MongoDB store base: the only module that touches the driver.

Every service's store adapter subclasses `Store` and uses only API that PyMongo's native
async driver (the default) and motor share, so switching driver is the `MPTF_MONGO_DRIVER`
setting here and nothing else; tests/integration runs both. motor (deprecated as of
2026-05-14) runs PyMongo's synchronous driver on a thread pool: each command handed to a
thread and its answer back, the event loop and the pool's threads taking the GIL from each
other; the native driver awaits the socket on the event loop itself (a hop of the pipeline
at 8 programmes/s took 47-53 ms against motor's 57-62, docs/benchmarks.md).

State changes happen in a `UnitOfWork` inside one multi-document transaction that also
  * appends the events they cause to the `outbox` collection (transactional outbox), and
  * records the ids of the consumed events in `inbox` (idempotent consumer: one document
    per transaction holds the batch's ids, `consumer:event id` each, under a unique
    multikey index, so a redelivered event is seen as already processed, in the same
    atomic write as its effect; see `Store.settle_inbox` for the per-id documents of
    earlier releases).
Writes are batched where it pays: `UnitOfWork.docs(name)` loads the documents a Kafka batch
touches in one query, applies each event's update to them in memory (so the next event of the
batch sees it), and writes them all when the transaction commits: a few round trips per batch
instead of a few per message. Where the server takes client-level bulk writes (MongoDB 8.0's
`bulkWrite`), a transaction's closing writes (its documents, the consumed ids, the outbox
and its keys' `seq`) go together in one command, a collection's many by its own command
(`UnitOfWork._send_tail`); else one `bulk_write` per collection.
MongoDB documents transactions on replica sets (a one-node replica set is enough); writes use
w="majority", which on a replica set also implies the journal (writeConcernMajorityJournalDefault).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from bson import Decimal128, ObjectId
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel
from pymongo import (
    ASCENDING,
    DeleteOne,
    InsertOne,
    ReplaceOne,
    UpdateOne,
    WriteConcern,
    monitoring,
)
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from shared.contracts import contract_for
from shared.dec128 import d128, dec
from shared.envelope import Envelope, utcnow
from shared.errors import Conflict
from shared.lease import INBOX_SHAPE, Members
from shared.logging import get_logger
from shared.metrics import STORE_COMMANDS, STORE_SECONDS, TX_RETRIES
from shared.settings import ServiceSettings
from shared.telemetry import current_traceparent, tracer

T = TypeVar("T")
log = get_logger("mptf.store")

MAJORITY = WriteConcern(w="majority")
CLIENT_BULK_WIRE_VERSION = 25  # MongoDB 8.0: the client-level bulkWrite command
# a collection's closing writes in a transaction's client-level bulk write up to this many;
# more go by the collection's own command (UnitOfWork._send_tail)
CLIENT_BULK_GROUP = 10
OUTBOX_CHUNK = 500  # events per outbox document (well under the 16 MiB document limit)
# the outbox's one index: each shard's pending documents in `seq` order
OUTBOX_INDEX = [("shard", ASCENDING), ("sent_at", ASCENDING), ("seq", ASCENDING)]


class _CommandWatch(monitoring.CommandListener):
    """Each command sent to the store: counted (mptf_store_commands_total: round trips) and
    timed (mptf_store_command_seconds_total) by command and collection, and a CLIENT span
    (`find programmes`, `commitTransaction`, ...) under whatever span is current: a consumed
    batch's, an HTTP request's, the relay's. The listener is given to each client as it is
    made, so every command is seen whatever the order of start-up (the pymongo
    instrumentation's global listener reached only clients made after tracing was set up,
    which the services' stores are not)."""

    def __init__(self) -> None:
        self._open: dict[int, tuple[str, Any]] = {}  # request id -> (collection, span)

    def started(self, event: Any) -> None:
        target = event.command.get("collection" if event.command_name == "getMore"
                                   else event.command_name)
        collection = target if isinstance(target, str) else ""
        STORE_COMMANDS.labels(event.command_name, collection).inc()
        attributes = {"db.system.name": "mongodb", "db.namespace": event.database_name,
                      "db.operation.name": event.command_name}
        if collection:
            attributes["db.collection.name"] = collection
        if event.connection_id:
            attributes["server.address"] = str(event.connection_id[0])
            attributes["server.port"] = event.connection_id[1]
        self._open[event.request_id] = (collection, tracer().start_span(
            f"{event.command_name} {collection}".rstrip(), kind=SpanKind.CLIENT,
            attributes=attributes))

    def succeeded(self, event: Any) -> None:
        self._finish(event)

    def failed(self, event: Any) -> None:
        failure = event.failure or {}
        self._finish(event, error=str(failure.get("codeName") or failure.get("code")
                                      or "error"), message=str(failure.get("errmsg", "")))

    def _finish(self, event: Any, error: str | None = None, message: str = "") -> None:
        """Time the command and end its span (marked an error if it failed)."""
        collection, sp = self._open.pop(event.request_id, ("", None))
        STORE_SECONDS.labels(event.command_name, collection).inc(event.duration_micros / 1e6)
        if sp is None:
            return
        if error is not None:
            sp.set_attribute("error.type", error)
            sp.set_status(Status(StatusCode.ERROR, message[:200]))
        sp.end()


def retry_writes(url: str) -> dict[str, Any]:
    """The driver's one automatic retry of a write made outside a transaction (MongoDB's
    retryable writes): off, unless the URL says `retryWrites=true`. Every such write here
    is idempotent and retried by its own loop (the relay's deletes, heartbeats and leases,
    retention, migrations at start, a directory entry), and a commit is retried by the
    driver either way. A retryable write costs the server a record of its reply, kept for
    30 minutes, and SecantusDB goes through all of them at every retryable write (and sorts
    them once there are 10,000): measured, one update took 1.1 ms at first, 2.0 ms at
    10,000 records and 5.6 ms beyond, all under its one lock, against 0.8 ms throughout
    without (tests/bench/retryable_writes.py, docs/benchmarks.md)."""
    return {} if "retrywrites=" in url.lower() else {"retryWrites": False}


def _make_client(url: str, driver: str, auth: dict[str, Any]) -> Any:
    kw = dict(tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=3000,
              event_listeners=[_CommandWatch()], **retry_writes(url), **auth)
    if driver == "pymongo":
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(url, **kw)
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient(url, **kw)


def is_transient(exc: BaseException) -> bool:
    """Errors that may succeed on retry (store or broker unreachable), as opposed to bugs or
    bad input. Consumers back off and retry these; they never dead-letter them."""
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, OperationFailure | PyMongoError) and exc.has_error_label(
        "TransientTransactionError"
    ):
        return True
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotLeaderForPartitionError

    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NotLeaderForPartitionError
                      | ConnectionError | asyncio.TimeoutError)


def _error_name(exc: PyMongoError) -> str:
    """A short name for a store error: its server code name (WriteConflict, ...) or class."""
    details = getattr(exc, "details", None) or {}
    return str(details.get("codeName") or type(exc).__name__)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, Decimal128) or isinstance(b, Decimal128):
        x, y = (dec(v) if isinstance(v, Decimal128) else Decimal(v) for v in (a, b))
        return d128(x + y)
    return a + b


def decimals(x: Any) -> Any:
    """A stored value with its Decimal128 amounts as Decimal, recursively."""
    if isinstance(x, Decimal128):
        return dec(x)
    if isinstance(x, dict):
        return {k: decimals(v) for k, v in x.items()}
    if isinstance(x, list):
        return [decimals(v) for v in x]
    return x


# what a document holds that never changes in place: shared by a copy, not copied
_IMMUTABLE = (str, int, float, bool, type(None), Decimal, Decimal128, datetime, bytes,
              ObjectId)
_LEAF = frozenset(_IMMUTABLE)  # the same, by exact type: one set lookup, no call per value


def copy_tree(value: Any) -> Any:
    """A deep copy of a document: its dicts and lists anew, its immutable values shared,
    anything else deep-copied (copy.deepcopy's memo and dispatch cost 8% of a consumer's
    CPU here, on documents that are dicts, lists and scalars). Plain dicts and lists take
    their plain values as they are, without a call each (half the time of a programme's
    history); subclasses and other values go the general way below."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _LEAF else copy_tree(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _LEAF else copy_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_tree(v) for v in value]
    if isinstance(value, _IMMUTABLE):
        return value
    return copy.deepcopy(value)


def apply_update(doc: dict[str, Any] | None, key: Any, update: dict[str, Any]
                 ) -> dict[str, Any]:
    """The document `update` (MongoDB's operators, as our stores use them: $set,
    $setOnInsert, $unset, $inc, $push, $addToSet with or without $each) makes of `doc`; an
    absent doc is upserted. A new document, `doc` left alone: only the containers on the
    updated paths are copied, the rest is shared with `doc` (documents are never changed in
    place, so sharing is safe; a deep copy of a large programme per event was the consumers'
    main CPU cost)."""
    inserting = doc is None
    out = dict(doc) if doc is not None else {"_id": key}
    ours = {id(out)}  # the containers made by this call: changed in place freely

    def own(parent: dict[str, Any], k: str, empty: Any) -> Any:
        """parent[k], made by this call (a copy if it was `doc`'s), created if absent."""
        if k not in parent:
            child = parent[k] = type(empty)()
        elif not isinstance(parent[k], type(empty)):  # as the server refuses it
            raise TypeError(f"{k} is a {type(parent[k]).__name__}, not a "
                            f"{type(empty).__name__}")
        elif id(parent[k]) not in ours:
            child = parent[k] = copy.copy(parent[k])
        else:
            return parent[k]
        ours.add(id(child))
        return child

    for op, fields in update.items():
        if op == "$setOnInsert" and not inserting:
            continue
        for path, value in fields.items():
            *head, last = path.split(".")
            parent = out
            for k in head:
                parent = own(parent, k, {})
            if op in ("$set", "$setOnInsert"):
                parent[last] = copy_tree(value)
            elif op == "$unset":
                parent.pop(last, None)
            elif op == "$inc":
                parent[last] = _add(parent[last], value) if last in parent else value
            elif op in ("$push", "$addToSet"):
                items = value["$each"] if isinstance(value, dict) and "$each" in value else [
                    value]
                current = own(parent, last, [])
                for item in items:
                    if op == "$push" or item not in current:
                        current.append(copy_tree(item))
            else:
                raise ValueError(f"apply_update does not know {op}")
    return out


# -- queries over a transaction's pending documents (Docs.iter_where) -----------------------
class _Unordered:
    """A server's value of a type bracket in which pending documents never have values
    (`_scalar` refuses them), so it is never compared within it."""

    def __lt__(self, other: Any) -> bool:
        raise TypeError("not compared within its bracket")


# MongoDB's order of type brackets: null (and missing), numbers, strings, objects, arrays,
# binary data, ObjectId, booleans, dates
_BRACKETS = ((dict, 3), (list, 4), (bytes, 5), (ObjectId, 6))


def _scalar(v: Any, *, server: bool = False) -> tuple[int, Any] | None:
    """A value as MongoDB orders it (its type bracket, then its value) for the types whose
    order Python gives the same way: null (or missing), numbers, strings, booleans, dates;
    None for any other (the caller leaves the query to the server). `server`: a value the
    server returned, placed in its bracket whatever its type (see _Unordered)."""
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (8, v)
    if isinstance(v, int | float | Decimal | Decimal128):
        x = dec(v) if isinstance(v, Decimal128) else v
        nan = x != x if isinstance(x, float) else isinstance(x, Decimal) and x.is_nan()
        if nan:
            return (1, float("-inf")) if server else None  # NaN: below every number
        return (1, x)
    if isinstance(v, str):
        return (2, v)  # code points: the order of their UTF-8 bytes (a binary compare)
    if isinstance(v, datetime):  # milliseconds, as stored
        return (9, (v if v.tzinfo else v.replace(tzinfo=UTC)).replace(
            microsecond=v.microsecond // 1000 * 1000))
    if server:
        return next(((rank, _Unordered()) for t, rank in _BRACKETS if isinstance(v, t)),
                    (10, _Unordered()))
    return None


_MISSING_PATH = object()


def _field(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (None where it is missing); _MISSING_PATH where the path
    goes through something other than a sub-document (the server's rules for arrays
    apply there)."""
    v: Any = doc
    for k in path.split("."):
        if v is None:
            return None
        if not isinstance(v, dict):
            return _MISSING_PATH
        v = v.get(k)
    return v


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}


def matches(doc: dict[str, Any], query: dict[str, Any]) -> bool | None:
    """Whether `doc` matches `query` as the server decides it, for queries that compare
    fields with scalars (equality, $ne, $in, $nin, $gt, $gte, $lt, $lte) where the fields
    hold scalars; None where this cannot tell (another operator, an array or sub-document
    on either side): the caller asks the server."""
    for path, cond in query.items():
        if path.startswith("$"):
            return None
        v = _field(doc, path)
        have = None if v is _MISSING_PATH else _scalar(v)
        if have is None:
            return None
        ops = cond if isinstance(cond, dict) and cond and all(
            str(k).startswith("$") for k in cond) else {"$eq": cond}
        for op, want in ops.items():
            if op in ("$in", "$nin"):
                wants = [_scalar(w) for w in want] if isinstance(want, list) else [None]
                if any(w is None for w in wants):
                    return None
                ok = (have in wants) == (op == "$in")
            else:
                w = _scalar(want)
                if w is None:
                    return None
                if op == "$eq":
                    ok = have == w
                elif op == "$ne":
                    ok = have != w
                elif op in _COMPARE:  # within a type bracket only
                    ok = have[0] == w[0] and _COMPARE[op](have[1], w[1])
                else:
                    return None
            if not ok:
                return False
    return True


def sort_key(doc: dict[str, Any], sort: list[tuple[str, int]], *, server: bool = False
             ) -> tuple[Any, ...] | None:
    """`doc`'s place in an ascending sort on scalar fields, as the server orders it; None
    where this cannot tell (a descending field; a value of another type, unless `server`:
    see _scalar)."""
    key = []
    for path, direction in sort:
        if direction != ASCENDING:
            return None
        v = _field(doc, path)
        if v is _MISSING_PATH:
            if not server:
                return None
            v = None
        s = _scalar(v, server=server)
        if s is None:
            return None
        key.append(s)
    return tuple(key)


class Docs:
    """One collection as a transaction sees it, for batch consumers: `load` the batch's
    documents in one query, read and update them in memory, and let the transaction write
    each changed document once (its final state: several events of a batch about one
    programme cost one write) with one ordered `bulk_write` before it commits. Each write is
    checked to have hit exactly the document it expected, or the transaction fails (and
    retries); a concurrent writer of the same document makes one transaction conflict.

    Reads of this collection that bypass the cache (queries) must come after
    `UnitOfWork.write()`, which flushes pending writes; `load_where` does that itself."""

    def __init__(self, uow: UnitOfWork, name: str) -> None:
        self.uow, self.coll = uow, uow.db[name]
        self.cache: dict[Any, dict[str, Any] | None] = {}
        self.existed: dict[Any, bool] = {}  # in the store, as far as this transaction knows
        self.pending: dict[Any, str] = {}  # key -> "insert" | "write" | "delete"
        # what a caller's `load_where` queries covered completely (its own vocabulary)
        self.covered: set[Any] = set()
        # each document as the store held it, for collections that feed aggregates
        # (Store.aggregate): what a write changes is the difference
        self.tracked = uow.store.aggregate is not None and name in uow.store.aggregate.parts
        self.original: dict[Any, dict[str, Any] | None] = {}
        # fields a write of a stored document must find as this transaction read them
        # (Store.guarded), with each document's values as read (or as last written)
        self.guard = uow.store.guarded.get(name, ())
        self.base: dict[Any, dict[str, Any]] = {}

    def _remember(self, key: Any) -> None:
        """Note `key`'s state for UnitOfWork.rollback_to (what one event changed)."""
        self.uow._undo.append((self, key, self.cache.get(key, _MISSING),
                               self.pending.get(key, _MISSING),
                               self.existed.get(key, _MISSING)))

    def _known(self, key: Any, doc: dict[str, Any] | None) -> None:
        self.cache[key] = doc
        self.existed[key] = doc is not None
        if self.guard and doc is not None:
            self.base[key] = {f: doc.get(f) for f in self.guard}
        if self.tracked and key not in self.original:
            self.original[key] = doc  # never changed in place (apply_update copies)

    async def load(self, ids: Iterable[Any]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i is not None and i not in self.cache]
        if not missing:
            return
        self.uow._spoke = True
        found = {d["_id"]: d async for d in self.coll.find(
            {"_id": {"$in": missing}}, session=self.uow._session)}  # a read: undoable
        for i in missing:
            self._known(i, found.get(i))

    def seed(self, ids: Iterable[Any], found: dict[Any, dict[str, Any]]) -> None:
        """Take documents read outside the transaction (concurrently with its own reads) as
        this transaction's read of `ids` (absent from `found`: none). Only for a
        collection the transaction never writes and whose reads need no snapshot shared
        with the rest (configuration): a read a moment earlier than the transaction's own."""
        for i in ids:
            if i is not None and i not in self.cache:
                self._known(i, found.get(i))

    async def load_where(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Cache every document `query` matches (pending writes first, so it sees them)."""
        return [d async for d in self.iter_where(query)]

    async def iter_where(self, query: dict[str, Any], sort: list[tuple[str, int]] | None = None
                         ) -> AsyncIterator[dict[str, Any]]:
        """The documents `query` matches (in `sort` order if given), each cached as it is
        read; a caller that stops when it has read enough never reads the rest. This
        transaction's pending writes are seen: matched in memory and merged into the
        server's answer where `matches` and `sort_key` can decide them (fields compared with
        scalars, ascending sorts), else written first (a round trip) so the server sees them."""
        mine = self._pending_matching(query, sort)
        if mine is None:
            await self.flush()
            mine = []
        stale = set(self.pending)  # the server's copies of these are older than ours
        self.uow._spoke = True
        cursor = self.coll.find(query, session=self.uow._session)
        if sort:
            cursor = cursor.sort(sort)
        try:
            async for d in cursor:
                if d["_id"] in stale:
                    continue
                if mine:
                    at = sort_key(d, sort, server=True) if sort else None
                    while mine and (at is None or mine[0][0] <= at):
                        yield mine.pop(0)[1]
                self._known(d["_id"], d)
                yield d
        finally:
            await cursor.close()
        for _, doc in mine:
            yield doc

    def _pending_matching(self, query: dict[str, Any], sort: list[tuple[str, int]] | None
                          ) -> list[tuple[Any, dict[str, Any]]] | None:
        """This transaction's pending documents that match `query`, in `sort` order, each
        with its sort key; None if that cannot be decided in memory."""
        out = []
        for key in self.pending:
            doc = self.cache[key]
            if doc is None:
                continue
            ok = matches(doc, query)
            at = sort_key(doc, sort) if sort and ok else ()
            if ok is None or at is None:
                return None
            if ok:
                out.append((at, doc))
        out.sort(key=lambda x: x[0])
        return out

    async def get(self, key: Any) -> dict[str, Any] | None:
        if key not in self.cache:
            await self.load([key])
        return self.cache[key]

    async def update(self, key: Any, update: dict[str, Any], *, upsert: bool = False
                     ) -> dict[str, Any] | None:
        """Apply `update` to the document `key`; None (and nothing written) if there is no
        such document and no upsert."""
        doc = await self.get(key)
        if doc is None and not upsert:
            return None
        self._remember(key)
        self.cache[key] = new = apply_update(doc, key, update)
        self.pending.setdefault(key, "write")
        if self.pending[key] == "delete":
            self.pending[key] = "write"
        return new

    async def insert(self, doc: dict[str, Any]) -> None:
        if await self.get(doc["_id"]) is not None:
            raise Conflict(f"{self.coll.name} {doc['_id']} exists")
        await self.add(doc)

    async def add(self, doc: dict[str, Any]) -> None:
        """Insert without reading first, for documents whose deterministic `_id` the
        transaction's own logic keeps unique (journal entries): a duplicate fails the
        transaction at the flush. The document is handed over, not copied (a copy of each
        inserted document was 9% of a consumer's CPU): the caller builds it for this call
        and does not change it afterwards, as documents in the cache are never changed in
        place (`apply_update` makes new ones)."""
        key = doc["_id"]
        self._remember(key)
        if self.tracked:
            self.original.setdefault(key, None)
        self.cache[key] = doc
        self.pending[key] = "write" if self.pending.get(key) == "delete" else "insert"

    async def delete(self, key: Any) -> None:
        if await self.get(key) is None:
            return
        self._remember(key)
        self.cache[key] = None
        if self.pending.get(key) == "insert" or not self.existed.get(key):
            del self.pending[key]  # never written (inserted, or upserted, in this transaction)
        else:
            self.pending[key] = "delete"

    def _count(self) -> None:
        """Add what the pending writes change to the transaction's aggregate counters; the
        written state becomes the original for the next flush."""
        agg = self.uow.store.aggregate
        if agg is None or not self.tracked:
            return
        for key in self.pending:
            agg.add(self.uow._deltas, key, agg.change(self.coll.name, self.original.get(key),
                                                      self.cache[key]))
            self.original[key] = self.cache[key]

    def take(self, namespace: str | None = None) -> list[Any]:
        """The pending writes as bulk-write operations (named with `namespace`, for a
        client-level bulk write), no longer pending. Each is expected to hit exactly one
        document (see `applied`)."""
        ops: list[Any] = []
        complete = self.uow.store.complete
        for key, kind in self.pending.items():
            doc = self.cache[key]
            if kind != "delete":
                doc = self.cache[key] = complete(self.coll.name, doc)
            if kind == "insert":
                ops.append(InsertOne(doc, namespace=namespace))
            elif kind == "delete":
                ops.append(DeleteOne({"_id": key}, namespace=namespace))
            elif not self.existed.get(key):  # an upsert: a concurrent insert conflicts
                ops.append(ReplaceOne({"_id": key}, doc, upsert=True, namespace=namespace))
            else:  # guarded fields as read: a concurrent change of them makes it miss
                ops.append(ReplaceOne({"_id": key, **self.base.get(key, {})}, doc,
                                      namespace=namespace))
        for key in self.pending:
            doc = self.cache[key]
            self.existed[key] = doc is not None
            if self.guard and doc is not None:
                self.base[key] = {f: doc.get(f) for f in self.guard}
        self.pending = {}
        return ops

    async def flush(self, *, counted: bool = False) -> None:
        """Write the pending documents; `counted`: their changes were already added to the
        aggregate (UnitOfWork.write counts before it flushes)."""
        if not self.pending:
            return
        if not counted:
            self._count()
        ops = self.take()
        applied(self.coll.name, len(ops), await self.coll.bulk_write(
            ops, ordered=True, session=self.uow.session))


_MISSING = object()


def applied(what: str, expected: int, res: Any) -> None:
    """A bulk write whose every operation must hit one document (an insert, a delete of a
    document read, a replace of one, an upsert): fewer means a concurrent writer changed
    them under the transaction, which then fails (and is retried)."""
    hit = res.matched_count + res.upserted_count + res.inserted_count + res.deleted_count
    if hit != expected:
        raise Conflict(f"{what} changed under this transaction "
                       f"({hit} of {expected} writes applied)")


class _ClockBehind(Exception):
    """A key's last outbox `seq` was not below this process's clock: the transaction runs
    again, reading the keys' `seq` first (UnitOfWork._next_seq)."""


def _unwrapped(e: ClientBulkWriteException, collections: list[str]) -> BaseException:
    """What a failed client-level bulk write means, as the per-collection writes say it: a
    top-level error as itself (a write conflict keeps its TransientTransactionError label,
    so the transaction is retried); a unique key taken as DuplicateKeyError (is_duplicate);
    a key's outbox `seq` ahead of the clock as _ClockBehind."""
    if isinstance(e.error, PyMongoError):
        return e.error
    for err in e.write_errors or []:
        if err.get("code") == 11000:
            if collections[err["idx"]] == "outbox_keys":
                return _ClockBehind(err.get("errmsg", ""))
            return DuplicateKeyError(err.get("errmsg", ""), 11000, err)
        return OperationFailure(err.get("errmsg", ""), err.get("code"), err)
    return e


def is_duplicate(exc: BaseException) -> bool:
    """A unique key taken (by a concurrent writer that committed first), from a single write
    or a bulk write."""
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == 11000 for e in exc.details.get("writeErrors", []))
    return isinstance(exc, DuplicateKeyError)


class UnitOfWork:
    """One transaction: state writes through `session` (or buffered in `docs`), events
    through `emit`."""

    def __init__(self, store: Store, session: Any, *, read_seqs: bool = False) -> None:
        self.store = store
        self._session = session
        self.db = store.db
        # Where the server takes client-level bulk writes (MongoDB 8.0's bulkWrite), the
        # writes a transaction makes at its end (its buffered documents, the consumed ids,
        # the outbox and its keys' `seq`) go in one command: one round trip, not one per
        # collection (see _send_tail), by collection. None: each is written as it comes.
        self._tail: dict[str, list[Any]] | None = {} if store.client_bulk else None
        self._read_seqs = read_seqs  # the keys' `seq` read before writing (_ClockBehind)
        self._spoke = False  # a statement of this transaction has reached the server
        self._events: list[tuple[Envelope, BaseModel]] = []
        self._docs: dict[str, Docs] = {}
        self._undo: list[tuple[Docs, Any, Any, Any, Any]] = []
        self._touched = False  # the session was used since the last savepoint
        self._deltas: dict[int, dict[str, Any]] = {}  # Store.aggregate's, per shard
        self.shards: set[int] = set()  # the outbox shards its events were written to

    @property
    def emitted(self) -> int:
        """How many events this transaction has queued so far."""
        return len(self._events)

    @property
    def session(self) -> Any:
        """The transaction's session. Using it (a direct read or write) means the changes
        since the last savepoint can no longer be undone in memory."""
        self._touched = self._spoke = True
        return self._session

    def savepoint(self) -> tuple[int, int]:
        """Mark the transaction's state before one event is applied."""
        self._touched = False
        return len(self._events), len(self._undo)

    def rollback_to(self, mark: tuple[int, int]) -> bool:
        """Undo what was done since `mark`, if it was all buffered (no direct write, no
        flush): True. False: the store saw some of it, and only aborting the whole
        transaction undoes it."""
        if self._touched:
            return False
        events, undo = mark
        del self._events[events:]
        while len(self._undo) > undo:
            docs, key, cached, pending, existed = self._undo.pop()
            for d, v in ((docs.cache, cached), (docs.pending, pending),
                         (docs.existed, existed)):
                if v is _MISSING:
                    d.pop(key, None)
                else:
                    d[key] = v
        return True

    def _ns(self, collection: str) -> str:
        return f"{self.db.name}.{collection}"

    def _later(self, collection: str, ops: Iterable[Any]) -> None:
        """Operations (named with `_ns(collection)`) for the transaction's closing write."""
        assert self._tail is not None
        self._tail.setdefault(collection, []).extend(ops)

    def docs(self, name: str) -> Docs:
        """The transaction's cached, write-batched view of collection `name`."""
        if name not in self._docs:
            self._docs[name] = Docs(self, name)
        return self._docs[name]

    async def write(self) -> None:
        """Flush buffered writes (one bulk write per collection, in first-use order), and
        add what they change to the store's aggregate (one bulk write)."""
        agg = self.store.aggregate
        for d in list(self._docs.values()):
            d._count()
        if agg is not None and self._deltas:
            # each shard's counters raised where they are, without reading them first (a
            # concurrent writer of the same shard conflicts, and one retries); a counter
            # brought to zero stays, as zero (Aggregate.read leaves it out)
            ns = self._ns(agg.collection) if self._tail is not None else None
            ops = [UpdateOne({"_id": shard}, {"$inc": agg.increments(delta)}, upsert=True,
                             namespace=ns) for shard, delta in sorted(self._deltas.items())]
            self._deltas = {}
            if self._tail is not None:
                self._later(agg.collection, ops)
            else:
                applied(agg.collection, len(ops), await self.db[agg.collection].bulk_write(
                    ops, ordered=True, session=self.session))
        for d in self._docs.values():
            if self._tail is not None:
                self._later(d.coll.name, d.take(self._ns(d.coll.name)))
            else:
                await d.flush(counted=True)

    async def _send_tail(self) -> None:
        """The writes gathered for the transaction's end: a collection's few (up to
        CLIENT_BULK_GROUP) together with the other collections' in one client-level bulk
        write; a collection's many by its own command (SecantusDB writes a collection's
        batch in one pass, and a client-level bulk write's operations one by one: 0.07
        against 0.20 ms per inserted document at 300, measured). Each write must hit one
        document, else a concurrent writer changed them."""
        if not self._tail:
            return
        by = {name: group for name, group in self._tail.items() if group}
        self._tail = {}
        together = [(name, op) for name, group in by.items() if len(group) <= CLIENT_BULK_GROUP
                    for op in group]
        alone = {name: group for name, group in by.items() if len(group) > CLIENT_BULK_GROUP}
        if together and not alone and not self._spoke and (
                self._session.operation_time is not None):
            # SecantusDB refuses on bulkWrite the read concern that the first statement of
            # a transaction carries in a session that has run before (a retried attempt),
            # which mongod takes: such an attempt writes per collection
            alone, together = by, []
        for name, group in alone.items():
            coll = self.db[name]
            try:
                res = await coll.bulk_write(group, ordered=True, session=self.session)
            except BulkWriteError as e:
                if coll.name == "outbox_keys" and is_duplicate(e):
                    raise _ClockBehind(str(e)[:200]) from e
                raise
            applied(coll.name, len(group), res)
        if together:
            try:
                res = await self.store.client.bulk_write([op for _, op in together],
                                                         ordered=True, session=self._session)
            except ClientBulkWriteException as e:
                raise _unwrapped(e, [name for name, _ in together]) from e
            applied("the transaction's documents", len(together), res)

    def emit(self, event: BaseModel, *, traceparent: str | None = None) -> Envelope:
        """Queue a fact for the outbox; it is written in this transaction."""
        c = contract_for(event)
        key = getattr(event, c.key)
        env = Envelope(
            source=f"/mptf/{self.store.settings.service_name}",
            type=c.type,
            subject=str(key) if key is not None else None,
            traceparent=traceparent or current_traceparent(),
        )
        self._events.append((env, event))
        return env

    async def inbox_state(self, consumer: str, event_ids: Iterable[str]
                          ) -> dict[str, str | None]:
        """The ids among `event_ids` that `consumer` has processed, each with the digest of
        the content it had (None for records kept before digests were), read in this
        transaction: in a batch's document (`ids`), or in a document of its own (`_id`, as
        earlier releases kept them)."""
        keys = {f"{consumer}:{i}": i for i in dict.fromkeys(event_ids)}
        found: dict[str, str | None] = {}
        # two queries, each on its own index: the local Mongo server answers an `$or` of
        # the two by scanning the whole collection (364 ms at 400 documents)
        for field in ("ids", "_id"):
            wanted = [k for k, i in keys.items() if i not in found]
            if not wanted:
                break
            async for d in self.db.inbox.find({field: {"$in": wanted}},
                                              {"ids": 1, "digests": 1, "digest": 1},
                                              session=self.session):
                ids = d.get("ids") or [d["_id"]]
                digests = d.get("digests") or [d.get("digest")] * len(ids)
                for key, digest in zip(ids, digests, strict=False):
                    if key in keys:
                        found[keys[key]] = digest
        return found

    async def unseen(self, consumer: str, event_ids: Iterable[str]) -> set[str]:
        """The ids among `event_ids` that `consumer` has not processed."""
        ids = list(dict.fromkeys(event_ids))
        seen = await self.inbox_state(consumer, ids)
        return {i for i in ids if i not in seen}

    async def mark_seen(self, consumer: str, event_ids: Iterable[str],
                        digests: dict[str, str] | None = None) -> None:
        """Record processed ids, in the same transaction as their effect: one document
        holding them all, each id (`consumer:event id`) under the unique index on `ids`. A
        concurrent instance recording the same id makes this insert conflict and the whole
        transaction retry, after which the id is seen: never two effects. While a replica
        of an earlier release may be running, one document per id instead, whose `_id` is
        the id (`Store.settle_inbox`)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return
        now, digests = utcnow(), digests or {}
        keys = [f"{consumer}:{i}" for i in ids]
        if self.store.inbox_batched:
            doc = {"consumer": consumer, "ids": keys, "digests": [digests.get(i) for i in ids],
                   "at": now}
            if self._tail is not None:  # with the transaction's other writes, at its end
                self._touched = True  # (as a write would: no undoing in memory after it)
                self._later("inbox", [InsertOne(doc, namespace=self._ns("inbox"))])
            else:
                await self.db.inbox.insert_one(doc, session=self.session)
        else:
            await self.db.inbox.insert_many(
                [{"_id": k, "consumer": consumer, "ids": [k], "digests": [digests.get(i)],
                  "at": now} for k, i in zip(keys, ids, strict=True)], session=self.session)

    async def claim(self, consumer: str, event_ids: Iterable[str]) -> set[str]:
        """unseen + mark_seen: the ids to act on now; the rest are redeliveries."""
        fresh = await self.unseen(consumer, event_ids)
        await self.mark_seen(consumer, [i for i in dict.fromkeys(event_ids) if i in fresh])
        return fresh

    async def _next_seq(self, key: str, now: int) -> int:
        """The `seq` of a transaction whose events have one key and fill one document: above
        the key's last and at least `now`, in one round trip where the clock is ahead of the
        key's last (nearly always) instead of a read and a write. The write conflicts with
        a concurrent transaction of the key's as the read-and-write did."""
        counters = self.db.outbox_keys
        before = await counters.find_one_and_update(
            {"_id": key}, {"$max": {"seq": now}}, upsert=True, session=self.session)
        last = (before or {}).get("seq", 0)
        if last < now:
            return now
        await counters.update_one({"_id": key}, {"$set": {"seq": last + 1}},
                                  session=self.session)
        return last + 1

    async def _flush(self) -> None:
        """The transaction's events as outbox documents: one per relay shard the events' keys
        fall in (shared.lease.unit_of), of up to OUTBOX_CHUNK events, in the transaction's
        order (one document per transaction and shard, not per event, because the Mongo
        server pays per document written, and the relay writes each again to mark it sent).

        Order without clocks: each document's `seq` is above every earlier `seq` of each of
        its keys, which the key's document in `outbox_keys` holds and this transaction
        raises; two transactions publishing for one key both write that document, so they
        commit one after the other and the later one has the higher `seq`, whatever the
        clocks of the replicas that ran them. (The clock only makes `seq` roughly follow time
        across keys, for fairness.)"""
        if not self._events or self.store.replaying:
            return  # a rebuild (shared.rebuild) publishes nothing: the facts exist already
        from shared.lease import unit_of

        shards = self.store.settings.outbox_shards
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for env, event in self._events:
            value = event.model_dump_json().encode()
            envelope = env.model_dump(mode="json")
            for topic in contract_for(event).topics:  # one entry per topic, one event id
                by_shard.setdefault(unit_of(env.subject, shards), []).append(
                    {"id": env.id, "topic": topic, "key": env.subject, "type": env.type,
                     "envelope": envelope, "value": value})
        keys = {e["key"] or "" for evs in by_shard.values() for e in evs}
        now = self.store.clock_ns()
        chunks = [(shard, n, chunk) for shard, events in sorted(by_shard.items())
                  for n, chunk in enumerate(events[i:i + OUTBOX_CHUNK]
                                            for i in range(0, len(events), OUTBOX_CHUNK))]
        seqs: list[int] = []
        if self._tail is not None and not self._read_seqs:
            # no read: each chunk's `seq` is the clock (+ its place), and each of its keys'
            # counters is raised to it only if below it; a key whose last `seq` is not below
            # makes its upsert hit the key's `_id` (E11000), and the transaction runs again
            # reading the keys first (_ClockBehind): the same order as below, a round trip
            # fewer (nearly always)
            counters = self._ns("outbox_keys")
            for _, n, chunk in chunks:
                seq = now + n
                self._later("outbox_keys", (
                    UpdateOne({"_id": k, "seq": {"$lt": seq}}, {"$set": {"seq": seq}},
                              upsert=True, namespace=counters)
                    for k in dict.fromkeys(e["key"] or "" for e in chunk)))
                seqs.append(seq)
        elif len(chunks) == 1 and len(keys) == 1:
            seqs.append(await self._next_seq(keys.pop(), now))
        else:
            counters = self.docs("outbox_keys")
            await counters.load(keys)
            for _, n, chunk in chunks:
                mine = {e["key"] or "" for e in chunk}
                seq = max([now + n] + [(counters.cache.get(k) or {}).get("seq", 0) + 1
                                       for k in mine])
                for k in mine:
                    await counters.update(k, {"$set": {"seq": seq}}, upsert=True)
                seqs.append(seq)
            await counters.flush()
        docs = [{"_id": chunk[0]["id"] + (f":{shard}" if n == 0 else f":{shard}.{n}"),
                 "shard": shard, "seq": seq, "created_at": self._events[0][0].time,
                 "sent_at": None, "count": len(chunk), "events": chunk}
                for (shard, n, chunk), seq in zip(chunks, seqs, strict=True)]
        if self._tail is not None:
            self._later("outbox", (InsertOne(d, namespace=self._ns("outbox")) for d in docs))
        else:
            await self.db.outbox.insert_many(docs, session=self.session)
        self.shards = {d["shard"] for d in docs}

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for e, _ in self._events]


class Aggregate:
    """Counters a store keeps over some of its collections, in the transactions that write
    them: `parts[collection](doc)` is what one document adds (a dict of dotted paths to
    numbers); each write adds the change of its document's part to the shard of its key, in
    `collection`. Sums are the same whatever the order of the writes."""

    def __init__(self, collection: str, parts: dict[str, Callable[[Any], dict[str, Any]]],
                 shards: int = 16) -> None:
        self.collection, self.parts, self.shards = collection, parts, shards

    def shard(self, key: Any) -> int:
        import zlib

        return zlib.crc32(str(key).encode()) % self.shards

    def change(self, name: str, before: dict[str, Any] | None, after: dict[str, Any] | None
               ) -> dict[str, Any]:
        part = self.parts[name]
        old, new = part(before), part(after)
        out = {k: new.get(k, 0) - old.get(k, 0) for k in set(old) | set(new)}
        return {k: v for k, v in out.items() if v != 0}

    def add(self, into: dict[int, dict[str, Any]], key: Any, delta: dict[str, Any]) -> None:
        """Add `delta` (of the document `key`) to its shard's counters in `into`."""
        if delta:
            shard = into.setdefault(self.shard(key), {})
            for k, v in delta.items():
                shard[k] = shard.get(k, 0) + v

    @staticmethod
    def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """Stored counters as dotted paths (money as Decimal)."""
        out: dict[str, Any] = {}
        for k, v in tree.items():
            if isinstance(v, dict):
                out.update(Aggregate.flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = dec(v) if isinstance(v, Decimal128) else v
        return out

    @staticmethod
    def increments(delta: dict[str, Any]) -> dict[str, Any]:
        """A shard's `delta` as the `$inc` of its stored counters (money as Decimal128)."""
        return {f"c.{k}": d128(v) if isinstance(v, Decimal) else v
                for k, v in delta.items()}

    @staticmethod
    def plus(tree: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
        """Stored counters with `delta` added; a counter at zero is left out, so the stored
        counters are the same whatever path of changes led to them."""
        flat = Aggregate.flat(tree)
        for k, v in delta.items():
            flat[k] = flat.get(k, 0) + v
        out: dict[str, Any] = {}
        for path, v in sorted(flat.items()):
            if v == 0:
                continue
            *head, last = path.split(".")
            node = out
            for h in head:
                node = node.setdefault(h, {})
            node[last] = d128(v) if isinstance(v, Decimal) else v
        return out

    async def count(self, db: Any, session: Any) -> None:
        """Count the counters from the documents, if there are none yet (a database kept
        before they were); in the caller's transaction, so that two instances starting
        together do not both count."""
        if await db[self.collection].find_one({}, session=session):
            return
        deltas: dict[int, dict[str, Any]] = {}
        for name in self.parts:
            async for d in db[name].find({}, session=session):
                self.add(deltas, d["_id"], self.change(name, None, d))
        if deltas:
            await db[self.collection].insert_many(
                [{"_id": shard, "c": self.plus({}, delta)} for shard, delta
                 in sorted(deltas.items())], session=session)

    async def read(self, db: Any) -> dict[str, Any]:
        """The counters, summed over the shards (money as Decimal); those at zero left out
        (a counter once raised and brought back stays in its shard, as zero)."""
        total: dict[str, Any] = {}
        async for d in db[self.collection].find():
            for k, v in self.flat(d.get("c", {})).items():
                total[k] = total.get(k, 0) + v
        return {k: v for k, v in total.items() if v != 0}

    @staticmethod
    def stored(doc: dict[str, Any]) -> dict[str, Any]:
        """A shard as its counters' values: the same whatever path of changes led to them
        (without those at zero; for a rebuild's comparison, shared.rebuild)."""
        return {**doc, "c": Aggregate.plus(doc.get("c", {}), {})}


class Store:
    """Base of each service's store adapter."""

    aggregate: Aggregate | None = None  # counters kept with the writes (see Aggregate)
    # collection -> fields that a transaction's write of one of its documents (through
    # UnitOfWork.docs) must find in the store as the transaction read them, or the write
    # misses and the transaction fails (`applied`): balances that two writers must never
    # both change from one value (funding's fund and sources). In a transaction a
    # concurrent writer conflicts anyway; the guard makes the store itself check it.
    guarded: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, settings: ServiceSettings, *, driver: str | None = None) -> None:
        self.settings = settings
        self.driver = driver or os.environ.get("MPTF_MONGO_DRIVER", "pymongo")
        self.client = _make_client(settings.mongodb_url, self.driver, settings.mongo_options())
        self.db = self.client[settings.database]
        self.outbox_signal = asyncio.Event()
        # the outbox shards this process's commits wrote since the relay last looked: it
        # reads those at once, and looks for all pending shards (other replicas' commits
        # too) once a poll interval
        self.outbox_dirty: set[int] = set()
        self.clock_ns = time.time_ns  # the outbox's clock (a test skews it: see _flush)
        self.members = Members(self)  # this process among the service's replicas
        self.replaying = False  # set by shared.rebuild: facts are applied, none published
        # consumed ids recorded one document per batch (else per id): see settle_inbox
        self.inbox_batched = False
        # a transaction's closing writes in one client-level bulk write (UnitOfWork._tail),
        # where the server takes them (MongoDB 8.0 and later; None: not asked yet) and the
        # setting allows
        self.client_bulk: bool | None = (None if settings.mongo_client_bulk_write == "auto"
                                          else False)
        self.members.on_beat.append(lambda: self.settle_inbox(self.members.earlier_releases))

    async def ping(self) -> bool:
        await self.db.command("ping")
        return True

    async def ensure_indexes(self) -> None:
        # the relay reads one shard's pending documents in `seq` order; the backlog, the
        # retention sweep and the tools find theirs by it too, naming every shard (one index
        # fewer to write at every commit and publication: an earlier release's second one,
        # on sent_at and seq, is dropped)
        await self.db.outbox.create_index(OUTBOX_INDEX)
        with contextlib.suppress(OperationFailure):  # (another instance dropped it first)
            if "sent_at_1_seq_1" in await self.db.outbox.index_information():
                await self.db.outbox.drop_index("sent_at_1_seq_1")
        # documents from before the relay was sharded go to shard 0, in their order (found
        # by the index above: `shard` is never null, and the local Mongo server answers
        # `$exists: false` by scanning the whole outbox, at every start)
        await self.db.outbox.update_many({"shard": None}, {"$set": {"shard": 0}})
        await self.db.leases.create_index([("owner", ASCENDING)])
        # retention (prune): ordinary indexes that the deletes walk by range. Earlier
        # releases left it to TTL indexes on these fields: they are dropped
        await self.drop_ttl("outbox", "sent_at")
        await self.drop_ttl("inbox", "at")
        await self.db.inbox.create_index([("at", ASCENDING)])
        # consumed ids, each at most once across all documents (a document without `ids`,
        # an earlier release's, is not in it); and the documents of earlier releases
        # (`event_id`), to be found without a scan
        await self.db.inbox.create_index([("ids", ASCENDING)], unique=True, sparse=True)
        await self.db.inbox.create_index([("event_id", ASCENDING)], partialFilterExpression={
            "event_id": {"$exists": True}})
        await self.indexes()
        await self.settle_inbox()

    async def settle_inbox(self, earlier_releases: int | None = None) -> bool:
        """Whether consumed ids are recorded one document per batch (`inbox_batched`), as
        this release does; checked at start and after every heartbeat (`Members`).

        Earlier releases kept one document per id (`_id` the id, and `event_id`) and look
        only at `_id`. Against a replica of theirs a batch's document would not conflict,
        so while one is a member (`earlier_releases`: live, or dead and not yet reaped)
        this release writes one document per id too, each with the id both as its `_id`
        and in `ids`: unique against either release. Once none is left, their documents
        are given `ids` (found by the partial index on `event_id`), and then batches'
        documents are safe: every id recorded so far is under the index on `ids`."""
        if earlier_releases is None:
            earlier_releases = await self.db.members.count_documents(
                {"inbox": {"$ne": INBOX_SHAPE}})
        if earlier_releases:
            if self.inbox_batched:
                log.warning("inbox_per_id", reason="a replica of an earlier release joined",
                            members=earlier_releases)
            self.inbox_batched = False
            return False
        if not self.inbox_batched:
            converted = await self._give_ids_to_earlier_records()
            self.inbox_batched = True
            if converted:
                log.info("inbox_earlier_records_converted", records=converted)
        return True

    async def _give_ids_to_earlier_records(self) -> int:
        """Give each record of an earlier release `ids` (its `_id`), in one command. One
        whose id another document already holds (it was recorded twice, once each way)
        is deleted: the id stays recorded once."""
        legacy = {"event_id": {"$exists": True}}
        # by the partial index, named: the local Mongo server does not choose it for this
        # filter and would scan the whole inbox at every start
        by = [("event_id", ASCENDING)]
        convert = [{"$set": {"ids": ["$_id"]}}, {"$unset": "event_id"}]
        try:
            return (await self.db.inbox.update_many(legacy, convert, hint=by)).modified_count
        except PyMongoError as e:
            if not is_duplicate(e):
                raise
        done = 0
        async for d in self.db.inbox.find(legacy, {"_id": 1}, hint=by):
            try:
                await self.db.inbox.update_one({"_id": d["_id"], **legacy}, convert)
            except DuplicateKeyError:
                await self.db.inbox.delete_one({"_id": d["_id"], **legacy})
            done += 1
        return done

    async def drop_ttl(self, collection: str, field: str) -> None:
        """Drop a TTL index on `field` that an earlier release made (another instance
        starting may drop it first)."""
        coll = self.db[collection]
        for name, spec in (await coll.index_information()).items():
            if spec["key"] == [(field, 1)] and "expireAfterSeconds" in spec:
                with contextlib.suppress(OperationFailure):
                    await coll.drop_index(name)

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Retention: delete published outbox documents older than `outbox_keep_sent_hours`
        (those kept: with 0 the relay deletes them as it publishes, and this finds only what
        an earlier setting kept) and consumed event ids older than `inbox_keep_days`; an
        unpublished event (sent_at null) has no date and is never deleted. Each collection
        is walked by range on an index of its date (the outbox's shard by shard), so a sweep
        touches only what expired (every `retention_sweep_seconds`: what expired since the
        last one).

        Not the server's TTL indexes: the local Mongo server (SecantusDB) sweeps those by
        decoding every document of the collection, every 60 s, under its global lock, which
        stalled the whole pipeline for longer the more was stored (docs/benchmarks.md).
        Every replica may prune; the deletes are idempotent."""
        now = now or utcnow()
        s = self.settings
        sent = {"$lt": now - timedelta(hours=s.outbox_keep_sent_hours)}
        deleted = {"outbox": 0}
        for shard in range(s.outbox_shards):  # by its index, shard by shard (an `$in` of
            # the shards makes the local server's delete scan the whole outbox)
            deleted["outbox"] += (await self.db.outbox.delete_many(
                {"shard": shard, "sent_at": sent})).deleted_count
        deleted["inbox"] = (await self.db.inbox.delete_many(
            {"at": {"$lt": now - timedelta(days=s.inbox_keep_days)}})).deleted_count
        return deleted

    def all_of_the_outbox(self, **query: Any) -> dict[str, Any]:
        """A query over every shard of the outbox; find it with `hint=OUTBOX_INDEX` (the
        local server's planner scans the whole collection for an `$in` of the index's first
        field with a condition on its second)."""
        return {"shard": {"$in": list(range(self.settings.outbox_shards))}, **query}

    def complete(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        """The document as written: `doc`, or a new one with the fields the store derives
        from the rest (a programme's next check: MonitoringStore); applied to each
        document once per write of it, whatever the updates that made it."""
        return doc

    async def indexes(self) -> None:
        """Service-specific indexes."""

    async def session(self, **options: Any) -> Any:
        # the one difference between the drivers that we meet: motor's is a coroutine
        s = self.client.start_session(**options)
        return await s if asyncio.iscoroutine(s) else s

    async def transaction(self, fn: Callable[[UnitOfWork], Awaitable[T]]) -> tuple[T, UnitOfWork]:
        """Run fn in one transaction (retried as a whole on transient transaction errors, with
        a fresh UnitOfWork each time) and commit its events to the outbox with it.

        The driver retries a conflicted transaction at once; two batch transactions that
        touch the same documents then conflict again and again (we measured batches stuck
        for minutes). So each retry first waits, exponentially longer and jittered, which
        lets one of them commit."""
        if self.client_bulk is None:
            hello = await self.db.command("hello")
            self.client_bulk = hello.get("maxWireVersion", 0) >= CLIENT_BULK_WIRE_VERSION
        holder: dict[str, UnitOfWork] = {}
        read_seqs = False  # the keys' outbox `seq` read first (after a _ClockBehind)
        attempts = 0
        waited = 0.0
        # what each failed attempt's work raised (an attempt whose commit failed has no
        # entry: the driver commits outside it)
        errors: list[str] = []
        began = time.perf_counter()

        async def attempt(session: Any) -> T:
            nonlocal attempts, waited
            if attempts:  # nothing has been read yet: the snapshot starts after the wait
                TX_RETRIES.inc()
                pause = min(1.0, 0.01 * 2 ** min(attempts, 7)) * (0.5 + random.random())
                waited += pause
                await asyncio.sleep(pause)
            attempts += 1
            uow = UnitOfWork(self, session, read_seqs=read_seqs)
            try:
                result = await fn(uow)
                await uow.write()
                await uow._flush()
                await uow._send_tail()
            except PyMongoError as e:
                errors.append(_error_name(e))
                raise
            holder["uow"] = uow
            return result

        while True:
            s = await self.session()
            await self.members.track(s)  # so that a transaction we die in is ended by another
            try:
                async with s:
                    result = await s.with_transaction(attempt, write_concern=MAJORITY)
                break
            except _ClockBehind:  # (aborted) a key's `seq` is ahead of our clock: read it
                errors.append("ClockBehind")
                read_seqs = True
        if attempts > 1:  # who conflicted, how often and for how long (issue 17's stalls)
            log.warning("transaction_retried", work=getattr(fn, "__qualname__", repr(fn)),
                        attempts=attempts, errors=errors[-5:],
                        waited_ms=round(waited * 1000, 1),
                        took_ms=round((time.perf_counter() - began) * 1000, 1))
        uow = holder["uow"]
        if uow.shards:
            self.outbox_dirty |= uow.shards
            self.outbox_signal.set()  # wake the relay now rather than at its next poll
        return result, uow

    async def page(self, collection: str, query: dict[str, Any], sort: list[tuple[str, int]],
                   cursor: str | None, limit: int, projection: dict[str, Any] | None = None
                   ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list route (shared.paging: keyset on `sort` then `_id`)."""
        from shared import paging

        return await paging.page(self.db[collection], query, sort, cursor, limit, projection)

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        """Events not yet published, and when the oldest of them was committed."""
        docs = await self.db.outbox.find(
            self.all_of_the_outbox(sent_at=None), {"count": 1, "created_at": 1, "seq": 1},
            hint=OUTBOX_INDEX).to_list(None)
        oldest = min(docs, key=lambda d: d["seq"])["created_at"] if docs else None
        return sum(d["count"] for d in docs), oldest

    async def outbox_events(self, *, pending: bool = False) -> list[dict[str, Any]]:
        """The events in the outbox (only the unpublished ones if `pending`), in commit
        order, each with its document's `sent_at` (for tests and operators' tools)."""
        q = self.all_of_the_outbox(**({"sent_at": None} if pending else {}))
        docs = await self.db.outbox.find(q, hint=OUTBOX_INDEX).to_list(None)
        return [{**e, "sent_at": d["sent_at"]} for d in sorted(docs, key=lambda d: d["seq"])
                for e in d["events"]]

    async def close(self) -> None:
        r = self.client.close()
        if asyncio.iscoroutine(r):  # PyMongo's async client closes asynchronously
            await r

