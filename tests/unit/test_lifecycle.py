"""The programme lifecycle, defined once (shared.lifecycle): the record each service folds
facts into is the same whatever order facts from the three topics arrive in and however
often they are redelivered, and the status it states follows the Fund's precedence."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import lifecycle as L
from shared.contracts import funding as F
from shared.contracts import intake as I
from shared.contracts import monitoring as M
from shared.errors import IllegalTransition, NotFound
from shared.rebuild import chronological

S = L.S
ELIGIBLE = SimpleNamespace(eligible=True)
INELIGIBLE = SimpleNamespace(eligible=False)


def fact(t: str, n: int = 0, event: Any = None, decision: str | None = None
         ) -> tuple[str, str, Any]:
    ev = event if event is not None else SimpleNamespace(decision_id=decision)
    return (t, f"{t}#{n}", ev)


SUBMITTED, SCREENED = fact(I.ProgrammeSubmitted.TYPE), fact(I.ProgrammeScreened.TYPE,
                                                            event=ELIGIBLE)
WITHDRAWN = fact(I.ProgrammeWithdrawn.TYPE)
APPROVED, ALLOCATED = fact(F.ProgrammeApproved.TYPE), fact(F.AllocationMade.TYPE)
TRANSFER = [fact(F.FundsTransferred.TYPE, i) for i in range(3)]
REJECTED, DEFERRED = fact(F.ProgrammeRejected.TYPE), fact(F.ProgrammeDeferred.TYPE)
CANCELLED = fact(F.ProgrammeCancelled.TYPE, decision="sc-9")
SUSPEND = [fact(F.ProgrammeSuspended.TYPE, i, decision=f"sc-s{i}") for i in range(2)]
RESUME = [fact(F.ProgrammeResumed.TYPE, i, decision=f"sc-r{i}") for i in range(2)]
OP_CLOSED = fact(M.ProgrammeOperationallyClosed.TYPE)
FIN_CLOSED = fact(M.ProgrammeFinanciallyClosed.TYPE)


def status(*facts: tuple[str, str, Any]) -> str | None:
    return L.status(L.replay(facts))


def test_the_forward_path() -> None:
    path = [SUBMITTED, SCREENED, DEFERRED, APPROVED, ALLOCATED, TRANSFER[0], OP_CLOSED,
            FIN_CLOSED]
    states = [status(*path[:i + 1]) for i in range(len(path))]
    assert states == [S.SUBMITTED, S.ELIGIBLE, S.DEFERRED, S.APPROVED, S.FUNDED, S.ON_GOING,
                      S.OPERATIONALLY_CLOSED, S.FINANCIALLY_CLOSED]
    assert status() is None
    assert status(SUBMITTED, fact(I.ProgrammeScreened.TYPE, event=INELIGIBLE)) == S.INELIGIBLE


def test_every_state_maps_to_the_gateway_and_to_iati() -> None:
    for s in L.ALL_STATES - {S.WITHDRAWN, S.REJECTED, S.CANCELLED, S.INELIGIBLE}:
        assert L.gateway_status(s) in ("Pipeline", "On Going", "Operationally Closed",
                                       "Financially Closed")
    assert {s: L.iati_status(s) for s in (S.APPROVED, S.ON_GOING, S.OPERATIONALLY_CLOSED,
                                           S.FINANCIALLY_CLOSED, S.CANCELLED, S.SUSPENDED)} == {
        S.APPROVED: 1, S.ON_GOING: 2, S.OPERATIONALLY_CLOSED: 3, S.FINANCIALLY_CLOSED: 4,
        S.CANCELLED: 5, S.SUSPENDED: 6}
    assert set(L.IATI_STATUS) == L.ALL_STATES


def test_a_withdrawal_racing_an_allocation_ends_withdrawn_in_either_order() -> None:
    funding = [APPROVED, ALLOCATED, TRANSFER[0]]
    a = status(SUBMITTED, SCREENED, WITHDRAWN, *funding)
    b = status(*funding, SUBMITTED, SCREENED, WITHDRAWN)
    assert a == b == S.WITHDRAWN


def test_precedence_of_outcomes() -> None:
    # funding rejected before it saw the withdrawal: its decision stands everywhere
    assert status(SCREENED, WITHDRAWN, REJECTED) == status(SCREENED, REJECTED, WITHDRAWN) \
        == S.REJECTED
    assert status(SCREENED, APPROVED, WITHDRAWN, CANCELLED) == S.CANCELLED
    # the money was accounted for: financial closure stands over everything
    assert status(SCREENED, APPROVED, ALLOCATED, TRANSFER[0], CANCELLED, FIN_CLOSED) == \
        S.FINANCIALLY_CLOSED


def test_suspension_and_resumption() -> None:
    on = [SUBMITTED, SCREENED, APPROVED, ALLOCATED, TRANSFER[0]]
    assert status(*on, SUSPEND[0]) == S.SUSPENDED
    assert status(*on, SUSPEND[0], RESUME[0]) == S.ON_GOING
    assert status(*on, SUSPEND[0], RESUME[0], SUSPEND[1]) == S.SUSPENDED
    # the same decision redelivered under another event id counts once
    again = fact(F.ProgrammeSuspended.TYPE, 7, decision="sc-s0")
    assert status(*on, SUSPEND[0], again, RESUME[0]) == S.ON_GOING
    # a suspension before the transfer (funded), then resumed: funded again
    assert status(SUBMITTED, SCREENED, APPROVED, ALLOCATED, SUSPEND[0], RESUME[0]) == S.FUNDED
    assert status(*on, SUSPEND[0], CANCELLED) == S.CANCELLED


def test_a_decision_on_an_ineligible_note_is_refused_whichever_comes_first() -> None:
    bad = fact(I.ProgrammeScreened.TYPE, event=INELIGIBLE)
    for order in ([bad, APPROVED], [APPROVED, bad], [bad, REJECTED]):
        with pytest.raises(IllegalTransition):
            L.replay(order)


def test_commands_check_the_state() -> None:
    L.check("withdraw", S.APPROVED, "p")
    L.check("withdraw", S.ON_GOING, "p")  # the allocation comes back (funding)
    with pytest.raises(IllegalTransition) as e:
        L.check("withdraw", S.OPERATIONALLY_CLOSED, "p")
    assert "report" in e.value.extra["allowed"] and "withdraw" not in e.value.extra["allowed"]
    with pytest.raises(IllegalTransition) as e:
        L.check("withdraw", S.WITHDRAWN, "p")
    assert e.value.extra["allowed"] == []
    with pytest.raises(NotFound):
        L.check("decide", None, "p")
    assert L.allowed("transfer", S.ON_GOING) and not L.allowed("transfer", S.SUSPENDED)
    assert not L.allowed("monitor", S.SUSPENDED)


# -- the property: any interleaving of the three topics, any redelivery -----------------
# per topic, one plausible history (each producer's own order), several of them
HISTORIES = [
    ([SUBMITTED, SCREENED], [APPROVED, ALLOCATED, *TRANSFER[:2]], [OP_CLOSED, FIN_CLOSED]),
    ([SUBMITTED, SCREENED, WITHDRAWN], [APPROVED, ALLOCATED, TRANSFER[0]], []),
    ([SUBMITTED, SCREENED, WITHDRAWN], [DEFERRED, REJECTED], []),
    ([SUBMITTED, SCREENED], [APPROVED, ALLOCATED, TRANSFER[0], SUSPEND[0], RESUME[0],
                             SUSPEND[1], CANCELLED], []),
    ([SUBMITTED, SCREENED], [APPROVED, ALLOCATED, TRANSFER[0], SUSPEND[0]], []),
    ([SUBMITTED, SCREENED, WITHDRAWN], [APPROVED], []),
]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[tuple[str, str, Any]]]:
    """A history's facts as one consumer might see them: each topic in its order, the
    topics interleaved at random, and some facts delivered again later."""
    h = draw(st.integers(0, len(HISTORIES) - 1))
    queues = [list(t) for t in HISTORIES[h]]
    out: list[tuple[str, str, Any]] = []
    while any(queues):
        q = draw(st.sampled_from([q for q in queues if q]))
        out.append(q.pop(0))
        if out and draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(out)))  # a redelivery
    return h, out


@settings(max_examples=300, deadline=None)
@given(deliveries(), deliveries())
def test_any_two_consumers_of_the_same_facts_agree(a: Any, b: Any) -> None:
    (ha, fa), (hb, fb) = a, b
    if ha != hb:
        return
    ra, rb = L.replay(fa), L.replay(fb)
    assert ra == rb and L.status(ra) == L.status(rb)
    ordered = L.replay(itertools.chain(*HISTORIES[ha]))
    assert ra == ordered


@given(st.lists(st.sampled_from([SUBMITTED, SCREENED, APPROVED, ALLOCATED, WITHDRAWN,
                                 CANCELLED, *SUSPEND, *RESUME, OP_CLOSED]), max_size=12),
       st.lists(st.sampled_from([TRANSFER[0], REJECTED, DEFERRED, FIN_CLOSED]), max_size=6))
def test_join_is_the_record_of_both(xs: list[Any], ys: list[Any]) -> None:
    a, b = L.replay(xs), L.replay(ys)
    assert L.join(a, b) == L.join(b, a) == L.replay([*xs, *ys]) == L.replay([*ys, *xs])
    assert L.join(a, a) == a


# -- a history restated from the timeline ------------------------------------------------------
T0 = datetime(2026, 3, 1, tzinfo=UTC)
TIMELINE_TYPES = [*sorted(L.MARKS), L.SCREENED_TYPE]


@st.composite
def timelines(draw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A timeline (times from a few seconds, so that facts share instants) and a history of
    fact and non-fact entries at instants in and around it."""
    n = draw(st.integers(0, 14))
    entries = [L.timeline_entry(
        draw(st.sampled_from(TIMELINE_TYPES)), f"f{i}",
        T0 + timedelta(seconds=draw(st.integers(0, 6))),
        SimpleNamespace(eligible=draw(st.booleans()),
                        decision_id=draw(st.sampled_from([None, "d1", "d2"]))))
        for i in range(n)]
    history = [{"at": T0 + timedelta(seconds=draw(st.integers(-1, 7))),
                "fact": draw(st.booleans()), "status": "as-arrived"}
               for _ in range(draw(st.integers(0, 10)))]
    return entries, history


def restated_one_by_one(history: list[dict[str, Any]], timeline: list[dict[str, Any]]
                        ) -> list[dict[str, Any]]:
    """The definition: each fact's entry folded from the timeline up to its instant."""
    return [{**h, "status": L.status_as_of(timeline, h["at"]) or h["status"]}
            if h.get("fact") else h for h in history]


def outcome(f: Any, *args: Any) -> Any:
    try:
        return f(*args)
    except IllegalTransition as e:
        return ("refused", str(e))


@settings(max_examples=400, deadline=None)
@given(timelines(), st.booleans())
def test_a_restated_history_is_each_entry_as_of_its_instant(case: Any, in_order: bool) -> None:
    """Whether the timeline is in time order (as the services keep it) or not, and whatever
    facts it holds (a contradiction refused alike)."""
    timeline, history = case
    if in_order:
        timeline = chronological(timeline)
    assert outcome(L.restated, history, timeline) == outcome(
        restated_one_by_one, history, timeline)


def test_a_long_history_folds_each_fact_of_its_timeline_once(monkeypatch: Any) -> None:
    """A programme reporting for years has hundreds of facts and history entries: restating
    its history is one fold per fact, not one per fact and entry."""
    timeline = chronological(
        [L.timeline_entry(L.SCREENED_TYPE if i == 0 else I.ProgrammeSubmitted.TYPE, f"f{i}",
                          T0 + timedelta(minutes=i), ELIGIBLE) for i in range(300)])
    history = [{"at": e["at"], "fact": True, "status": "x"} for e in timeline]
    folds = 0
    real = L.fold

    def counted(*args: Any, **kw: Any) -> Any:
        nonlocal folds
        folds += 1
        return real(*args, **kw)

    monkeypatch.setattr(L, "fold", counted)
    out = L.restated(history, timeline)
    assert folds == len(timeline)
    assert [h["status"] for h in out] == [S.ELIGIBLE] * len(history)
