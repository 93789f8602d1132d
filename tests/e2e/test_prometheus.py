"""Prometheus, Debian's package as `./dev up` runs it, scrapes the four running services with
the project's own scrape configuration, sees the business figures of a real flow, and
evaluates every query of the Grafana dashboard without an error."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE
from tests.support import (
    IOM,
    ROOT,
    eventually,
    free_port,
    pledge_and_deposit,
    start_service,
    stop_all,
    unique,
    wait_ready,
)

SERVICES = ("intake", "funding", "monitoring", "notifications")
LOCAL_CONFIG = ROOT / "deploy/prometheus/prometheus.local.yml"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"


def test_both_scrape_configurations_are_valid_for_prometheus() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus package is needed: ./dev test installs it (apt-get)"
    for name in ("prometheus.local.yml", "prometheus.compose.yml"):
        r = subprocess.run([promtool, "check", "config", str(LOCAL_CONFIG.parent / name)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"


def scrape_config(ports: dict[str, int], path: Path) -> Path:
    """The local stack's configuration with this test's ports (and a 1 s interval)."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    (job,) = config["scrape_configs"]
    (targets,) = job["static_configs"]
    local_ports = [int(t.rsplit(":", 1)[1]) for t in targets["targets"]]
    assert local_ports == [8001, 8002, 8003, 8004]  # the services' own ports, in this order
    targets["targets"] = [f"127.0.0.1:{ports[s]}" for s in SERVICES]
    path.write_text(yaml.safe_dump(config))
    return path


def start_prometheus(binary: str, config: Path, port: int, workdir: Path) -> Any:
    """As deploy/local/stack.sh starts it."""
    return subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(workdir / "prometheus.log").open("w"), stderr=subprocess.STDOUT)


async def test_prometheus_scrapes_the_services_and_the_dashboard_queries_evaluate(
        tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is needed: ./dev test installs it (apt-get)"
    tag = unique("prom")
    ports = {s: free_port() for s in SERVICES}
    procs = [start_service(s, tag, p, tmp_path) for s, p in ports.items()]
    prom_port = free_port()
    procs.append(start_prometheus(prometheus, scrape_config(ports, tmp_path / "prometheus.yml"),
                                  prom_port, tmp_path))
    url = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            for p in ports.values():
                await wait_ready(http, p)
            await pledge_and_deposit(http, "c-NOR", "NOR", "1000000", base=url["funding"])
            r = await http.post(f"{url['intake']}/v1/concept-notes", json=CONCEPT_NOTE_EXAMPLE,
                                headers=IOM)
            assert r.status_code in (200, 201), r.text

            async def query(expr: str) -> dict[str, Any]:
                r = await http.get(f"{api}/query", params={"query": expr})
                body = r.json()
                assert r.status_code == 200 and body["status"] == "success", (expr, body)
                return body["data"]

            async def values(expr: str) -> dict[str, float]:
                return {json.dumps(s["metric"], sort_keys=True): float(s["value"][1])
                        for s in (await query(expr))["result"]}

            async def scraped() -> bool:  # every service up, as Prometheus sees them
                try:
                    up = await values('up{job="mptf"}')
                except httpx.TransportError:
                    return False
                return len(up) == 4 and set(up.values()) == {1.0}

            await eventually(scraped, timeout=60)

            async def figures() -> bool:  # each service's own counters, from its own /metrics
                got = {k: await values(f'sum(mptf_business_events_total{{kind="{k}"}})')
                       for k in ("notes_received", "notes_eligible")}
                usd = await values('sum(mptf_usd_total{kind="deposited"})')
                return (all(list(v.values()) == [1.0] for v in got.values())
                        and list(usd.values()) == [1000000.0])

            await eventually(figures, timeout=30)
            async def lag_seen() -> bool:  # each consumer reports after its batch, and
                # Prometheus sees it at its next scrape: poll, as for the figures above
                lag = await values(f'sum by (topic) (mptf_consumer_lag{{topic=~"{tag}.*"}})')
                return {json.loads(k)["topic"] for k in lag} >= {
                    f"{tag}.mptf.programmes", f"{tag}.mptf.funding"}

            await eventually(lag_seen, timeout=30)
            http_red = await values('sum by (route, status) (mptf_http_requests_total)')
            assert any(json.loads(k) == {"route": "/v1/concept-notes", "status": "201"}
                       for k in http_red), http_red

            exprs = [(p["title"], t["expr"]) for f in DASHBOARDS.glob("*.json")
                     for p in json.loads(f.read_text())["panels"] for t in p["targets"]]
            assert len(exprs) >= 10
            main = {"Services up", "Consumer lag by topic", "Events consumed by outcome",
                    "HTTP requests by route and status (RED)",
                    "Business: notes, approvals, allocations",
                    "USD moved (deposited, allocated, transferred, refunded)"}
            assert main <= {title for title, _ in exprs}

            async def panels_with_data() -> bool:
                empty = set()
                for title, expr in exprs:  # each evaluates (a PromQL error fails here)
                    if not (await query(expr))["result"]:
                        empty.add(title)
                return not main & empty  # rates need two scrapes after the first change

            await eventually(panels_with_data, timeout=30)
    finally:
        stop_all(procs)
