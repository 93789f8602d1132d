"""The budget ceiling, stated once for the two services that apply it: intake screens a
concept note's requested budget against it, funding an approval or a budget revision (a
top-up included).

The ceiling (default USD 3,000,000, `MPTF_BUDGET_CEILING_USD`) counts the programme budget
*before* the PUNOs' 7% indirect support cost: the Fund's calls state the ceiling on what
programmes request, and the support cost is added on allocation. Where a Fund decides the
ceiling includes it, `MPTF_CEILING_INCLUDES_SUPPORT_COST=true` makes both services count the
support cost in (per PUNO, rounded to cents as allocations are).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CEILING_USD = Decimal("3000000")
SUPPORT_COST_RATE = Decimal("0.07")
INCLUDES_SUPPORT_COST = False
CENT = Decimal("0.01")


def support_cost(budget_usd: Decimal, rate: Decimal) -> Decimal:
    """A PUNO's indirect support cost on its programme budget, in cents (half up)."""
    return (budget_usd * rate).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Ceiling:
    usd: Decimal = CEILING_USD
    support_cost_rate: Decimal = SUPPORT_COST_RATE
    includes_support_cost: bool = INCLUDES_SUPPORT_COST

    def counted(self, budgets: Iterable[Decimal]) -> Decimal:
        """What counts against the ceiling for these per-PUNO programme budgets."""
        bs = list(budgets)
        total = sum(bs, Decimal(0))
        if self.includes_support_cost:
            total += sum((support_cost(b, self.support_cost_rate) for b in bs), Decimal(0))
        return total

    def excess(self, budgets: Iterable[Decimal]) -> str | None:
        """Why these budgets are over the ceiling, or None."""
        counted = self.counted(budgets)
        if counted <= self.usd:
            return None
        what = "with the support cost" if self.includes_support_cost else "before support cost"
        return f"total USD {counted:,.2f} ({what}) exceeds the ceiling of USD {self.usd:,.2f}"
