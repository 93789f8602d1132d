"""Contracts owned by monitoring: the inbound progress report and the implementation facts on
mptf.monitoring. Results are aggregates only: no personal data of migrants."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import topics
from shared.contracts.base import Command, Fact, Money, register

ReportKind = Literal["annual-narrative", "annual-financial", "final-narrative",
                     "final-financial"]
Count = Annotated[int, Field(ge=0, le=1_000_000_000)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Indicator(_Part):
    """One result indicator: baseline, target, achieved (cumulative to the period's end)."""

    code: Annotated[str, Field(min_length=1, max_length=40)]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    result_type: Literal["output", "outcome", "impact"] = "output"
    unit: Annotated[str, Field(min_length=1, max_length=40)] = "count"
    baseline: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0
    target: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    achieved: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    gcm_objective: int | None = Field(None, ge=1, le=23)


class Beneficiaries(_Part):
    """People reached in the period, as aggregates; each breakdown given must add up to the
    total (the disaggregations GCM objective 1 names)."""

    total: Count
    by_sex: dict[Literal["female", "male", "other"], Count] = Field(default_factory=dict)
    by_age: dict[Literal["0-17", "18-24", "25-59", "60+"], Count] = Field(default_factory=dict)
    by_migratory_status: dict[Literal["migrants", "returnees", "host-community",
                                      "displaced", "other"], Count] = Field(
        default_factory=dict)


class Spend(_Part):
    entity: Annotated[str, Field(min_length=2, max_length=20)]
    amount_usd: Annotated[Money, Field(ge=0)]


REPORT_EXAMPLE = {
    "report_id": "IOM-PHL-2027-AN", "programme_id": "jp-3f1c0c1e9b7a4d2e",
    "kind": "annual-narrative", "year": 2027,
    "narrative": "A national data-governance strategy was adopted; 296 officials trained.",
    "indicators": [{"code": "1.1", "title": "Officials trained on migration data",
                    "result_type": "output", "unit": "people", "baseline": 0, "target": 300,
                    "achieved": 296, "gcm_objective": 1}],
    "beneficiaries": {"total": 1200, "by_sex": {"female": 640, "male": 560},
                      "by_age": {"18-24": 200, "25-59": 900, "60+": 100},
                      "by_migratory_status": {"migrants": 700, "returnees": 300,
                                              "host-community": 200}},
    "expenditure": [],
}


@register(topic=topics.INBOUND_PROGRESS_REPORTS, owner="monitoring", key="programme_id",
          example=REPORT_EXAMPLE, inbound=True)
class SubmitProgressReport(Command):
    """A PUNO's progress report: annual (narrative or financial, for a calendar year) or
    final. Narrative reports carry indicators and beneficiaries; financial reports carry
    expenditure per PUNO for the period (USD strings).

    Published by entity systems on mptf.inbound.progress-reports or POSTed to monitoring's
    /v1/programmes/{id}/reports; the same body either way."""

    PRIVACY_BY_SERVICE = True  # refused with every other failed rule at once
    TYPE = "org.migrationmptf.progress-report.submit.v1"

    report_id: Annotated[str, Field(min_length=1, max_length=100)]
    programme_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: ReportKind
    year: int | None = Field(None, ge=2019, le=2100, description="For annual reports")
    narrative: Annotated[str, Field(max_length=10000)] = ""
    indicators: list[Indicator] = Field(default_factory=list, max_length=100)
    beneficiaries: Beneficiaries | None = None
    expenditure: list[Spend] = Field(default_factory=list, max_length=20)


@register(topic=topics.MONITORING, owner="monitoring", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "report_id": "IOM-PHL-2027-AN",
    "kind": "annual-narrative", "year": 2027, "submitted_by": "IOM",
    "submitted_at": "2028-03-01T00:00:00Z", "on_time": True, "beneficiaries": 1200,
    "expenditure_usd": "0.00", "channel": "kafka",
    "report": {**REPORT_EXAMPLE, "report_id": "IOM-PHL-2027-AN"}})
class ReportSubmitted(Fact):
    """A progress report was accepted. `report` is the report itself (aggregates only) and
    `channel` how it came: monitoring is rebuilt from its facts (`mptf rebuild`), so the
    fact carries what the report changed. Both are absent from facts published before
    they were added (consumers must accept that)."""

    TYPE = "org.migrationmptf.report.submitted.v1"

    programme_id: str
    report_id: str
    kind: ReportKind
    year: int | None = None
    submitted_by: str
    submitted_at: datetime
    on_time: bool
    beneficiaries: int = 0
    expenditure_usd: Money
    channel: Literal["http", "kafka"] | None = None
    report: SubmitProgressReport | None = None


@register(topic=topics.MONITORING, owner="monitoring", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "kind": "annual-financial", "year": 2027,
    "due": "2028-04-30", "detected_at": "2028-05-01T00:00:00Z",
    "punos": ["IOM", "ILO", "UN-WOMEN"]})
class ReportOverdue(Fact):
    """A report was not in by its deadline (emitted once per report and deadline)."""

    TYPE = "org.migrationmptf.report.overdue.v1"

    programme_id: str
    kind: ReportKind
    year: int | None = None
    due: date
    detected_at: datetime
    punos: list[str] = Field(default_factory=list)


@register(topic=topics.MONITORING, owner="monitoring", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "flags": ["report-overdue", "low-delivery"],
    "new_flags": ["low-delivery"], "delivery_rate": "0.2100",
    "detected_at": "2028-05-01T00:00:00Z"})
class ProgrammeAtRisk(Fact):
    """A programme gained a risk flag: report-overdue, low-delivery (late in the programme),
    or no-recent-report (none in 12 months)."""

    TYPE = "org.migrationmptf.programme.at-risk.v1"

    programme_id: str
    flags: list[str]
    new_flags: list[str]
    delivery_rate: str | None = None
    detected_at: datetime


@register(topic=topics.MONITORING, owner="monitoring", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "flags": ["low-delivery"],
    "cleared_flags": ["report-overdue"], "detected_at": "2028-05-20T00:00:00Z"})
class ProgrammeRiskCleared(Fact):
    """A programme lost a risk flag (an overdue report came in, say); `flags` are those it
    still has. Nobody is alerted: the flags shown are kept true by this and
    ProgrammeAtRisk together."""

    TYPE = "org.migrationmptf.programme.risk-cleared.v1"

    programme_id: str
    flags: list[str]
    cleared_flags: list[str]
    detected_at: datetime


@register(topic=topics.MONITORING, owner="monitoring", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "end_date": "2029-05-31",
    "closed_at": "2029-07-15T00:00:00Z"})
class ProgrammeOperationallyClosed(Fact):
    """Activities ended and the final narrative report is in."""

    TYPE = "org.migrationmptf.programme.operationally-closed.v1"

    programme_id: str
    end_date: date
    closed_at: datetime


class Unspent(_Part):
    entity: str
    transferred_usd: Money
    expenditure_usd: Money
    unspent_usd: Money
    refund_usd: Money


@register(topic=topics.MONITORING, owner="monitoring", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "closed_at": "2030-06-01T00:00:00Z",
    "balances": [{"entity": "IOM", "transferred_usd": "1284000.00",
                  "expenditure_usd": "1270000.00", "unspent_usd": "14000.00",
                  "refund_usd": "14000.00"}],
    "refund_total_usd": "14000.00"})
class ProgrammeFinanciallyClosed(Fact):
    """The certified final financial report is in; unspent balances are declared for refund
    (funding books them). A leftover at or below the threshold (USD 250) need not be
    refunded."""

    TYPE = "org.migrationmptf.programme.financially-closed.v1"

    programme_id: str
    closed_at: datetime
    balances: list[Unspent]
    refund_total_usd: Money
