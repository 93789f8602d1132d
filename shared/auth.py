"""Bearer-token authentication with roles.

Roles: `entity` (bound to one UN entity code), `fmu` (Fund Management Unit / Steering
Committee secretariat), `funder` (bound to one contributor), `operator`. Tokens come from
MPTF_AUTH_TOKENS (JSON: {"<token>": {"role": ..., "entity": ...}}); local development has a
fixed set (shared.settings.DEV_TOKENS), documented in the README.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from shared.errors import Forbidden, Unauthorized
from shared.settings import Principal, ServiceSettings


def authenticate(settings: ServiceSettings, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("send Authorization: Bearer <token>")
    token = authorization[7:].strip()
    for known, principal in settings.auth_tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return principal
    raise Unauthorized("unknown bearer token")


def require(*roles: str):
    """FastAPI dependency: the caller's principal, which must hold one of `roles`."""

    async def dep(request: Request) -> Principal:
        settings: ServiceSettings = request.app.state.settings
        p = authenticate(settings, request.headers.get("authorization"))
        if roles and p.role not in roles:
            raise Forbidden(f"role {p.role!r} may not do this; needs one of {list(roles)}")
        return p

    return dep
