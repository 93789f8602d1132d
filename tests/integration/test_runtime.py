"""A service's process wiring (shared.runtime) against the real broker and store: when it
says it is ready, and what its readiness check asks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from faststream.exceptions import IncorrectState

from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from tests.integration.conftest import running
from tests.support import eventually, free_port, isolated


async def test_ready_service_answers_readiness_through_its_own_clients() -> None:
    """Ready: the store answers a ping and the broker a metadata request, sent through the
    outbox relay's producer (FastStream's broker only consumes: no producer or admin client
    of its own), and every subscription's consumer was started."""
    async with running(build_intake, isolated(IntakeSettings)) as (_app, runtime, http):
        r = await http.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"store": "ok", "broker": "ok"}}
        assert runtime.broker.subscribers and all(
            sub.consumer is not None for sub in runtime.broker.subscribers)
        with pytest.raises(IncorrectState):  # FastStream's admin client was never connected
            runtime.broker.config.broker_config.admin_client  # noqa: B018
        asked = 0
        fetch = runtime.producer.client.fetch_all_metadata

        async def counted():  # type: ignore[no-untyped-def]
            nonlocal asked
            asked += 1
            return await fetch()

        runtime.producer.client.fetch_all_metadata = counted
        assert (await http.get("/readyz")).status_code == 200
        assert asked == 1


async def test_broker_that_does_not_answer_makes_the_service_not_ready() -> None:
    """A metadata request left unanswered (a stalled broker connection) is reported within the
    check's own time limit: 503, the broker unreachable, the store still ok."""
    async with running(build_intake, isolated(IntakeSettings)) as (_app, runtime, http):
        async def stalled():  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()

        runtime.producer.client.fetch_all_metadata = stalled
        r = await http.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "not-ready", "checks": {
            "store": "ok", "broker": "unreachable: TimeoutError"}}


async def test_service_without_a_broker_is_alive_and_never_ready() -> None:
    """Nothing listening where the broker should be: the process stays up (/healthz) and
    keeps saying not ready, retrying in the background; it does not crash."""
    settings = isolated(IntakeSettings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    app, runtime = build_intake(settings)
    await runtime.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://svc") as http:
            assert (await http.get("/healthz")).status_code == 200

            async def tried() -> bool:  # the store answered; the broker is being tried
                return runtime.producer is not None
            await eventually(tried, timeout=30)
            await asyncio.sleep(2)  # past the first retries (0.5 s, then 1 s)
            assert runtime._connect_task is not None and not runtime._connect_task.done()
            r = await http.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["broker"] == "unreachable"
            assert not runtime.ready.is_set()
    finally:
        await runtime.stop()


async def test_a_subscription_that_fails_to_start_leaves_none_still_starting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriptions' consumers start together; when one fails, start-up gives up only
    once every other one has finished starting, so stopping the broker (what the connect
    loop does before it tries again) stops them all: none is left running in its group,
    holding partitions that nobody polls."""
    _app, runtime = build_intake(isolated(IntakeSettings))
    subs = list(runtime.broker.subscribers)
    assert len(subs) >= 2 and len({type(s) for s in subs}) == 1  # (its notes and its facts)
    slow, failing = subs[0], subs[1]
    real = type(slow).start
    started: list[Any] = []

    async def start(self: Any) -> None:
        if self is failing:
            raise KafkaConnectionError("refused (as if the broker went away)")
        if self is slow:
            await asyncio.sleep(1)
        await real(self)
        started.append(self)

    monkeypatch.setattr(type(slow), "start", start)
    with pytest.raises(KafkaConnectionError):
        await runtime.broker.start()
    assert len(started) == len(subs) - 1 and slow in started
    assert all(s.consumer is not None for s in started)
    await runtime.broker.stop()
    assert all(s.consumer is None for s in subs)
