"""The typed registry of event contracts: each event type is a pydantic model with its
CloudEvents type (the version is part of the type), its topic, its owner and its key.

Versioning: an additive change (a new optional field) keeps the type; a breaking change adds
a new model with `.v2` and both are published for a while. The AsyncAPI document is
generated from this registry, and tests/contract pins it so a silent change fails CI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

# Money is Decimal end to end and travels as a JSON string with two decimals ("1234.50"), so
# no float touches it. At most two places are accepted, so the quantize never rounds.
Money = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=18, decimal_places=2),
    PlainSerializer(lambda d: format(d.quantize(Decimal("0.01")), "f"), return_type=str,
                    when_used="json"),
]


class Fact(BaseModel):
    """Base of facts and inbound messages. Unknown fields are ignored (forward-compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    TYPE: ClassVar[str]


class Command(BaseModel):
    """Base of inbound requests from outside: unknown fields are refused, so a typo (or data
    that has no place here) is answered instead of silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str]


@dataclass(frozen=True)
class Contract:
    type: str
    model: type[BaseModel]
    topic: str
    owner: str  # the one service that writes it (for inbound: the one that reads it)
    key: str  # the data field whose value is the Kafka key and CloudEvents subject
    summary: str
    example: dict[str, Any] = field(default_factory=dict)
    inbound: bool = False
    also: tuple[str, ...] = ()  # further topics it is published on (same event id)

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic, *self.also)

    @property
    def name(self) -> str:
        return self.model.__name__


REGISTRY: dict[str, Contract] = {}


def register(*, topic: str, owner: str, key: str, example: dict[str, Any],
             inbound: bool = False, also: tuple[str, ...] = ()):
    def deco(model: type[BaseModel]) -> type[BaseModel]:
        t = model.TYPE  # type: ignore[attr-defined]
        if t in REGISTRY:
            raise RuntimeError(f"event type {t} registered twice")
        summary = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        # the example must satisfy the contract it illustrates
        model.model_validate(example)
        REGISTRY[t] = Contract(t, model, topic, owner, key, summary, example, inbound, also)
        return model

    return deco


def contract_for(event: BaseModel | type[BaseModel]) -> Contract:
    model = event if isinstance(event, type) else type(event)
    return REGISTRY[model.TYPE]  # type: ignore[attr-defined]
