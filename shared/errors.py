"""Typed, named errors. HTTP maps them to problem+json; consumers map them to DLQ reasons."""

from __future__ import annotations

from typing import Any


class MptfError(Exception):
    """Base of every error this system names."""

    status: int = 500
    code: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str = "", *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}  # HTTP answer headers (WWW-Authenticate on a 401)
        self.extra = extra


class BadRequest(MptfError):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthorized(MptfError):
    status, code, title = 401, "unauthorized", "Missing or invalid bearer token"


class Forbidden(MptfError):
    status, code, title = 403, "forbidden", "Not allowed for this principal"


class NotFound(MptfError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(MptfError):
    status, code, title = 409, "conflict", "Conflicts with the current state"


class PayloadTooLarge(MptfError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class InvalidInput(MptfError):
    status, code, title = 422, "invalid-input", "The input is not valid"


class PersonalData(InvalidInput):
    """Input that carries personal data of individuals: refused, never stored."""

    code, title = "personal-data", "Personal data of individuals is not accepted"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]], redacted: bytes | None = None
                 ) -> None:
        super().__init__(detail, errors=errors)
        self.redacted = redacted


class IllegalTransition(Conflict):
    code, title = "illegal-transition", "The programme cannot move to that status"


class PermanentMessageError(MptfError):
    """A consumed message that can never succeed: it goes to the dead-letter topic."""

    code, title = "undeliverable-message", "Message cannot be processed"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
