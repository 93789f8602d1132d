"""Notifications' wiring: settings, store, runtime, handlers, dispatcher, routes."""

from __future__ import annotations

from services.notifications import api, handlers
from services.notifications.channels import Senders
from services.notifications.domain import CircuitBreaker
from services.notifications.service import Dispatcher
from services.notifications.store import NotificationsStore
from shared.http import create_app, include_api
from shared.runtime import Runtime
from shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: int = 8004
    # each fact becomes several notices (rendered text and HTML each) held until the batch
    # commits, for each of three subscriptions at once: smaller batches than the other
    # services' keep the process's peak memory down (RSS, issue 17)
    consumer_batch_max: int = 100

    max_attempts: int = 6
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 600.0
    breaker_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0
    send_timeout_seconds: float = 5.0
    webhook_max_response_bytes: int = 64 * 1024
    allow_private_webhooks: bool = False  # true only where receivers run on loopback (tests)
    delivery_lease_seconds: float = 60.0
    dispatcher_poll_seconds: float = 0.5
    digest_hour_utc: int = 6
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    email_from: str = "notifications@migrationmptf.org"


class _Store(NotificationsStore):
    async def indexes(self) -> None:
        await super().indexes()
        await self.seed_directory()  # before any consumer starts


def build(settings: NotificationsSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or NotificationsSettings()
    store = _Store(settings)
    runtime = Runtime(settings, store)
    senders = Senders(timeout=settings.send_timeout_seconds,
                      max_response_bytes=settings.webhook_max_response_bytes,
                      allow_private=settings.allow_private_webhooks,
                      smtp_host=settings.smtp_host, smtp_port=settings.smtp_port,
                      email_from=settings.email_from)
    dispatcher = Dispatcher(store, senders, max_attempts=settings.max_attempts,
                            backoff_base=settings.backoff_base_seconds,
                            backoff_cap=settings.backoff_cap_seconds,
                            lease_seconds=settings.delivery_lease_seconds,
                            breaker=CircuitBreaker(settings.breaker_threshold,
                                                   settings.breaker_cooldown_seconds),
                            poll=settings.dispatcher_poll_seconds)
    store.members.on_reap.append(store.orphaned)  # a dead replica's claims, due again
    handlers.register(runtime, store, digest_hour=settings.digest_hour_utc, wake=dispatcher.wake)
    runtime.background(dispatcher.run)
    app = create_app(runtime, title="Migration MPTF — notifications",
                     description="Alerts to PUNOs, donors and RC offices through signed "
                                 "webhooks, e-mail and an inbox; the delivery log.")
    app.state.store = store
    app.state.dispatcher = dispatcher
    app.state.senders = senders
    include_api(app, api)
    return app, runtime


def main() -> None:
    from shared.runtime import run_service

    run_service(build, NotificationsSettings)
