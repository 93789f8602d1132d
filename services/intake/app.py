"""Intake's wiring: settings, store, runtime, handlers, routes."""

from __future__ import annotations

from services.intake import api, handlers
from services.intake.store import IntakeStore
from shared.http import create_app
from shared.runtime import Runtime
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001


def build(settings: IntakeSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or IntakeSettings()
    store = IntakeStore(settings)
    runtime = Runtime(settings, store)
    handlers.register(runtime, store)
    app = create_app(runtime, title="Migration MPTF — intake",
                     description="Concept notes, screening and the programme pipeline.")
    app.state.store = store
    app.include_router(api.router)
    return app, runtime


def main() -> None:
    from shared.runtime import serve

    settings = IntakeSettings()
    app, _ = build(settings)
    serve(app, settings)
