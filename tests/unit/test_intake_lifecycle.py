"""The programme lifecycle as an explicit state machine: legal moves pass, illegal ones are
refused with a clear error; other services' facts map onto it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain import (
    ALL_STATUSES,
    FACT_TARGETS,
    TRANSITIONS,
    WITHDRAWABLE,
    Status,
    target_for,
    transition,
)
from shared.contracts.funding import AllocationMade, FundsTransferred, ProgrammeApproved
from shared.errors import IllegalTransition, NotFound

S = Status
HAPPY_PATH = [S.SUBMITTED, S.ELIGIBLE, S.DEFERRED, S.APPROVED, S.FUNDED, S.ON_GOING,
              S.OPERATIONALLY_CLOSED, S.FINANCIALLY_CLOSED]


def test_the_whole_happy_path_is_legal() -> None:
    for a, b in itertools.pairwise(HAPPY_PATH):
        assert transition(a, b) == b


@given(st.sampled_from(sorted(ALL_STATUSES)), st.sampled_from(sorted(ALL_STATUSES)))
def test_a_move_is_legal_exactly_when_the_table_allows_it(a: str, b: str) -> None:
    if b in TRANSITIONS[a]:
        assert transition(a, b) == b
    else:
        with pytest.raises(IllegalTransition) as e:
            transition(a, b)
        assert a in e.value.detail and b in e.value.detail
        assert e.value.extra["allowed"] == sorted(TRANSITIONS[a])


@given(st.lists(st.sampled_from(sorted(ALL_STATUSES)), max_size=30))
def test_any_walk_stays_inside_the_table(targets: list[str]) -> None:
    status = S.SUBMITTED
    for t in targets:
        try:
            status = transition(status, t)
        except IllegalTransition:
            continue
        assert status in ALL_STATUSES
    # terminal states stay terminal
    if status in (S.REJECTED, S.WITHDRAWN, S.FINANCIALLY_CLOSED):
        assert TRANSITIONS[status] == frozenset()


def test_only_unfunded_programmes_can_be_withdrawn() -> None:
    assert WITHDRAWABLE == {S.SUBMITTED, S.ELIGIBLE, S.INELIGIBLE, S.DEFERRED, S.APPROVED}
    with pytest.raises(IllegalTransition):
        transition(S.FUNDED, S.WITHDRAWN)


def test_ineligible_notes_never_reach_the_steering_committee() -> None:
    for decision in (S.APPROVED, S.REJECTED, S.DEFERRED):
        with pytest.raises(IllegalTransition):
            transition(S.INELIGIBLE, decision)


def test_funding_facts_map_to_statuses() -> None:
    assert target_for(ProgrammeApproved.TYPE, S.ELIGIBLE) == S.APPROVED
    assert target_for(AllocationMade.TYPE, S.APPROVED) == S.FUNDED
    assert target_for(FundsTransferred.TYPE, S.FUNDED) == S.ON_GOING
    # a later tranche changes nothing
    assert target_for(FundsTransferred.TYPE, S.ON_GOING) is None
    assert set(FACT_TARGETS.values()) <= ALL_STATUSES
    with pytest.raises(NotFound):
        target_for(ProgrammeApproved.TYPE, None)
