"""Event contracts, one module per owning service. Importing this package fills REGISTRY."""

from shared.contracts import funding, intake, notifications  # noqa: F401  (registration)
from shared.contracts.base import REGISTRY, Command, Contract, Fact, Money, contract_for

__all__ = ["REGISTRY", "Command", "Contract", "Fact", "Money", "contract_for"]
