"""Notifications' wiring."""

from __future__ import annotations

from services.notifications import api, handlers
from services.notifications.store import NotificationsStore
from shared.http import create_app
from shared.runtime import Runtime
from shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: int = 8004


def build(settings: NotificationsSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or NotificationsSettings()
    store = NotificationsStore(settings)
    runtime = Runtime(settings, store)
    handlers.register(runtime, store)
    app = create_app(runtime, title="Migration MPTF — notifications",
                     description="Alerts to PUNOs, donors and RC offices; the delivery log.")
    app.state.store = store
    app.include_router(api.router)
    return app, runtime


def main() -> None:
    from shared.runtime import serve

    settings = NotificationsSettings()
    app, _ = build(settings)
    serve(app, settings)
