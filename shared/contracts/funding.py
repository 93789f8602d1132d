"""Contracts owned by funding: money and Steering Committee decisions on mptf.funding.

Funders may subscribe to mptf.funding directly: key = contribution id for contributions,
programme id for decisions, allocations and transfers. Amounts are USD strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import topics
from shared.contracts.base import Command, Fact, Money, register


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True)


@register(topic=topics.FUNDING, owner="funding", key="contribution_id", example={
    "contribution_id": "c-DEU-2026-01", "contributor": "DEU", "contributor_name": "Germany",
    "currency": "EUR", "amount": "5000000.00", "year": 2026,
    "pledged_at": "2026-02-01T09:00:00Z"})
class ContributionPledged(Fact):
    """A contributor pledged money to the Fund (not yet usable: only deposits fund)."""

    TYPE = "org.migrationmptf.contribution.pledged.v1"

    contribution_id: str
    contributor: str
    contributor_name: str
    currency: str
    amount: Money
    usd_estimate: Money | None = None  # for progress to targets; the deposit fixes the value
    year: int
    pledged_at: datetime


@register(topic=topics.FUNDING, owner="funding", key="contribution_id", example={
    "contribution_id": "c-DEU-2026-01", "contributor": "DEU", "currency": "EUR",
    "amount": "5000000.00", "usd_amount": "5400000.00", "fee_usd": "54000.00",
    "net_usd": "5346000.00", "year": 2026, "deposited_at": "2026-03-01T09:00:00Z",
    "deposit_id": "AA-2026-0301"})
class ContributionDeposited(Fact):
    """A contribution was deposited with the Administrative Agent; its fee (1%) was taken and
    the rest joined the Fund's net balance. `deposit_id` is the AA's reference of the deposit
    (absent from facts published before it was added)."""

    TYPE = "org.migrationmptf.contribution.deposited.v1"

    contribution_id: str
    contributor: str
    currency: str
    amount: Money
    usd_amount: Money
    fee_usd: Money
    net_usd: Money
    year: int
    deposited_at: datetime
    deposit_id: str | None = None


class ApprovedLine(_Part):
    entity: str
    budget_usd: Money


@register(topic=topics.FUNDING, owner="funding", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2026-03-07",
    "approved_budget": [{"entity": "IOM", "budget_usd": "1200000.00"},
                        {"entity": "ILO", "budget_usd": "500000.00"}],
    "total_budget_usd": "1700000.00", "priority": 1, "rationale": "Strong data component",
    "decided_at": "2026-11-23T10:00:00Z"})
class ProgrammeApproved(Fact):
    """The Steering Committee approved a programme, with its budget per PUNO (which may differ
    from the request) and its rank in the funding pipeline (1 = first)."""

    TYPE = "org.migrationmptf.programme.approved.v1"

    programme_id: str
    decision_id: str
    approved_budget: list[ApprovedLine]
    total_budget_usd: Money
    priority: int
    rationale: str = ""
    decided_at: datetime


@register(topic=topics.FUNDING, owner="funding", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2026-03-07",
    "rationale": "Overlaps an ongoing programme", "decided_at": "2026-11-23T10:00:00Z"})
class ProgrammeRejected(Fact):
    """The Steering Committee rejected a programme, with its rationale."""

    TYPE = "org.migrationmptf.programme.rejected.v1"

    programme_id: str
    decision_id: str
    rationale: str
    decided_at: datetime


@register(topic=topics.FUNDING, owner="funding", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2026-03-07",
    "rationale": "Awaiting the regional consultation", "decided_at": "2026-11-23T10:00:00Z"})
class ProgrammeDeferred(Fact):
    """The Steering Committee deferred its decision on a programme."""

    TYPE = "org.migrationmptf.programme.deferred.v1"

    programme_id: str
    decision_id: str
    rationale: str
    decided_at: datetime


class AllocationLine(_Part):
    entity: str
    programme_budget_usd: Money
    support_cost_usd: Money
    total_usd: Money


class FundingSource(_Part):
    contribution_id: str
    contributor: str
    usd: Money


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "allocation_id": "a-jp-3f1c0c1e9b7a4d2e",
    "lines": [{"entity": "IOM", "programme_budget_usd": "1200000.00",
               "support_cost_usd": "84000.00", "total_usd": "1284000.00"},
              {"entity": "ILO", "programme_budget_usd": "500000.00",
               "support_cost_usd": "35000.00", "total_usd": "535000.00"}],
    "total_usd": "1819000.00",
    "funded_by": [{"contribution_id": "c-DEU-2026-01", "contributor": "DEU",
                   "usd": "1819000.00"}],
    "allocated_at": "2026-11-23T10:00:00Z"})
class AllocationMade(Fact):
    """An approved programme was allocated its budget per PUNO plus the indirect support cost
    (7%), from deposited money; `funded_by` names the contributions it drew on (refunded
    money counts as the contributions it first came from)."""

    TYPE = "org.migrationmptf.allocation.made.v1"

    programme_id: str
    allocation_id: str
    lines: list[AllocationLine]
    total_usd: Money
    funded_by: list[FundingSource] = Field(default_factory=list)
    allocated_at: datetime


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "transfer_id": "t-jp-3f1c0c1e9b7a4d2e-IOM-1",
    "entity": "IOM", "tranche": 1, "amount_usd": "1284000.00",
    "transferred_at": "2026-11-23T10:00:00Z"})
class FundsTransferred(Fact):
    """The Administrative Agent transferred a tranche of an allocation to a PUNO."""

    TYPE = "org.migrationmptf.funds.transferred.v1"

    programme_id: str
    transfer_id: str
    entity: str
    tranche: int
    amount_usd: Money
    transferred_at: datetime


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "refund_id": "r-2029-IOM-01", "entity": "IOM",
    "amount_usd": "12000.00", "refunded_at": "2029-06-30T00:00:00Z"})
class FundsRefunded(Fact):
    """A PUNO refunded unspent money to the Fund; it is available to allocate again, still
    attributed to the contributions that funded the programme, in proportion."""

    TYPE = "org.migrationmptf.funds.refunded.v1"

    programme_id: str
    refund_id: str
    entity: str
    amount_usd: Money
    refunded_at: datetime


# -- changes after approval (Steering Committee decisions), and money coming back ------------
class RevisedLine(_Part):
    entity: str
    budget_usd: Money  # the PUNO's approved programme budget after the revision
    change_usd: Money  # against the budget before it (negative: moved away)


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2027-02-item-3", "revision": 1,
    "lines": [{"entity": "IOM", "budget_usd": "1400000.00", "change_usd": "200000.00"},
              {"entity": "ILO", "budget_usd": "500000.00", "change_usd": "0.00"}],
    "total_budget_usd": "1900000.00", "change_usd": "200000.00",
    "rationale": "Scale-up to two more provinces", "decided_at": "2027-02-10T10:00:00Z"})
class BudgetRevised(Fact):
    """The Steering Committee revised an approved budget: a top-up (the total grows) or a
    move between PUNOs (it does not). What grows is allocated like an allocation (from
    deposited money, at the programme's rank in the pipeline: an AllocationMade follows);
    what shrinks is released back to the Fund (an AllocationReleased follows)."""

    TYPE = "org.migrationmptf.budget.revised.v1"

    programme_id: str
    decision_id: str
    revision: int
    lines: list[RevisedLine]
    total_budget_usd: Money
    change_usd: Money
    rationale: str = ""
    decided_at: datetime


@register(topic=topics.FUNDING, owner="funding", key="programme_id", example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2028-06-item-2",
    "extension_months": 6, "total_extension_months": 6, "duration_months": 36,
    "rationale": "Elections delayed the national consultations",
    "decided_at": "2028-06-12T10:00:00Z"})
class ProgrammeExtended(Fact):
    """A no-cost extension: the programme runs `extension_months` longer with the same
    money; `duration_months` is its new duration (original plus every extension), within
    the Fund's limit. The reporting calendar moves with it."""

    TYPE = "org.migrationmptf.programme.extended.v1"

    programme_id: str
    decision_id: str
    extension_months: int
    total_extension_months: int
    duration_months: int
    rationale: str = ""
    decided_at: datetime


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2028-01-item-7",
    "rationale": "Security situation in the border provinces",
    "decided_at": "2028-01-20T10:00:00Z"})
class ProgrammeSuspended(Fact):
    """The Steering Committee suspended a programme: no transfer is released and no report
    is flagged overdue until it resumes."""

    TYPE = "org.migrationmptf.programme.suspended.v1"

    programme_id: str
    decision_id: str
    rationale: str
    decided_at: datetime


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2028-04-item-1",
    "rationale": "Access restored", "decided_at": "2028-04-02T10:00:00Z"})
class ProgrammeResumed(Fact):
    """The Steering Committee resumed a suspended programme."""

    TYPE = "org.migrationmptf.programme.resumed.v1"

    programme_id: str
    decision_id: str
    rationale: str = ""
    decided_at: datetime


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "decision_id": "sc-2028-04-item-9",
    "rationale": "The government withdrew its endorsement",
    "decided_at": "2028-04-02T10:00:00Z"})
class ProgrammeCancelled(Fact):
    """The Steering Committee cancelled an approved programme: what was allocated and not
    transferred returns to the Fund, what was transferred is owed back by each PUNO (an
    AllocationReleased follows)."""

    TYPE = "org.migrationmptf.programme.cancelled.v1"

    programme_id: str
    decision_id: str
    rationale: str
    decided_at: datetime


class ReleasedLine(_Part):
    entity: str
    released_usd: Money  # allocated, not transferred: back in the Fund's available balance
    owed_usd: Money  # transferred and not refunded: the PUNO owes it back


@register(topic=topics.FUNDING, also=(topics.FUNDERS,), owner="funding", key="programme_id",
          example={
    "programme_id": "jp-3f1c0c1e9b7a4d2e", "release_id": "rel-jp-3f1c0c1e9b7a4d2e-withdrawn",
    "reason": "withdrawn",
    "lines": [{"entity": "IOM", "released_usd": "642000.00", "owed_usd": "642000.00"},
              {"entity": "ILO", "released_usd": "267500.00", "owed_usd": "267500.00"}],
    "released_usd": "909500.00", "owed_usd": "909500.00",
    "funded_by": [{"contribution_id": "c-DEU-2026-01", "contributor": "DEU",
                   "usd": "909500.00"}],
    "released_at": "2027-05-02T10:00:00Z"})
class AllocationReleased(Fact):
    """Allocated money that will not be transferred went back to the Fund's available
    balance (to the contributions it came from, in proportion, as `funded_by` says): the
    programme was withdrawn or cancelled, closed with tranches unreleased, or its budget was
    revised down. What PUNOs were transferred and hold unspent is `owed_usd`, until their
    refunds are received (FundsRefunded)."""

    TYPE = "org.migrationmptf.allocation.released.v1"

    programme_id: str
    release_id: str
    reason: Literal["withdrawn", "cancelled", "closed", "revised"]
    lines: list[ReleasedLine]
    released_usd: Money
    owed_usd: Money
    funded_by: list[FundingSource] = Field(default_factory=list)
    released_at: datetime


@register(topic=topics.INBOUND_REFUNDS, owner="funding", key="programme_id", inbound=True,
          example={"programme_id": "jp-3f1c0c1e9b7a4d2e", "refund_id": "AA-R-2030-0017",
                   "amount_usd": "14000.00"})
class SubmitRefund(Command):
    """A PUNO's refund of unspent money to the Fund, as its system records it: published on
    its own topic mptf.inbound.refunds.<ENTITY> (the refunding PUNO is the sender). Funding
    books it when received, as the FMU's POST /v1/programmes/{id}/refunds does: at most what
    the PUNO holds of the programme; the same refund id (the AA's receipt reference) is
    booked once, whoever reports it."""

    TYPE = "org.migrationmptf.refund.submit.v1"

    programme_id: Annotated[str, Field(min_length=1, max_length=64)]
    refund_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    amount_usd: Annotated[Money, Field(gt=0)]
