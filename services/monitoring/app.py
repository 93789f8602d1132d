"""Monitoring's wiring: settings (the reporting calendar and risk parameters), store,
runtime, handlers, scheduler, routes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from services.monitoring import api, handlers
from services.monitoring.domain import MonitoringRules
from services.monitoring.iati import Publisher
from services.monitoring.service import Scheduler
from services.monitoring.store import MonitoringStore
from shared.envelope import Clock
from shared.http import create_app, include_api
from shared.runtime import Runtime
from shared.settings import ServiceSettings


def _month_day(v: str) -> tuple[int, int]:
    m, d = v.split("-")
    return int(m), int(d)


_R = MonitoringRules()


class MonitoringSettings(ServiceSettings):
    """The MPTF Office calendar and risk parameters (domain.md): env MPTF_<NAME>."""

    service_name: str = "monitoring"
    http_port: int = 8003

    annual_narrative_due: str = "03-31"  # MM-DD of the following year
    annual_financial_due: str = "04-30"
    final_narrative_months: int = _R.final_narrative_months
    final_financial_due: str = "06-30"  # MM-DD of the year after the end date
    low_delivery_rate: Decimal = _R.low_delivery_rate
    low_delivery_after: Decimal = _R.low_delivery_after
    no_report_months: int = _R.no_report_months
    refund_threshold_usd: Decimal = _R.refund_threshold_usd
    scheduler_interval_seconds: float = 60.0
    scheduler_batch: int = 200  # programmes evaluated per transaction of a sweep
    # time travel for demos and end-to-end runs only: the service acts as of this moment
    clock_fixed: datetime | None = None
    iati_publisher_ref: str = "XM-DAC-41114"
    iati_publisher_name: str = "UNDP Multi-Partner Trust Fund Office"

    def rules(self) -> MonitoringRules:
        return MonitoringRules(
            annual_narrative_due=_month_day(self.annual_narrative_due),
            annual_financial_due=_month_day(self.annual_financial_due),
            final_narrative_months=self.final_narrative_months,
            final_financial_due=_month_day(self.final_financial_due),
            low_delivery_rate=self.low_delivery_rate,
            low_delivery_after=self.low_delivery_after,
            no_report_months=self.no_report_months,
            refund_threshold_usd=self.refund_threshold_usd)


def build(settings: MonitoringSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or MonitoringSettings()
    rules = settings.rules()
    store = MonitoringStore(settings, rules=rules)  # (each programme's next check)
    runtime = Runtime(settings, store)
    clock = Clock(settings.clock_fixed)  # the time the service acts at (HTTP, Kafka, sweeps)
    handlers.register(runtime, store, rules, clock.now)
    scheduler = Scheduler(store, rules, clock=clock.now,
                          interval=settings.scheduler_interval_seconds,
                          batch=settings.scheduler_batch)
    runtime.background(scheduler.run)
    app = create_app(runtime, title="Migration MPTF — monitoring",
                     description="Progress reports, results, spending, overdue detection, "
                                 "closure, the portfolio view and IATI open data.")
    app.state.store = store
    app.state.rules = rules
    app.state.scheduler = scheduler
    app.state.clock = clock
    app.state.publisher = Publisher(ref=settings.iati_publisher_ref,
                                    name=settings.iati_publisher_name)
    include_api(app, api)
    return app, runtime


def main() -> None:
    from shared.runtime import run_service

    run_service(build, MonitoringSettings)
