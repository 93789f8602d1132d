"""Signed, expiring bearer tokens: signature, issuer, audience, expiry and not-before with a
small clock skew; role and binding from the claims; development tokens only in development
mode; a 401 that says why in WWW-Authenticate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.auth import InvalidToken, authenticate, issue, make_keys, verify
from shared.errors import Unauthorized
from shared.settings import ServiceSettings


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_keys(tmp_path_factory.mktemp("auth"))


def settings(jwks: Path, **kw: object) -> ServiceSettings:
    return ServiceSettings(auth_jwks=str(jwks), **kw)


def test_a_valid_token_speaks_for_its_claims(keys: tuple[Path, Path]) -> None:
    key, jwks = keys
    p = verify(settings(jwks), issue(key, role="entity", entity="IOM", name="IOM system"))
    assert (p.role, p.entity, p.name) == ("entity", "IOM", "IOM system")
    p = verify(settings(jwks), issue(key, role="funder", contributor="DEU"))
    assert (p.role, p.contributor) == ("funder", "DEU")


@pytest.mark.parametrize(("claims", "why"), [
    ({"issued_in": -7200, "ttl_seconds": 3600}, "expired"),
    ({"issued_in": 600}, "not valid yet"),
    ({"audience": "someone-else"}, "InvalidAudienceError"),
    ({"issuer": "evil"}, "InvalidIssuerError"),
])
def test_tokens_out_of_time_or_for_others_are_refused(keys: tuple[Path, Path],
                                                      claims: dict, why: str) -> None:
    key, jwks = keys
    claims = dict(claims)
    if "issued_in" in claims:  # seconds from now, as the test runs (not as it was collected)
        claims["now"] = time.time() + claims.pop("issued_in")
    with pytest.raises(InvalidToken) as e:
        verify(settings(jwks), issue(key, role="fmu", **claims))
    assert why in e.value.detail
    assert e.value.headers["WWW-Authenticate"].startswith('Bearer realm="mptf", '
                                                          'error="invalid_token"')


def test_a_small_clock_skew_is_allowed(keys: tuple[Path, Path]) -> None:
    key, jwks = keys
    verify(settings(jwks), issue(key, role="fmu", now=time.time() + 10))  # 10 s ahead
    verify(settings(jwks), issue(key, role="fmu", now=time.time() - 3610))  # 10 s late


def test_a_token_signed_by_another_key_or_tampered_is_refused(
        keys: tuple[Path, Path], tmp_path: Path) -> None:
    _, jwks = keys
    other_key, _ = make_keys(tmp_path)
    with pytest.raises(InvalidToken):
        verify(settings(jwks), issue(other_key, role="operator"))
    key, _ = keys
    head, body, sig = issue(key, role="entity", entity="IOM").split(".")
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["entity"] = "ILO"  # a forged binding
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(InvalidToken):
        verify(settings(jwks), f"{head}.{forged}.{sig}")


def test_a_role_without_its_binding_is_refused(keys: tuple[Path, Path]) -> None:
    key, jwks = keys
    with pytest.raises(InvalidToken, match="binding"):
        verify(settings(jwks), issue(key, role="entity"))
    with pytest.raises(InvalidToken, match="role"):
        verify(settings(jwks), issue(key, role="superuser"))


def test_development_tokens_only_in_development_mode(keys: tuple[Path, Path]) -> None:
    _, jwks = keys
    with pytest.raises(InvalidToken):
        authenticate(settings(jwks), "Bearer dev-iom")
    p = authenticate(settings(jwks, auth_mode="development"), "Bearer dev-iom")
    assert (p.role, p.entity) == ("entity", "IOM")
    with pytest.raises(Unauthorized) as e:
        authenticate(settings(jwks), None)
    assert e.value.headers["WWW-Authenticate"] == 'Bearer realm="mptf"'


def test_a_service_without_keys_refuses_to_start_outside_development() -> None:
    from services.intake.app import IntakeSettings, build

    with pytest.raises(RuntimeError, match="MPTF_AUTH_JWKS"):
        build(IntakeSettings(auth_jwks=""))
    app, _ = build(IntakeSettings(auth_jwks="", auth_mode="development"))
    assert app is not None


def test_a_service_without_kafka_credentials_never_connects_and_says_why() -> None:
    """No anonymous Kafka client: without a password the runtime builds no SASL settings
    and refuses to connect at all (it stays not ready), naming what is missing."""
    from services.intake.app import IntakeSettings, build

    _, runtime = build(IntakeSettings(kafka_credentials="", kafka_password=""))
    assert runtime.credentials_error and "KAFKA_PASSWORD" in runtime.credentials_error
    assert not runtime.ready.is_set()
