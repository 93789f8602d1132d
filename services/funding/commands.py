"""The HTTP commands funding accepts, validated at the door (Decimal money, known currency,
finite positive amounts): invalid input is a 422 naming the field; nothing changes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.base import Money
from shared.reference import CURRENCIES

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Positive = Annotated[Money, Field(gt=0)]


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pledge(_Cmd):
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

    meeting_id: Id = Field(description="The SC meeting's reference")
    decisions: list[Decision] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _once_each(self) -> Meeting:
        ids = [d.programme_id for d in self.decisions]
        if len(set(ids)) != len(ids):
            raise ValueError("a meeting decides each programme once")
        return self


class Refund(_Cmd):
    refund_id: Id
    entity: Annotated[str, Field(min_length=2, max_length=20)]
    amount_usd: Positive

    @field_validator("entity")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()
