"""Who may see a programme: one rule for every service's reads.

Entities see the programmes they take part in; funders see a programme from the Steering
Committee's approval on (what the Fund publishes as its pipeline and portfolio), never a
note still being screened; the FMU and operators see all. A programme a caller may not see
answers like one that does not exist (404), so its existence is not disclosed either.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.settings import Principal

# the statuses (intake's, and monitoring's projection of them) from approval on
FUNDER_VISIBLE = frozenset({"approved", "funded", "on-going", "suspended",
                            "operationally-closed", "financially-closed", "cancelled"})


def may_see_programme(who: Principal, status: str | None, punos: Iterable[str]) -> bool:
    if who.role == "entity":
        return (who.entity or "").upper() in {p.upper() for p in punos}
    if who.role == "funder":
        return str(status or "") in FUNDER_VISIBLE
    return who.role in ("fmu", "operator")


def contributor_lines(lines: dict[str, object], who: Principal) -> dict[str, object]:
    """Per-contributor figures as `who` may see them: all for the FMU and operators, a
    funder's own line for a funder, none for anyone else."""
    if who.role in ("fmu", "operator"):
        return lines
    if who.role == "funder":
        return {k: v for k, v in lines.items() if k == who.contributor}
    return {}
