"""Event contracts, one module per owning service. Importing this package fills REGISTRY."""

from shared.contracts import (  # noqa: F401  (registration)
    funding,
    intake,
    monitoring,
    notifications,
)
from shared.contracts.base import REGISTRY, Command, Contract, Fact, Money, contract_for

__all__ = ["REGISTRY", "Command", "Contract", "Fact", "Money", "contract_for"]
