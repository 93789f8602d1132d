"""The HTTP commands funding accepts, validated at the door (Decimal money, known currency,
finite positive amounts): invalid input is a 422 naming the field; nothing changes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared.contracts.base import Money, SafeInput
from shared.reference import CURRENCIES

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Positive = Annotated[Money, Field(gt=0)]


class _Cmd(SafeInput):
    model_config = ConfigDict(extra="forbid")


def _example(example: dict[str, Any]) -> ConfigDict:
    """A command's configuration with the example OpenAPI shows."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class Pledge(_Cmd):
    model_config = _example(
        {"contribution_id": "c-DEU-2026-01", "contributor": "DEU",
         "contributor_name": "Germany", "currency": "EUR", "amount": "5000000.00",
         "usd_estimate": "5400000.00", "year": 2026})

    contribution_id: Id
    contributor: Annotated[str, Field(min_length=2, max_length=40)] = Field(
        description="ISO 3166 code of a Member State, or an organisation's id")
    contributor_name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: str = Field(description="ISO 4217")
    amount: Positive
    usd_estimate: Positive | None = None
    year: int = Field(ge=2019, le=2100)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, v: str) -> str:
        if v.upper() not in CURRENCIES:
            raise ValueError(f"{v!r} is not an ISO 4217 currency code")
        return v.upper()

    @field_validator("contributor")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class Deposit(_Cmd):
    model_config = _example(
        {"deposit_id": "AA-2026-0042", "amount": "2500000.00",
         "usd_amount": "2712500.00"})

    deposit_id: Id = Field(description="The AA's receipt reference; repeats are idempotent")
    amount: Positive = Field(description="In the pledge's currency")
    usd_amount: Positive = Field(description="USD value at deposit")


class BudgetLineIn(_Cmd):
    entity: Annotated[str, Field(min_length=2, max_length=20)]
    budget_usd: Positive

    @field_validator("entity")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class Decision(_Cmd):
    model_config = _example(
        {"programme_id": "jp-3f1c0c1e9b7a4d2e", "decision": "approve",
         "decision_id": "SC-2026-11-item-4", "priority": 1,
         "approved_budget": [{"entity": "IOM", "budget_usd": "1100000.00"},
                             {"entity": "ILO", "budget_usd": "600000.00"},
                             {"entity": "UN-WOMEN", "budget_usd": "400000.00"}]})

    programme_id: Annotated[str, Field(min_length=1, max_length=64)]
    decision: Literal["approve", "reject", "defer"]
    decision_id: Id = Field(description="The SC meeting's decision reference")
    rationale: Annotated[str, Field(max_length=5000)] = ""
    priority: int | None = Field(None, ge=1, le=10000,
                                 description="Rank in the funding pipeline (1 = first)")
    approved_budget: list[BudgetLineIn] | None = Field(
        None, max_length=20, description="Per PUNO; defaults to the requested budget")

    @model_validator(mode="after")
    def _shape(self) -> Decision:
        if self.decision == "approve" and self.priority is None:
            raise ValueError("an approval needs a priority (its rank in the pipeline)")
        if self.decision != "approve" and (self.priority is not None or self.approved_budget):
            raise ValueError("only an approval has a priority and a budget")
        if self.decision in ("reject", "defer") and not self.rationale.strip():
            raise ValueError(f"a decision to {self.decision} needs a rationale")
        return self


class Meeting(_Cmd):
    """A Steering Committee meeting's decisions, recorded together: each stands or falls on
    its own, and the pipeline is funded once after all of them."""

    model_config = _example(
        {"meeting_id": "SC-2026-11", "decisions": [
            {"programme_id": "jp-3f1c0c1e9b7a4d2e", "decision": "approve",
             "decision_id": "SC-2026-11-item-4", "priority": 1},
            {"programme_id": "jp-91b0d2c4a7e35f18", "decision": "defer",
             "decision_id": "SC-2026-11-item-5",
             "rationale": "Resubmit with the RC office's endorsement"}]})


    meeting_id: Id = Field(description="The SC meeting's reference")
    decisions: list[Decision] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _once_each(self) -> Meeting:
        ids = [d.programme_id for d in self.decisions]
        if len(set(ids)) != len(ids):
            raise ValueError("a meeting decides each programme once")
        return self


class Refund(_Cmd):
    model_config = _example(
        {"refund_id": "r-2029-IOM-01", "entity": "IOM",
         "amount_usd": "12000.00"})

    refund_id: Id
    entity: Annotated[str, Field(min_length=2, max_length=20)]
    amount_usd: Positive

    @field_validator("entity")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class ScDecision(_Cmd):
    """A Steering Committee decision on a programme already approved: its reference and why.
    (Suspension, resumption, cancellation.)"""

    model_config = _example({"decision_id": "SC-2028-01-item-7",
                             "rationale": "Security situation in the border provinces"})

    decision_id: Id = Field(description="The SC meeting's decision reference; a repeat of "
                                        "the same decision is answered as before")
    rationale: Annotated[str, Field(min_length=1, max_length=5000)]


class Extension(_Cmd):
    """A no-cost extension: the same money over a longer time, within the Fund's limit
    (MPTF_MAX_EXTENSION_MONTHS in all)."""

    model_config = _example({"decision_id": "SC-2028-06-item-2", "months": 6,
                             "rationale": "Elections delayed the national consultations"})

    decision_id: Id
    months: int = Field(ge=1, le=120)
    rationale: Annotated[str, Field(max_length=5000)] = ""


class BudgetRevision(_Cmd):
    """A budget revision: the new approved programme budget of the PUNOs it changes (before
    the 7% support cost; PUNOs left out keep theirs). A top-up (the total grows) is
    allocated from deposited money at the programme's rank in the pipeline; money moved away
    from a PUNO must not have been transferred to it yet."""

    model_config = _example(
        {"decision_id": "SC-2027-02-item-3", "rationale": "Scale-up to two more provinces",
         "approved_budget": [{"entity": "IOM", "budget_usd": "1400000.00"}]})

    decision_id: Id
    approved_budget: list[BudgetLineIn] = Field(min_length=1, max_length=20)
    rationale: Annotated[str, Field(max_length=5000)] = ""
