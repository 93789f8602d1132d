"""One service process: settings, logging, tracing, store, broker, producer, outbox relay and
subscriptions, wired the same way in every service.

Start-up connects in the background with backoff: /healthz answers at once, /readyz says
"not-ready" until the broker and the store are reachable, and an unreachable dependency never
crashes the process (no crash loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry import trace

from shared.asyncapi import document
from shared.consumer import Handler, Subscription, carry_offsets, subscribe
from shared.contracts import REGISTRY
from shared.envelope import utcnow
from shared.kafka import DeadLetters, KafkaCredentialsMissing, make_producer
from shared.logging import get_logger, setup_logging
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.startup import settle_heap
from shared.store import Store, is_transient
from shared.telemetry import setup_tracing, shutdown_tracing

log = get_logger("mptf.runtime")


class _Broker(KafkaBroker):
    """FastStream's Kafka broker, consuming only (see Runtime), whose subscribers' consumers
    start together: each start is a round of connection, SASL and metadata with the broker,
    which FastStream awaits one after another (3 subscriptions: ~0.15 s of a service's
    start-up, issue 17). When one fails, the others are let finish starting before the
    error is raised: the connect loop then stops the broker, which stops every consumer that
    started (one still starting would be left running in its group, holding partitions
    nobody polls). Otherwise FastStream's own start (0.7.8)."""

    async def start(self) -> None:
        await self.connect()
        results = await asyncio.gather(*(sub.start() for sub in self.subscribers),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        for pub in self.publishers:
            await pub.start()
        self.running = True


class Runtime:
    def __init__(self, settings: ServiceSettings, store: Store) -> None:
        self.settings = settings
        setup_logging(settings.service_name, settings.log_level, settings.log_file)
        setup_tracing(settings.service_name, settings.otel_exporter, settings.otel_endpoint,
                      settings.otel_file, settings.otel_sample_ratio)
        self.store = store
        self.credentials_error: str | None = None  # set when Kafka credentials are missing
        # Consuming only: events go out through the outbox relay's producer (`make_producer`),
        # so FastStream's own producer and admin client, which it would connect at every
        # start, have nothing to do (and the service's credentials need no admin rights).
        # FastStream's telemetry middleware spans each consumed batch (linked to every
        # producer); shared.consumer adds one span per record as a child of its producer.
        # The brokers as a list: FastStream takes one string as one address, "a:9092,b:9092"
        # included.
        self.broker = _Broker(settings.bootstrap_servers,
                              client_id=f"mptf-{settings.service_name}",
                              security=self._security(), consumer_only=True,
                              # entity systems added later are found within this time
                              metadata_max_age_ms=30_000,
                              log_level=logging.DEBUG,
                              middlewares=(KafkaTelemetryMiddleware(
                                  tracer_provider=trace.get_tracer_provider()),))
        # aiokafka clients must be made inside the running loop: see _connect
        self.producer: Any = None
        self.relay: OutboxRelay | None = None
        self.subscriptions: list[Subscription] = []
        self.receives: dict[str, list[str]] = {}
        self.ready = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[Any]] = []

    def _security(self) -> Any:
        """The broker's SASL settings; without credentials none, and `_connect` then refuses
        to connect at all (no anonymous client), keeping the service not ready."""
        try:
            return broker_security(self.settings)
        except KafkaCredentialsMissing as e:
            self.credentials_error = str(e)
            return None

    def dead_letters(self, name: str) -> DeadLetters:
        return DeadLetters(self.producer, f"{self.settings.service_name}.{name}")

    def subscribe(self, topic: str | tuple[str, ...], name: str, accepts: Iterable[str],
                  handler: Handler, *, strict_types: bool = True,
                  replaces: tuple[str, ...] = ()) -> Subscription:
        """`topic` several fact topics: one consumer for them (shared.consumer.subscribe);
        `replaces`: the subscriptions it takes over, whose offsets it starts from."""
        accepts = list(accepts)
        if isinstance(topic, str):
            self.receives.setdefault(topic, []).extend(accepts)
        else:  # each topic's own types
            for t in topic:
                self.receives.setdefault(t, []).extend(
                    a for a in accepts if REGISTRY[a].topic == t)
        sub = subscribe(self.broker, self.settings, topic=topic, name=name, accepts=accepts,
                        handler=handler, dead_letters=lambda: self.dead_letters(name),
                        strict_types=strict_types, replaces=replaces)
        self.subscriptions.append(sub)
        return sub

    def background(self, coro_fn: Any) -> None:
        """Run a coroutine function (a scheduler, say) once the runtime is ready."""
        self._background.append(coro_fn)

    def asyncapi(self) -> dict[str, Any]:
        return document(self.settings.service_name, receives=self.receives)

    async def _retention(self) -> None:
        """Store.prune now and every `retention_sweep_seconds`."""
        async def sweep() -> None:
            deleted = await self.store.prune()
            if any(deleted.values()):
                log.info("retention_pruned", **deleted)

        await keep_running("retention", sweep, lambda _: asyncio.sleep(
            self.settings.retention_sweep_seconds), cap=self.settings.retention_sweep_seconds)

    # -- lifecycle ------------------------------------------------------------------------
    async def _connect(self) -> None:
        delay = 0.5
        while True:
            if self.credentials_error:
                log.error("kafka_credentials_missing", error=self.credentials_error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            try:
                t = [time.perf_counter()]
                await self.store.ensure_indexes()
                t.append(time.perf_counter())
                self.producer = make_producer(self.settings)
                await self.producer.start()
                t.append(time.perf_counter())
                for sub in self.subscriptions:  # (before their groups first join)
                    await carry_offsets(self.settings, sub)
                await self.broker.start()
                t.append(time.perf_counter())
                break
            except Exception as e:
                log.warning("dependencies_unavailable", error=repr(e), retry_in=delay)
                if self.producer is not None:
                    with contextlib.suppress(Exception):
                        await self.producer.stop()
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        self.store.members.start()  # alive among the replicas; reaps the dead ones
        self.relay = OutboxRelay(self.store, self.producer)
        self.relay.start()
        self._background = [asyncio.create_task(fn(), name=getattr(fn, "__name__", "bg"))
                            for fn in (*self._background, self._retention)]
        self.ready.set()
        log.info("service_ready", http_port=self.settings.http_port,
                 since_spawn_s=round(_age(), 2),
                 indexes_s=round(t[1] - t[0], 2), producer_s=round(t[2] - t[1], 2),
                 subscribers_s=round(t[3] - t[2], 2),
                 kafka=self.settings.kafka_bootstrap_servers, database=self.settings.database)

    async def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect(), name="connect")

    async def stop(self) -> None:
        if self._connect_task and not self._connect_task.done():
            self._connect_task.cancel()
        for t in self._background:
            if isinstance(t, asyncio.Task):
                t.cancel()
        if self.relay is not None:
            await self.relay.stop()
        await self.store.members.leave()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        await self.store.close()
        shutdown_tracing()

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.store.ping(), 2)
            checks["store"] = "ok"
        except Exception as e:
            checks["store"] = f"unreachable: {type(e).__name__}"
        try:
            # a metadata request answered (the same request FastStream's ping made through
            # its admin client), through the relay's producer
            ok = self.ready.is_set() and bool(await asyncio.wait_for(
                self.producer.client.fetch_all_metadata(), 2))
            checks["broker"] = "ok" if ok else "unreachable"
        except Exception as e:
            checks["broker"] = f"unreachable: {type(e).__name__}"
        return checks

    async def refresh_gauges(self) -> None:
        with contextlib.suppress(Exception):
            n, oldest = await asyncio.wait_for(self.store.outbox_backlog(), 2)
            OUTBOX_BACKLOG.set(n)
            OUTBOX_OLDEST_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0)


def _age() -> float:
    """Seconds since this process was spawned (from /proc: its start tick against the
    uptime); 0 where there is no /proc."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def broker_security(settings: ServiceSettings) -> Any:
    """FastStream's security object for the service's own principal (no anonymous client)."""
    from faststream.security import SASLScram256, SASLScram512

    opts = settings.kafka_options()
    cls = SASLScram512 if settings.kafka_sasl_mechanism == "SCRAM-SHA-512" else SASLScram256
    return cls(opts["sasl_plain_username"], opts["sasl_plain_password"],
               ssl_context=opts.get("ssl_context"),
               use_ssl=settings.kafka_security_protocol == "SASL_SSL")


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    import uvicorn

    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None,
                access_log=False, timeout_graceful_shutdown=5)


async def keep_running(name: str, step: Callable[[], Awaitable[Any]],
                       pace: Callable[[Any], Awaitable[None]], cap: float) -> None:
    """A background worker's loop, the same everywhere: run `step` for ever, `pace(result)`
    between rounds; an error is logged (a warning when transient) and retried with
    exponential backoff up to `cap` seconds, so the worker outlives any one failure.
    Cancellation stops it."""
    delay = 1.0
    while True:
        try:
            result = await step()
            delay = 1.0
            await pace(result)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            (log.warning if is_transient(e) else log.exception)(f"{name}_error", error=repr(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)


def run_service(build: Any, settings_cls: type[ServiceSettings]) -> None:
    """A service's process entry point: its settings from the environment, then serve (the
    garbage collector tuned for the process's life once the app is built: shared.startup)."""
    settings = settings_cls()
    app, _ = build(settings)
    settle_heap()
    serve(app, settings)
