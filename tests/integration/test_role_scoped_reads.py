"""Role-scoped reads: a funder sees its own contributions and what its money funded, never
another donor's lines; programmes are visible to funders from approval on, in every
service; an entity sees only its own programmes."""

from __future__ import annotations

from services.funding.app import FundingSettings
from services.funding.app import build as build_funding
from services.monitoring.app import MonitoringSettings
from services.monitoring.app import build as build_monitoring
from tests.integration.conftest import running
from tests.integration.test_funding_api import screened, setup
from tests.integration.test_monitoring import funded_programme, publish
from tests.support import DEU, FMU, IOM, OPERATOR, UNDP, eventually, isolated, pledge_and_deposit


async def test_the_fund_view_shows_a_funder_its_own_line_only() -> None:
    s = isolated(FundingSettings)
    async with running(build_funding, s) as (_, rt, http):
        await setup(http, rt, s, screened("jp-r"))
        await pledge_and_deposit(http, "c-NOR", "NOR", "300000")
        await pledge_and_deposit(http, "c-DEU", "DEU", "500000")
        lines = {}
        for who, hdrs in (("fmu", FMU), ("operator", OPERATOR), ("funder", DEU),
                          ("entity", IOM)):
            r = await http.get("/v1/fund", headers=hdrs)
            assert r.status_code == 200, r.text
            lines[who] = r.json()["by_contributor"]
        assert set(lines["fmu"]) == set(lines["operator"]) == {"NOR", "DEU"}
        assert lines["funder"] == {"DEU": lines["fmu"]["DEU"]}
        assert lines["entity"] == {}
        assert (await http.get("/v1/contributions", headers=IOM)).status_code == 403
        mine = (await http.get("/v1/contributions", headers=DEU)).json()
        assert [c["contributor"] for c in mine] == ["DEU"]


async def test_monitoring_shows_funders_a_programme_only_from_approval_on() -> None:
    s = isolated(MonitoringSettings)
    facts = funded_programme("jp-vis", "2026-01-15T00:00:00Z", 24)
    async with running(build_monitoring, s) as (_, rt, http):
        await publish(s, facts[:1])  # screened only: not yet decided

        async def known() -> bool:
            return await rt.store.db.programmes.count_documents({"_id": "jp-vis"}) == 1

        await eventually(known)
        assert (await http.get("/v1/programmes/jp-vis", headers=FMU)).status_code == 200
        assert (await http.get("/v1/programmes/jp-vis", headers=IOM)).status_code == 200
        assert (await http.get("/v1/programmes/jp-vis", headers=DEU)).status_code == 404
        assert (await http.get("/v1/programmes/jp-vis", headers=UNDP)).status_code == 404
        assert (await http.get("/v1/programmes/jp-vis/reports",
                               headers=DEU)).status_code == 404

        await publish(s, facts[1:2])  # the SC approved it

        async def visible() -> bool:
            return (await http.get("/v1/programmes/jp-vis", headers=DEU)).status_code == 200

        await eventually(visible)
