"""The operator console in real headless Chromium (Debian's, driven by Playwright) against
the running services: it shows the real figures, updating live, and leaves a screenshot in
test-output/console.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

from shared import topics
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE
from tests.support import (
    FMU,
    IOM,
    ROOT,
    eventually,
    free_port,
    pledge_and_deposit,
    produce,
    start_service,
    stop_all,
    unique,
    wait_ready,
)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


async def test_the_console_shows_the_running_system(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: ./dev test installs it (apt-get)"
    tag = unique("console")
    ports = {s: free_port() for s in ("intake", "funding", "monitoring", "notifications")}
    procs = [start_service(s, tag, p, tmp_path) for s, p in ports.items()]
    console_port = free_port()
    procs.append(start_service("console", tag, console_port, tmp_path, module="mptf_cli.console",
                               **{f"MPTF_{s.upper()}_URL": f"http://127.0.0.1:{p}"
                                  for s, p in ports.items()}))
    url = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            for p in ports.values():
                await wait_ready(http, p)
            await pledge_and_deposit(http, "c-ESP", "ESP", "2500000", base=url["funding"],
                                     pledged="3000000", year=2024)  # covers 2,354,000
            ok = (await http.post(f"{url['intake']}/v1/concept-notes", json=CONCEPT_NOTE_EXAMPLE,
                                  headers=IOM)).json()
            await http.post(f"{url['intake']}/v1/concept-notes", headers=IOM,
                            json={**CONCEPT_NOTE_EXAMPLE, "entity_reference": "X",
                                  "duration_months": 60})
            await produce(f"{tag}.{topics.INBOUND_CONCEPT_NOTES}.IOM", [(b"k", b"{broken", [])])

            async def decidable() -> bool:
                r = await http.get(f"{url['funding']}/v1/programmes/{ok['programme_id']}/funding",
                                   headers=FMU)
                return r.status_code == 200

            await eventually(decidable)
            r = await http.post(f"{url['funding']}/v1/decisions", headers=FMU, json={
                "programme_id": ok["programme_id"], "decision": "approve",
                "decision_id": "sc", "priority": 1})
            assert r.json()["allocated"] is True
            fund = (await http.get(f"{url['funding']}/v1/fund", headers=FMU)).json()

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"http://127.0.0.1:{console_port}/")
            await page.wait_for_selector("body[data-loaded=true]", timeout=30_000)

            async def shows(selector: str, attr: str, value: str) -> bool:
                el = await page.query_selector(selector)
                return bool(el) and await el.get_attribute(attr) == value

            async def figures() -> bool:  # the page polls: wait for the live figures
                return (await shows('[data-kpi="available"]', "data-value",
                                    fund["available_usd"])
                        and await shows('[data-testid=pipeline] [data-label="on-going"]',
                                        "data-value", "1")
                        and await shows('[data-testid=pipeline] '
                                        '[data-label="screened-ineligible"]', "data-value", "1")
                        and await shows('[data-dlq="mptf.inbound.concept-notes.dlq"]',
                                        "class", "bad"))

            try:
                await eventually(figures, timeout=30)
            except AssertionError as e:
                async with httpx.AsyncClient() as http:
                    seen = (await http.get(f"http://127.0.0.1:{console_port}/api/summary")).text
                raise AssertionError(f"the console never showed the figures: {seen}") from e
            for service in ports:
                assert await page.inner_text(f'[data-service="{service}"]') == "ready"
            assert await page.get_attribute('[data-kpi="allocated"]', "data-value") == \
                fund["allocated_usd"] == "2354000.00"
            assert await page.inner_text('[data-dlq="mptf.inbound.concept-notes.dlq"]') == "1"
            covered = await page.eval_on_selector_all(
                "[data-testid=coverage] g", "els => els.map(e => e.dataset.label)")
            assert [c.split(".")[0] for c in covered] == ["1", "17", "23"]
            out = ROOT / "test-output"
            out.mkdir(exist_ok=True)
            await page.screenshot(path=str(out / "console.png"), full_page=True)
            await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            await browser.close()
            async with httpx.AsyncClient() as http:
                summary = (await http.get(f"http://127.0.0.1:{console_port}/api/summary")).json()
            assert summary["health"] == dict.fromkeys(ports, "ready")
        assert (out / "console.png").stat().st_size > 10_000
    finally:
        stop_all(procs)
