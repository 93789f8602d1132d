"""HTTP identity: signed, expiring bearer tokens (JWT, verified with PyJWT).

A token is accepted when its signature verifies against one of the configured public keys
(MPTF_AUTH_JWKS: a JWKS file or an https URL), its issuer and audience are ours, and it is
within its validity (exp, nbf; a small clock skew allowed). Who it speaks for comes from its
claims: `role` (entity, fmu, funder, operator, rco), and the binding the role needs
(`entity`: a UN entity code; `contributor`: a contributor's code; `country`: the ISO 3166
code of a Resident Coordinator's office), plus `sub` and `name`.

Development tokens (shared.settings.DEV_TOKENS, e.g. `dev-iom`) exist only when the process
runs with MPTF_AUTH_MODE=development; outside it, a service without keys does not start.
The local stack signs its own tokens (`mptf token --role entity --entity IOM`) with a key
it makes on first start; 401 answers carry `WWW-Authenticate`.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request

from shared.errors import Forbidden, Unauthorized
from shared.settings import DEV_TOKENS, Principal, ServiceSettings

ALGORITHMS = ["ES256", "RS256", "EdDSA"]
CHALLENGE = 'Bearer realm="mptf"'


class InvalidToken(Unauthorized):
    """A bearer token that is not one of ours, or no longer (or not yet) valid."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": (
            f'{CHALLENGE}, error="invalid_token", error_description="{detail}"')})


@lru_cache(maxsize=8)
def _keyset(source: str) -> Any:
    import jwt

    if source.startswith(("https://", "http://")):
        return jwt.PyJWKClient(source, cache_keys=True, lifespan=300)
    return jwt.PyJWKSet.from_dict(json.loads(Path(source).read_text()))


def _signing_key(settings: ServiceSettings, token: str) -> Any:
    import jwt

    keys = _keyset(settings.auth_jwks)
    if isinstance(keys, jwt.PyJWKClient):
        return keys.get_signing_key_from_jwt(token).key
    kid = jwt.get_unverified_header(token).get("kid")
    for k in keys.keys:
        if kid is None or k.key_id == kid:
            return k.key
    raise InvalidToken("signed by an unknown key")


def verify(settings: ServiceSettings, token: str) -> Principal:
    """The principal a JWT speaks for, or InvalidToken."""
    import jwt

    if not settings.auth_jwks:
        raise InvalidToken("no token keys are configured")
    try:
        claims = jwt.decode(token, _signing_key(settings, token), algorithms=ALGORITHMS,
                            audience=settings.auth_audience, issuer=settings.auth_issuer,
                            leeway=settings.auth_leeway_seconds,
                            options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("the token is not valid yet") from None
    except jwt.PyJWTError as e:
        raise InvalidToken(f"the token is not valid: {type(e).__name__}") from None
    except InvalidToken:
        raise
    except Exception as e:  # a key set that cannot be read: the caller is not at fault
        raise InvalidToken(f"the token cannot be checked: {type(e).__name__}") from None
    try:
        p = Principal(role=claims.get("role"), entity=claims.get("entity"),
                      contributor=claims.get("contributor"), country=claims.get("country"),
                      name=str(claims.get("name") or claims["sub"])[:200])
    except ValueError:
        raise InvalidToken("the token names no known role") from None
    if binding_missing(p.role, p.entity, p.contributor, p.country):
        raise InvalidToken("the token's role lacks its binding (entity, contributor or "
                           "country)")
    return p


def binding_missing(role: str, entity: str | None, contributor: str | None,
                    country: str | None) -> bool:
    """Whether a role's binding is missing or one it does not take is given."""
    return ((role == "entity") != bool(entity) or (role == "funder") != bool(contributor)
            or (role == "rco") != bool(country))


def authenticate(settings: ServiceSettings, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": CHALLENGE})
    token = authorization[7:].strip()
    if settings.auth_mode == "development":
        for known, principal in DEV_TOKENS.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return Principal(**principal)
    return verify(settings, token)


def require(*roles: str):
    """FastAPI dependency: the caller's principal, which must hold one of `roles`."""

    async def dep(request: Request) -> Principal:
        settings: ServiceSettings = request.app.state.settings
        p = authenticate(settings, request.headers.get("authorization"))
        if roles and p.role not in roles:
            raise Forbidden(f"role {p.role!r} may not do this; needs one of {list(roles)}")
        return p

    dep.roles = roles  # type: ignore[attr-defined]  # (read by shared.http.document_answers)
    return dep


# -- issuing (the local stack, the CLI and the tests; production uses its identity provider) --
def make_keys(folder: str | Path) -> tuple[Path, Path]:
    """A signing key (EC P-256, PEM, mode 0600) and its public JWKS in `folder`, made once."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    d = Path(folder)
    key_file, jwks_file = d / "signing-key.pem", d / "jwks.json"
    if key_file.exists() and jwks_file.exists():
        return key_file, jwks_file
    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=uuid.uuid4().hex[:16], use="sig", alg="ES256")
    jwks_file.write_text(json.dumps({"keys": [jwk]}, indent=1))
    return key_file, jwks_file


def issue(key_file: str | Path, *, role: str, entity: str | None = None,
          contributor: str | None = None, country: str | None = None, name: str = "",
          issuer: str = "mptf-local",
          audience: str = "mptf", ttl_seconds: int = 3600, now: float | None = None) -> str:
    """A signed token for a principal, valid `ttl_seconds` from `now`."""
    import jwt

    key_file = Path(key_file)
    jwks = json.loads((key_file.parent / "jwks.json").read_text())
    t = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "iat": t, "nbf": t,
                              "exp": t + ttl_seconds, "jti": uuid.uuid4().hex, "role": role,
                              "sub": entity or contributor or (country and f"RCO-{country}")
                              or role, "name": name or role}
    if entity:
        claims["entity"] = entity
    if contributor:
        claims["contributor"] = contributor
    if country:
        claims["country"] = country.upper()
    return jwt.encode(claims, key_file.read_text(), algorithm="ES256",
                      headers={"kid": jwks["keys"][0]["kid"]})


class TokenSource:
    """Tokens for one principal, issued with the local key and renewed before they expire
    (the console and the CLI of the local stack)."""

    def __init__(self, key_file: str | Path, ttl_seconds: int = 900, **principal: Any) -> None:
        self.key_file, self.ttl, self.principal = key_file, ttl_seconds, principal
        self._token, self._until = "", 0.0

    def header(self) -> dict[str, str]:
        if time.time() > self._until - 60:
            self._token = issue(self.key_file, ttl_seconds=self.ttl, **self.principal)
            self._until = time.time() + self.ttl
        return {"authorization": f"Bearer {self._token}"}
