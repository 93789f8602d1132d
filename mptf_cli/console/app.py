"""The operator console (port 8005): the pipeline by stage, funds against yearly targets, GCM
objective coverage, programmes at risk, service health, consumer lag and dead letters. It
reads the services' HTTP APIs and the broker; it owns no data."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from mptf_cli import kafka_tools
from shared import topics
from shared.auth import TokenSource
from shared.settings import ServiceSettings

PAGE = Path(__file__).with_name("index.html")


class ConsoleSettings(ServiceSettings):
    service_name: str = "console"

    @property
    def kafka_user(self) -> str:  # the operators' principal: reads, never writes facts
        return self.kafka_username or "operator"
    http_port: int = 8005
    intake_url: str = "http://127.0.0.1:8001"
    funding_url: str = "http://127.0.0.1:8002"
    monitoring_url: str = "http://127.0.0.1:8003"
    notifications_url: str = "http://127.0.0.1:8004"
    console_token: str = ""  # an operator's token; else one is issued with the local key
    auth_signing_key: str = ".run/dev/auth/signing-key.pem"


def build(settings: ConsoleSettings | None = None) -> FastAPI:
    s = settings or ConsoleSettings()
    app = FastAPI(title="Migration MPTF — operator console")
    urls = {"intake": s.intake_url, "funding": s.funding_url, "monitoring": s.monitoring_url,
            "notifications": s.notifications_url}
    tokens = TokenSource(s.auth_signing_key, role="operator", name="operator console")

    def auth() -> dict[str, str]:
        return ({"authorization": f"Bearer {s.console_token}"} if s.console_token
                else tokens.header())

    async def fetch(http: httpx.AsyncClient, url: str) -> Any:
        try:
            r = await http.get(url, headers=auth())
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/api/summary")
    async def summary() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=3) as http:
            health = await asyncio.gather(*(fetch(http, f"{u}/readyz") for u in urls.values()))
            portfolio, fund = await asyncio.gather(
                fetch(http, f"{s.monitoring_url}/v1/portfolio"),
                fetch(http, f"{s.funding_url}/v1/fund"))
        try:
            lag_rows = await kafka_tools.consumer_lag(s.kafka_bootstrap_servers,
                                                      s.topic_prefix + "mptf-",
                                                      auth=s.kafka_options())
            dlq = await kafka_tools.dead_letter_counts(
                s.kafka_bootstrap_servers, [s.topic(topics.dlq(t)) for t in topics.CONSUMED],
                auth=s.kafka_options())
        except Exception as e:
            lag_rows, dlq = [], {"error": str(e)}
        lag: dict[str, int] = {}
        for r in lag_rows:
            lag[r["group"].removeprefix(s.topic_prefix)] = lag.get(
                r["group"].removeprefix(s.topic_prefix), 0) + r["lag"]
        return {
            "health": {name: (h or {}).get("status", "unreachable")
                       for name, h in zip(urls, health, strict=True)},
            "pipeline": {k: v["programmes"] for k, v in
                         ((portfolio or {}).get("by_status") or {}).items()},
            "fund": None if fund is None else {
                "available_usd": fund["available_usd"], "allocated_usd": fund["allocated_usd"],
                "contributions_usd": fund["sources"]["contributions_usd"],
                "transfers_usd": fund["uses"]["transfers_usd"],
                "by_year": fund["by_year"], "targets": fund["targets"]},
            "coverage": {o: {"title": c["title"], "allocated_usd": c["allocated_usd"],
                             "programmes": c["programmes"]} for o, c in
                         ((portfolio or {}).get("gcm_objective_coverage") or {}).items()},
            "at_risk": (portfolio or {}).get("at_risk", []),
            "beneficiaries": (portfolio or {}).get("beneficiaries_reached", 0),
            "lag": lag,
            "dead_letters": {k.removeprefix(s.topic_prefix): v for k, v in dlq.items()},
        }

    return app


def main() -> None:
    import uvicorn

    s = ConsoleSettings()
    uvicorn.run(build(s), host=s.http_host, port=s.http_port, log_level="warning")
