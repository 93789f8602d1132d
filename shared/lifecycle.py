"""The programme lifecycle, defined once: its states, the facts that move it, and how each
service folds those facts into the same record, so intake, funding and monitoring agree on
every programme's state whatever order the facts reach them in.

Facts about one programme come from three owners on three topics (intake on
mptf.programmes, funding on mptf.funding, monitoring on mptf.monitoring). Kafka keeps each
topic's order per programme, but not the order between topics: one service may see an
allocation before the withdrawal that raced it, another the other way round. So the state is
not a chain of transitions applied in arrival order; it is a *join* over the set of facts
seen (a state-based CRDT):

* `rank`: the furthest step reached on the forward path (submitted < screened < deferred <
  approved < funded < on-going < operationally closed < financially closed): a maximum;
* `outcomes`: which of withdrawn, rejected, cancelled happened: a set;
* `suspensions` / `resumptions`: the decision ids of each: sets (suspended while there are
  more suspensions than resumptions; they come in order on one topic).

Any interleaving and any redelivery of the same facts gives the same record, and `status()`
is a function of the record, so every service that has seen the same facts states the same
status. Precedence (the reason is each producer's own rule): financially closed stands over
everything (money was accounted for); a cancellation over a withdrawal or rejection that
raced it; a rejection over a withdrawal (funding ignores a withdrawal of what it already
decided, and refuses to decide on what it has seen withdrawn, so only a race leaves both, and
then the fact that funding acted on wins); any of these over the forward path; a suspension
over the forward path.

The Administrative Agent's Gateway shows four statuses and IATI six; both are mapped here.
Commands check what they may do with `allowed()`, against the same states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class S:
    SUBMITTED = "submitted"
    ELIGIBLE = "screened-eligible"
    INELIGIBLE = "screened-ineligible"
    DEFERRED = "deferred"
    APPROVED = "approved"
    FUNDED = "funded"
    ON_GOING = "on-going"
    SUSPENDED = "suspended"
    OPERATIONALLY_CLOSED = "operationally-closed"
    FINANCIALLY_CLOSED = "financially-closed"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# the forward path, in order (screened eligible and ineligible share a step)
FORWARD = (S.SUBMITTED, S.ELIGIBLE, S.DEFERRED, S.APPROVED, S.FUNDED, S.ON_GOING,
           S.OPERATIONALLY_CLOSED, S.FINANCIALLY_CLOSED)
RANK = {s: i for i, s in enumerate(FORWARD)}
RANK[S.INELIGIBLE] = RANK[S.ELIGIBLE]
# outcomes that end the forward path, strongest first
OUTCOMES = (S.CANCELLED, S.REJECTED, S.WITHDRAWN)
ALL_STATES = frozenset(FORWARD) | {S.INELIGIBLE, S.SUSPENDED, *OUTCOMES}
TERMINAL = frozenset({S.FINANCIALLY_CLOSED, *OUTCOMES})

# What a command may do, by the state it finds (each service checks its own commands here).
ALLOWED: dict[str, frozenset[str]] = {
    # a PUNO may withdraw until the programme closes; after the allocation, what is not
    # transferred returns to the Fund and what was transferred is owed back
    "withdraw": frozenset({S.SUBMITTED, S.ELIGIBLE, S.INELIGIBLE, S.DEFERRED, S.APPROVED,
                           S.FUNDED, S.ON_GOING, S.SUSPENDED}),
    "decide": frozenset({S.ELIGIBLE, S.DEFERRED}),
    "cancel": frozenset({S.APPROVED, S.FUNDED, S.ON_GOING, S.SUSPENDED}),
    "suspend": frozenset({S.FUNDED, S.ON_GOING}),
    "resume": frozenset({S.SUSPENDED}),
    "extend": frozenset({S.FUNDED, S.ON_GOING, S.SUSPENDED}),
    "revise-budget": frozenset({S.APPROVED, S.FUNDED, S.ON_GOING}),
    "transfer": frozenset({S.FUNDED, S.ON_GOING}),
    "report": frozenset({S.FUNDED, S.ON_GOING, S.SUSPENDED, S.OPERATIONALLY_CLOSED}),
    "monitor": frozenset({S.ON_GOING, S.OPERATIONALLY_CLOSED}),
}

GATEWAY_STATUS = {  # the four statuses of the Administrative Agent's Gateway
    S.SUBMITTED: "Pipeline", S.ELIGIBLE: "Pipeline", S.DEFERRED: "Pipeline",
    S.APPROVED: "Pipeline", S.FUNDED: "On Going", S.ON_GOING: "On Going",
    S.SUSPENDED: "On Going", S.OPERATIONALLY_CLOSED: "Operationally Closed",
    S.FINANCIALLY_CLOSED: "Financially Closed",
}
IATI_STATUS = {  # IATI's ActivityStatus codelist
    S.SUBMITTED: 1, S.ELIGIBLE: 1, S.INELIGIBLE: 1, S.DEFERRED: 1, S.APPROVED: 1,
    S.FUNDED: 2, S.ON_GOING: 2, S.OPERATIONALLY_CLOSED: 3, S.FINANCIALLY_CLOSED: 4,
    S.CANCELLED: 5, S.WITHDRAWN: 5, S.REJECTED: 5, S.SUSPENDED: 6,
}


@dataclass(frozen=True)
class Mark:
    """What one fact contributes to the record."""

    reach: str | None = None  # a step of the forward path
    outcome: str | None = None
    suspend: bool = False
    resume: bool = False


def _marks() -> dict[str, Mark]:
    from shared.contracts import funding as F
    from shared.contracts import intake as I
    from shared.contracts import monitoring as M

    return {
        I.ProgrammeSubmitted.TYPE: Mark(reach=S.SUBMITTED),
        I.ProgrammeWithdrawn.TYPE: Mark(outcome=S.WITHDRAWN),
        F.ProgrammeApproved.TYPE: Mark(reach=S.APPROVED),
        F.ProgrammeRejected.TYPE: Mark(outcome=S.REJECTED),
        F.ProgrammeDeferred.TYPE: Mark(reach=S.DEFERRED),
        F.AllocationMade.TYPE: Mark(reach=S.FUNDED),
        F.FundsTransferred.TYPE: Mark(reach=S.ON_GOING),
        F.ProgrammeSuspended.TYPE: Mark(suspend=True),
        F.ProgrammeResumed.TYPE: Mark(resume=True),
        F.ProgrammeCancelled.TYPE: Mark(outcome=S.CANCELLED),
        M.ProgrammeOperationallyClosed.TYPE: Mark(reach=S.OPERATIONALLY_CLOSED),
        M.ProgrammeFinanciallyClosed.TYPE: Mark(reach=S.FINANCIALLY_CLOSED),
    }


MARKS = _marks()
SCREENED_TYPE = "org.migrationmptf.programme.screened.v1"  # eligible or not: see `mark_of`
FACT_TYPES = frozenset(MARKS) | {SCREENED_TYPE}


def _changes() -> frozenset[str]:
    from shared.contracts import funding as F

    return frozenset({F.BudgetRevised.TYPE, F.ProgrammeExtended.TYPE,
                      F.AllocationReleased.TYPE, F.FundsRefunded.TYPE})


# facts that change a programme without moving its state: its history shows them too
CHANGE_TYPES = _changes()
HISTORY_TYPES = FACT_TYPES | CHANGE_TYPES


def mark_of(fact_type: str, event: Any = None) -> Mark | None:
    if fact_type == SCREENED_TYPE:
        return Mark(reach=S.ELIGIBLE if getattr(event, "eligible", True) else S.INELIGIBLE)
    return MARKS.get(fact_type)


def empty() -> dict[str, Any]:
    return {"reach": None, "eligible": None, "outcomes": [], "suspensions": [],
            "resumptions": []}


def _higher(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if RANK[b] > RANK[a] else a


def fold(record: dict[str, Any] | None, fact_type: str, fact_id: str, event: Any = None,
         decision_id: str | None = None) -> dict[str, Any]:
    """The record after one more fact (a new dict; the same record again for a fact that
    changes nothing, a redelivery included). Facts that do not concern the lifecycle leave
    it as it is."""
    rec = {**empty(), **(record or {})}
    mark = mark_of(fact_type, event)
    if mark is None:
        return rec
    rec = {k: list(v) if isinstance(v, list) else v for k, v in rec.items()}
    if mark.reach in (S.ELIGIBLE, S.INELIGIBLE):
        rec["eligible"] = mark.reach == S.ELIGIBLE
        mark = Mark(reach=S.ELIGIBLE)
    if mark.reach:
        rec["reach"] = _higher(rec["reach"], mark.reach)
    if mark.outcome and mark.outcome not in rec["outcomes"]:
        rec["outcomes"] = sorted({*rec["outcomes"], mark.outcome})
    key = decision_id or fact_id
    if mark.suspend and key not in rec["suspensions"]:
        rec["suspensions"] = sorted({*rec["suspensions"], key})
    if mark.resume and key not in rec["resumptions"]:
        rec["resumptions"] = sorted({*rec["resumptions"], key})
    _check_possible(rec, fact_type)
    return rec


def _check_possible(rec: dict[str, Any], fact_type: str) -> None:
    """Facts that no order of events can make consistent (a decision on a note screened
    ineligible) are a producer's bug: refused (dead-lettered), whichever came first."""
    from shared.errors import IllegalTransition

    decided = (rec["reach"] is not None and RANK[rec["reach"]] > RANK[S.ELIGIBLE]) or bool(
        {S.REJECTED, S.CANCELLED} & set(rec["outcomes"]))
    if rec["eligible"] is False and decided:
        raise IllegalTransition(
            f"{fact_type} contradicts the programme's record: it was screened ineligible, "
            "so the Steering Committee cannot have decided on it", allowed=[])


def from_status(state: str | None) -> dict[str, Any]:
    """The record of a programme stored before records were kept, from its status."""
    rec = empty()
    if state in OUTCOMES:
        rec["outcomes"] = [state]
        state = S.ELIGIBLE
    if state == S.INELIGIBLE:
        rec["eligible"], state = False, S.ELIGIBLE
    elif state in RANK:
        rec["eligible"] = True if RANK[state] >= RANK[S.ELIGIBLE] else None
    rec["reach"] = state if state in RANK else None
    return rec


def join(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """Two records' union (what a service knows after seeing both sets of facts)."""
    a, b = {**empty(), **(a or {})}, {**empty(), **(b or {})}
    return {"reach": _higher(a["reach"], b["reach"]),
            "eligible": a["eligible"] if a["eligible"] is not None else b["eligible"],
            "outcomes": sorted({*a["outcomes"], *b["outcomes"]}),
            "suspensions": sorted({*a["suspensions"], *b["suspensions"]}),
            "resumptions": sorted({*a["resumptions"], *b["resumptions"]})}


def status(record: dict[str, Any] | None) -> str | None:
    """The programme's state from its record; None before any lifecycle fact."""
    rec = {**empty(), **(record or {})}
    if rec["reach"] == S.FINANCIALLY_CLOSED:
        return S.FINANCIALLY_CLOSED
    for o in OUTCOMES:
        if o in rec["outcomes"]:
            return o
    suspended = len(rec["suspensions"]) > len(rec["resumptions"])
    if suspended and rec["reach"] in (S.FUNDED, S.ON_GOING):
        return S.SUSPENDED
    if rec["reach"] is None and not rec["outcomes"]:
        return None
    if rec["reach"] == S.ELIGIBLE and rec["eligible"] is False:
        return S.INELIGIBLE
    return rec["reach"]


def replay(facts: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """The record of (type, id, event) facts folded in the order given."""
    rec = empty()
    for fact_type, fact_id, event in facts:
        rec = fold(rec, fact_type, fact_id, event, getattr(event, "decision_id", None))
    return rec


def allowed(command: str, state: str | None) -> bool:
    return state in ALLOWED[command]


def check(command: str, state: str | None, programme_id: str) -> None:
    """IllegalTransition (409) naming the state, when the command is possible and what the
    state allows; NotFound before any fact."""
    from shared.errors import IllegalTransition, NotFound

    if state is None:
        raise NotFound(f"no programme {programme_id}")
    if state not in ALLOWED[command]:
        raise IllegalTransition(
            f"{programme_id} is {state}: '{command}' is possible only when it is "
            f"{', '.join(sorted(ALLOWED[command]))}", programme_status=state,
            allowed=sorted(c for c, states in ALLOWED.items() if state in states))


def gateway_status(state: str | None) -> str | None:
    return GATEWAY_STATUS.get(state or "")


def iati_status(state: str | None) -> int:
    return IATI_STATUS.get(state or "", 1)


# -- as of any moment ------------------------------------------------------------------------
# Each service keeps, per programme, the timeline of the lifecycle facts it folded: the
# fact's own time (not when it arrived), its type and id, and what the fold needs of it. The
# state at an instant is the same fold over the entries up to that instant.
def ms(at: Any) -> Any:
    """A time as the store keeps it (to the millisecond), so what a service computes from
    times it just made and from times it read back agree."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000) if hasattr(at, "microsecond") \
        else at


def timeline_entry(fact_type: str, fact_id: str, at: Any, event: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": fact_type, "id": fact_id, "at": ms(at)}
    if fact_type == SCREENED_TYPE:
        entry["eligible"] = bool(getattr(event, "eligible", True))
    decision = getattr(event, "decision_id", None)
    if decision:
        entry["decision_id"] = decision
    return entry


def as_of(timeline: Iterable[dict[str, Any]], instant: Any) -> dict[str, Any]:
    """The record of the facts of `timeline` that happened at or before `instant`."""
    rec = empty()
    for e in timeline:
        if e["at"] <= instant:
            rec = _fold_entry(rec, e)
    return rec


def _fold_entry(rec: dict[str, Any], e: dict[str, Any]) -> dict[str, Any]:
    """`rec` folded with one timeline entry (what `timeline_entry` kept of its fact)."""
    from types import SimpleNamespace

    return fold(rec, e["type"], e["id"], SimpleNamespace(eligible=e.get("eligible", True)),
                e.get("decision_id"))


def status_as_of(timeline: Iterable[dict[str, Any]], instant: Any) -> str | None:
    return status(as_of(timeline, instant))


def restated(history: list[dict[str, Any]], timeline: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    """A history whose entries for facts each say the status as of the fact's time (from the
    timeline), not as of when the fact happened to arrive: the same history in any order of
    arrival."""
    at = _statuses_as_of(timeline)
    return [{**h, "status": at(h["at"]) or h["status"]} if h.get("fact") else h
            for h in history]


def _statuses_as_of(timeline: list[dict[str, Any]]) -> Callable[[Any], str | None]:
    """`status_as_of(timeline, instant)` for many instants. The services keep their
    timelines in time order (shared.rebuild.chronological), where the facts up to an instant
    are a prefix of the timeline: each prefix's record is then the one before it folded with
    one more fact, so a programme's whole history costs one fold per fact, not one per fact
    and entry (a programme reporting for years has hundreds of each). A timeline out of time
    order is folded again for each instant, as `status_as_of` does. Prefixes are folded only
    as far as an instant asks (a fold that refuses a fact refuses it where as_of would)."""
    from bisect import bisect_right
    from itertools import pairwise

    times = [e["at"] for e in timeline]
    if any(b < a for a, b in pairwise(times)):
        return lambda instant: status_as_of(timeline, instant)
    records = [empty()]  # records[k]: the first k facts folded

    def at(instant: Any) -> str | None:
        k = bisect_right(times, instant)
        while len(records) <= k:
            records.append(_fold_entry(records[-1], timeline[len(records) - 1]))
        return status(records[k])

    return at
