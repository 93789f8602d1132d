"""Notifications' rules: who is told of what, in which words; notice identity; webhook
signatures and their replay window; backoff; the circuit breaker; acceptable webhook URLs."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifications.domain import (
    SECRET_PATTERN,
    CircuitBreaker,
    Contact,
    Notice,
    Programme,
    backoff,
    channels,
    check_webhook_secret,
    check_webhook_url,
    message_for,
    new_webhook_secret,
    next_digest,
    sign,
    verify,
)
from shared.contracts.funding import AllocationMade, FundsTransferred, ProgrammeApproved
from shared.contracts.intake import CONCEPT_NOTE_EXAMPLE, ProgrammeScreened, ProgrammeSubmitted
from shared.contracts.monitoring import ReportOverdue

P = Programme("jp-1", "Data governance", ("IOM", "ILO", "UN-WOMEN"), "IOM", ("PH",), ("DEU",))


def test_a_submission_tells_every_puno() -> None:
    f = ProgrammeSubmitted.model_validate({
        "programme_id": "jp-1", "submitted_by": "IOM", "entity_reference": "R",
        "channel": "http", "submitted_at": "2026-11-23T10:00:00Z", "note": CONCEPT_NOTE_EXAMPLE})
    m = message_for(f, P)
    assert m and m.recipients == ("IOM", "ILO", "UN-WOMEN")


def test_an_approval_tells_the_punos_and_the_rc_office_with_the_budget() -> None:
    f = ProgrammeApproved.model_validate({
        "programme_id": "jp-1", "decision_id": "sc", "priority": 2,
        "approved_budget": [{"entity": "IOM", "budget_usd": "1200000"}],
        "total_budget_usd": "1200000", "decided_at": "2026-11-23T10:00:00Z"})
    m = message_for(f, P)
    assert m and m.recipients == ("IOM", "ILO", "UN-WOMEN", "RCO-PH")
    assert "jp-1" in m.body and "USD 1,200,000.00" in m.body and "priority 2" in m.body
    assert m.action  # says what the recipient is expected to do


def test_money_facts_tell_the_contributors_whose_money_is_involved() -> None:
    f = AllocationMade.model_validate({
        "programme_id": "jp-1", "allocation_id": "a", "total_usd": "107",
        "lines": [{"entity": "IOM", "programme_budget_usd": "100", "support_cost_usd": "7",
                   "total_usd": "107"}],
        "funded_by": [{"contribution_id": "c1", "contributor": "NOR", "usd": "7"},
                      {"contribution_id": "c2", "contributor": "DEU", "usd": "100"}],
        "allocated_at": "2026-11-23T10:00:00Z"})
    m = message_for(f, P)
    assert m and m.recipients[-2:] == ("NOR", "DEU")


def test_ineligible_notes_list_every_reason_to_the_punos() -> None:
    f = ProgrammeScreened.model_validate({
        "programme_id": "jp-1", "eligible": False, "screened_at": "2026-11-23T10:00:00Z",
        "reasons": [{"code": "a.b", "message": "first"}, {"code": "c.d", "message": "second"}],
        "programme": {"title": "T", "submitted_by": "IOM", "countries": ["PH"],
                      "punos": [{"entity": "IOM", "budget_usd": "1"}],
                      "total_budget_usd": "1", "gcm_objectives": [1],
                      "primary_thematic_area": 1, "duration_months": 1}})
    m = message_for(f, P)
    assert m and "a.b: first" in m.body and "c.d: second" in m.body
    assert m.recipients == ("IOM", "ILO", "UN-WOMEN")


def test_overdue_reports_tell_the_punos_the_rc_office_and_the_fmu() -> None:
    f = ReportOverdue(programme_id="jp-1", kind="annual-financial", year=2027,
                      due="2028-04-30", detected_at=datetime(2028, 5, 1, tzinfo=UTC),
                      punos=["IOM", "ILO"])
    m = message_for(f, P)
    assert m and m.recipients == ("IOM", "ILO", "RCO-PH", "FMU")
    assert "annual financial report for 2027" in m.body and "2028-04-30" in m.body


def test_notice_identity_and_rendering() -> None:
    a = Notice("f", "t", "p", "IOM", "inbox", "Subject <b>", "Line 1\nLine 2", "Act")
    assert a.id == Notice("f", "t", "p", "IOM", "inbox", "other", "text").id
    assert a.id != Notice("f", "t", "p", "IOM", "email", "s", "b").id
    assert "<p>Line 1</p><p>Line 2</p>" in a.html() and "&lt;b&gt;" in a.html()
    assert a.text().endswith("Act")


def test_channels_follow_contact_points_and_preferences() -> None:
    assert channels(None, "x") == ["inbox"]
    c = Contact("IOM", "https://iom.int/h", "s" * 20, "a@iom.int", ("type.a",))
    assert channels(c, "type.a") == ["inbox", "webhook", "email"]
    assert channels(c, "type.b") == ["inbox"]


def test_signatures_verify_and_refuse_tampering_replays_and_other_ids() -> None:
    import time

    body = b'{"a":1}'
    secret, other = new_webhook_secret(), new_webhook_secret()
    headers = sign(secret, "n-1", body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert verify(secret, headers, body)
    assert not verify(other, headers, body)
    assert not verify(secret, headers, b'{"a":2}')
    assert not verify(secret, {**headers, "webhook-id": "n-2"}, body)  # the id is signed
    old = sign(secret, "n-1", body, ts=int(time.time()) - 301)  # outside the window
    assert not verify(secret, old, body)
    assert not verify(secret, {**headers, "webhook-signature": "garbage"}, body)


def test_webhook_secrets_have_at_least_32_random_bytes() -> None:
    import base64

    s = new_webhook_secret()
    assert len(base64.b64decode(s.removeprefix("whsec_"))) == 32
    assert check_webhook_secret(s) == s
    for bad in ("change-me", "whsec_" + base64.b64encode(b"x" * 31).decode(), "whsec_!!"):
        with pytest.raises(ValueError):
            check_webhook_secret(bad)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rnd = random.Random(1)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8)], start=1):
        assert lo <= backoff(attempt, 1, 100, rnd) <= hi
    assert backoff(30, 1, 60, rnd) <= 60


def test_the_circuit_opens_after_the_threshold_and_probes_after_the_cooldown() -> None:
    b = CircuitBreaker(threshold=3, cooldown=10)
    for t in range(2):
        b.failure("e", t)
    assert b.allow("e", 2)
    b.failure("e", 3)
    assert not b.allow("e", 4) and b.allow("other", 4)
    assert b.allow("e", 13.5)  # one probe
    assert not b.allow("e", 14)
    b.success("e")
    assert b.allow("e", 14)


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "https://localhost/x",
                                 "https://10.0.0.5/x", "https://169.254.169.254/latest",
                                 "https://[::1]/x", "http://example.org/x", "ftp://x.org/",
                                 "https:///nohost"])
def test_private_and_odd_webhook_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_webhook_url(url, allow_private=False)


def test_public_https_webhooks_and_test_receivers_are_accepted() -> None:
    assert check_webhook_url("https://hooks.iom.int/mptf", allow_private=False)
    assert check_webhook_url("http://127.0.0.1:9000/h", allow_private=True)


def test_digests_go_at_the_next_slot() -> None:
    assert next_digest(datetime(2026, 11, 23, 5, tzinfo=UTC), 6) == datetime(
        2026, 11, 23, 6, tzinfo=UTC)
    assert next_digest(datetime(2026, 11, 23, 6, tzinfo=UTC), 6) == datetime(
        2026, 11, 24, 6, tzinfo=UTC)


@pytest.mark.parametrize("url", ["https://127.1/hook", "https://2130706433/hook",
                                 "https://0x7f000001/hook", "https://0177.0.0.1/hook",
                                 "https://[::1]/hook", "https://10.1.2.3/hook",
                                 "https://169.254.169.254/latest", "https://localhost/hook"])
def test_private_addresses_are_refused_in_every_form(url: str) -> None:
    with pytest.raises(ValueError):
        check_webhook_url(url, allow_private=False)


def test_public_addresses_and_names_pass_the_literal_check() -> None:
    assert check_webhook_url("https://8.8.8.8/hook", allow_private=False)
    assert check_webhook_url("https://hooks.example.org/mptf", allow_private=False)


@pytest.mark.parametrize("name", ["BudgetRevised", "ProgrammeExtended", "ProgrammeSuspended",
                                  "ProgrammeResumed", "ProgrammeCancelled",
                                  "AllocationReleased"])
def test_every_change_after_approval_tells_the_punos_and_the_fmu(name: str) -> None:
    from shared.contracts import REGISTRY

    contract = next(c for c in REGISTRY.values() if c.name == name)
    fact = contract.model.model_validate(contract.example)
    m = message_for(fact, P)
    assert m is not None and {"IOM", "ILO", "UN-WOMEN", "FMU"} <= set(m.recipients)
    assert "Data governance" in m.subject
    if name != "ProgrammeExtended":  # money or its use changes: the contributors hear of it
        assert "DEU" in m.recipients


def test_money_facts_reach_the_contributors_whose_money_it_is() -> None:
    from shared.contracts import REGISTRY

    for name in ("FundsTransferred", "FundsRefunded", "AllocationMade"):
        contract = next(c for c in REGISTRY.values() if c.name == name)
        m = message_for(contract.model.model_validate(contract.example), P)
        # the programme's funders (P.contributors), registered or not
        assert m is not None and "DEU" in m.recipients, name
    transfer = REGISTRY[FundsTransferred.TYPE]
    m = message_for(transfer.model.model_validate(transfer.example),
                    Programme("jp-1", "T", ("IOM", "ILO"), "IOM", ("PH",), ()))
    assert m is not None and m.recipients == ("IOM",)  # nobody funded it: nobody else


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n"


@given(st.one_of(
    st.binary(min_size=0, max_size=60).map(
        lambda b: "whsec_" + __import__("base64").b64encode(b).decode()),
    st.text(alphabet=_ALPHABET, max_size=90).map(lambda t: "whsec_" + t),
    st.text(max_size=60)))
@settings(max_examples=400, deadline=None)
def test_the_documented_secret_pattern_is_exactly_what_is_accepted(secret: str) -> None:
    """The webhook secret's pattern in the OpenAPI document accepts exactly the secrets
    check_webhook_secret accepts: whsec_ and padded base64 of at least 32 bytes."""
    import re

    try:
        check_webhook_secret(secret)
        accepted = True
    except ValueError:
        accepted = False
    assert bool(re.fullmatch(SECRET_PATTERN, secret)) == accepted, secret


def test_the_secret_pattern_takes_new_secrets_and_refuses_short_ones() -> None:
    import base64
    import re

    assert re.fullmatch(SECRET_PATTERN, new_webhook_secret())
    for n in (31, 32, 33, 34, 35, 48):
        s = "whsec_" + base64.b64encode(bytes(range(n))).decode()
        assert bool(re.fullmatch(SECRET_PATTERN, s)) == (n >= 32), n
