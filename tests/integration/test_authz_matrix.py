"""The authorization matrix: every route of every service's OpenAPI document, called with
no token and as each role, answers as the README's table "Who may call what" says; a route
the table does not list (or a listed route that no longer exists) fails the test."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from services.intake.app import IntakeSettings
from services.intake.app import build as build_intake
from services.monitoring.app import MonitoringSettings
from services.monitoring.app import build as build_monitoring
from services.notifications.app import NotificationsSettings
from services.notifications.app import build as build_notifications
from tests.integration.conftest import running
from tests.support import bearer, isolated, readme_authz_table, unique

SERVICES = {"intake": (build_intake, IntakeSettings),
            "funding": (build_funding, FundingSettings),
            "monitoring": (build_monitoring, MonitoringSettings),
            "notifications": (build_notifications, NotificationsSettings)}
CALLERS: dict[str, tuple[dict[str, str], str]] = {  # headers, the caller's own code
    "anonymous": ({}, "IOM"), "entity": (bearer("dev-iom"), "IOM"),
    "fmu": (bearer("dev-fmu"), "IOM"), "funder": (bearer("dev-funder-de"), "DEU"),
    "operator": (bearer("dev-operator"), "IOM"), "rco": (bearer("dev-rco-ph"), "RCO-PH")}


def readme_table() -> dict[tuple[str, str, str], dict[str, str]]:
    return readme_authz_table(list(SERVICES))


def concrete(path: str, own: str) -> str:
    return (path.replace("{programme_id}", "jp-none").replace("{contribution_id}", "c-none")
            .replace("{notification_id}", "n-none").replace("{code}", own))


async def test_every_route_answers_every_role_as_the_readme_says() -> None:
    table = readme_table()
    tag = unique("authz")
    seen: set[tuple[str, str, str]] = set()
    wrong: list[str] = []
    async with AsyncExitStack() as stack:
        for svc, (build, settings_cls) in SERVICES.items():
            app, _rt, http = await stack.enter_async_context(
                running(build, isolated(settings_cls, tag=tag)))
            for path, ops in app.openapi()["paths"].items():
                for method in ops:
                    key = (svc, method.upper(), path)
                    seen.add(key)
                    assert key in table, f"{svc} {method.upper()} {path} is not in the README"
                    for role, expected in table[key].items():
                        headers, own = CALLERS[role]
                        kw: dict[str, Any] = {"json": {}} if method in ("post", "put") else {}
                        r = await http.request(method.upper(), concrete(path, own),
                                               headers=headers, **kw)
                        ok = (r.status_code == int(expected) if expected.isdigit()
                              else r.status_code not in (401, 403) and r.status_code < 500)
                        if expected == "401" and ok:
                            ok = r.headers.get("www-authenticate", "").startswith("Bearer")
                        if not ok:
                            wrong.append(f"{svc} {method.upper()} {path} as {role}: "
                                         f"{r.status_code}, README says {expected}")
    assert not wrong, "\n".join(wrong)
    assert set(table) == seen, f"the README lists routes that do not exist: {set(table) - seen}"
