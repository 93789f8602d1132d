"""Funding's wiring. The service runs the shared runtime (health, readiness, metrics,
AsyncAPI, outbox relay) on its own database; its domain, store, handlers and routes come with
its issue."""

from __future__ import annotations

from shared.http import create_app
from shared.runtime import Runtime
from shared.settings import ServiceSettings
from shared.store import Store


class FundingSettings(ServiceSettings):
    service_name: str = "funding"
    http_port: int = 8002


def build(settings: FundingSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or FundingSettings()
    store = Store(settings)
    runtime = Runtime(settings, store)
    app = create_app(runtime, title="Migration MPTF — funding", description="Funding service.")
    app.state.store = store
    return app, runtime


def main() -> None:
    from shared.runtime import serve

    settings = FundingSettings()
    app, _ = build(settings)
    serve(app, settings)
