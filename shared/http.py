"""The HTTP side every service shares: problem+json errors (RFC 9457), a body-size limit,
server spans continuing the caller's W3C trace, RED metrics, and the operational routes
(/healthz, /readyz, /metrics, /asyncapi.json; OpenAPI at /openapi.json and /docs)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import MptfError
from shared.jsondepth import MAX_DEPTH, too_deep
from shared.logging import get_logger
from shared.metrics import HTTP_REQUESTS, HTTP_SECONDS

if TYPE_CHECKING:
    from shared.runtime import Runtime

PROBLEM = "application/problem+json"
log = get_logger("mptf.http")


def problem(status: int, code: str, title: str, detail: str = "", *,
            errors: list[dict[str, Any]] | None = None,
            extra: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://migrationmptf.org/problems/{code}",
                            "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    # extension members never overwrite the standard ones
    body.update({k: v for k, v in exact(extra or {}).items() if k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def field_errors(errs: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errs:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        out.append({"field": ".".join(loc) or "(body)", "reason": e.get("msg", ""),
                    "type": e.get("type", "")})
    return out


class EdgeMiddleware:
    """Pure ASGI: refuses oversized bodies (413) before they are read whole and records RED
    metrics by route template. The server span is FastAPI's native telemetry (W3C
    `traceparent` extracted); we add the programme id to it."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method = scope["method"]
        declared = next((v.decode("latin-1") for k, v in scope["headers"]
                         if k == b"content-length"), None)
        if declared and declared.isdigit() and int(declared) > self.max_body:
            resp = problem(413, "payload-too-large", "Payload too large",
                           f"body of {declared} bytes exceeds {self.max_body}")
            return await resp(scope, receive, send)
        status = {"code": 500}
        # the body is read here, whole and bounded, before the app sees it: a body sent
        # chunked (no Content-Length) that grows past the limit is a 413 too (raised inside
        # the app's own read, FastAPI would answer it as a 400 parse error)
        chunks: list[Message] = []
        seen = 0
        while method in ("POST", "PUT", "PATCH", "DELETE"):
            msg = await receive()
            chunks.append(msg)
            if msg["type"] != "http.request":
                break
            seen += len(msg.get("body", b""))
            if seen > self.max_body:
                HTTP_REQUESTS.labels(method, "(refused)", "413").inc()
                resp = problem(413, "payload-too-large", "Payload too large",
                               f"body exceeds {self.max_body} bytes")
                return await resp(scope, receive, send)
            if not msg.get("more_body"):
                break
        if seen and too_deep(b"".join(m.get("body", b"") for m in chunks)):
            # FastAPI would decode it (a RecursionError past ~1,000 levels) and validation
            # would walk it level by level: refused as malformed first
            HTTP_REQUESTS.labels(method, "(refused)", "400").inc()
            resp = problem(400, "malformed-body", "The body is nested too deeply",
                           f"JSON nested deeper than {MAX_DEPTH} levels is not accepted")
            return await resp(scope, receive, send)

        async def limited_receive() -> Message:
            return chunks.pop(0) if chunks else await receive()

        async def capture_send(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        start = time.perf_counter()
        await self.app(scope, limited_receive, capture_send)
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unmatched)"
        pid = (scope.get("path_params") or {}).get("programme_id")
        if pid:  # FastAPI's own server span (it continues the caller's traceparent)
            trace.get_current_span().set_attribute("mptf.programme_id", pid)
        HTTP_REQUESTS.labels(method, template, str(status["code"])).inc()
        HTTP_SECONDS.labels(method, template).observe(time.perf_counter() - start)


def create_app(runtime: Runtime, *, title: str, description: str) -> FastAPI:
    s = runtime.settings
    if s.auth_mode != "development" and not s.auth_jwks:
        # no default tokens outside development: a service without keys does not start
        raise RuntimeError("MPTF_AUTH_JWKS (a JWKS file or URL with the token issuer's public "
                           "keys) is required unless MPTF_AUTH_MODE=development")
    app = FastAPI(title=title, description=description, version="1.0.1",
                  lifespan=runtime.lifespan)
    app.state.settings = runtime.settings
    app.state.runtime = runtime

    @app.exception_handler(MptfError)
    async def _mptf(_: Request, e: MptfError) -> JSONResponse:
        resp = problem(e.status, e.code, e.title, e.detail, errors=e.errors, extra=e.extra)
        resp.headers.update(e.headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errs = field_errors(e.errors())
        malformed = any(x["type"] in ("json_invalid", "model_attributes_type") for x in errs)
        if malformed:
            return problem(400, "malformed-body", "The body is not a JSON object", errors=errs)
        if any(x["type"] == "personal_data" for x in errs):
            return problem(422, "personal-data", "Personal data of individuals is not accepted",
                           "nothing was stored; report aggregate figures only", errors=errs)
        return problem(422, "invalid-input", "The input is not valid", errors=errs)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        resp = problem(e.status_code, f"http-{e.status_code}", str(e.detail))
        resp.headers.update(e.headers or {})
        if e.status_code == 405:
            # `Allow` names every method the path takes (RFC 9110 15.5.6), not only those of
            # the first route the router tried (a path's GET and POST are two routes)
            path = request.url.path
            allowed = {m for r in getattr(app.state, "routes", ()) if r.path_regex.match(path)
                       for m in r.methods}
            if allowed:
                resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp

    @app.exception_handler(Exception)
    async def _crash(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled_http_error", error=repr(e))
        return problem(500, "internal-error", "Internal error")

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": runtime.settings.service_name}

    @app.get("/readyz", tags=["operations"], summary="Readiness: broker and store reachable",
             responses={503: {"description": "Not ready"}})
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not-ready", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=PlainTextResponse)
    async def metrics() -> Response:
        await runtime.refresh_gauges()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI document")
    async def asyncapi() -> dict[str, Any]:
        return runtime.asyncapi()

    app.add_middleware(EdgeMiddleware, max_body=runtime.settings.max_body_bytes)
    return app


def include_api(app: FastAPI, api: ModuleType) -> None:
    """Mount a service's routes (`api.router`) and show, in the OpenAPI document FastAPI
    generates, each route's example answer. The examples are real answers kept in
    `openapi_examples.json` beside the api module, `{"GET /v1/...": {"status": 200,
    "example": ...}}` (with `"media_type"` where the answer is not JSON); one naming a route
    that does not exist fails when the document is built."""
    app.include_router(api.router)
    # every route as declared (FastAPI wraps an included router's): for `Allow` on a 405
    app.state.routes = [r for r in [*app.routes, *api.router.routes] if isinstance(r, APIRoute)]
    examples = json.loads(Path(api.__file__).with_name("openapi_examples.json").read_text())
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = generate()
        document_answers(app.state.routes, doc)
        for key, ex in examples.items():
            method, path = key.split(" ", 1)
            responses = doc["paths"][path][method.lower()]["responses"]
            answer = responses.setdefault(str(ex["status"]), {"description": "Success"})
            answer.setdefault("content", {}).setdefault(
                ex.get("media_type", "application/json"), {})["example"] = ex["example"]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


# -- the answers each route can give, in its OpenAPI document ---------------------------------
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details; `errors` names each field at fault.",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "code": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"},
                                             "reason": {"type": "string"},
                                             "type": {"type": "string"}}}}},
}
_ANSWERS = {
    400: "Malformed: a body that is not a JSON object (or nested too deeply), or a cursor or "
         "instant this API cannot read",
    401: "No bearer token, or one that is expired or not ours (`WWW-Authenticate` says why)",
    403: "Not allowed for this principal: its role, or what it is bound to",
    413: "The body is over the size limit",
    422: "Invalid input, each field at fault named in `errors`",
}


def _roles(route: APIRoute) -> tuple[str, ...] | None:
    """The roles a route requires (shared.auth.require), or None if it takes no token."""
    stack = [route.dependant]
    while stack:
        d = stack.pop()
        if hasattr(d.call, "roles"):
            return d.call.roles  # type: ignore[union-attr]
        stack.extend(d.dependencies)
    return None


def document_answers(routes: list[APIRoute], doc: dict[str, Any]) -> None:
    """Every answer the edge can give a route, in its OpenAPI document, the same way for every
    service: what EdgeMiddleware, the validation and authentication answer (400, 401, 403,
    413, 422) added where they apply, and every error answer as what it is, a problem+json
    body (FastAPI documents its own 422 as a JSON list of errors, which we never send)."""
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Problem"}
    for route in routes:
        if not route.include_in_schema:
            continue
        for method in route.methods:
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            codes: set[int] = set()
            roles = _roles(route)
            if roles is not None:  # a token is needed; a role among `roles` (if named) too
                codes |= {401, 403} if roles else {401}
            params = {p["name"] for p in op.get("parameters", ())}
            if "requestBody" in op:
                codes |= {400, 413, 422}
            if params:
                codes.add(422)
            if params & {"cursor", "as_of"}:
                codes.add(400)
            answers = op.setdefault("responses", {})
            for code in codes:
                answers.setdefault(str(code), {"description": _ANSWERS[code]})
            for code, answer in answers.items():
                if code[0] in "45" and code != "503":
                    examples = {k: v for c in answer.get("content", {}).values()
                                for k, v in c.items() if k in ("example", "examples")}
                    answer["content"] = {PROBLEM: {"schema": ref, **examples}}
                    if answer.get("description") == "Validation Error":  # FastAPI's words
                        answer["description"] = _ANSWERS[422]
    # FastAPI's validation-error shapes, which no answer uses any more
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused not in json.dumps(doc["paths"]):
            doc["components"]["schemas"].pop(unused, None)


# -- query parameters every service reads the same way -----------------------------------------
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _not_a_number(v: Any) -> Any:
    """pydantic reads a number, or a string of one, as seconds since 1970: `as_of=0.5` would
    be half a second into 1970. An instant here is ISO 8601 text and nothing else."""
    if isinstance(v, str) and _NUMBER.fullmatch(v):
        raise ValueError("an instant is ISO 8601 with its offset, e.g. 2026-01-01T00:00Z, "
                         "not a number")
    return v


AsOf = Annotated[datetime | None, BeforeValidator(_not_a_number), Query(
    description="An instant in ISO 8601 with its time zone (e.g. 2026-01-01T00:00Z): the "
                "answer as it stood then")]


def exact(obj: Any) -> Any:
    """JSON-ready with money exact: Decimal (and Decimal128) as strings, never floats, with
    at least two places ("1200000.00"; a rate keeps its own, "0.5000")."""
    from datetime import datetime
    from decimal import Decimal

    from bson import Decimal128

    from shared.dec128 import dec

    if isinstance(obj, Decimal128):
        obj = dec(obj)
    if isinstance(obj, Decimal):  # at least two places, so money always reads in cents
        exponent = obj.as_tuple().exponent
        return format(obj.quantize(Decimal("0.01")) if isinstance(exponent, int)
                      and exponent > -2 else obj, "f")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): exact(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [exact(v) for v in obj]
    return obj


def check_instant(instant: Any) -> Any:
    """An `as_of` instant must name its time zone (a moment, not a wall-clock reading)."""
    from shared.errors import BadRequest

    if instant.tzinfo is None:
        raise BadRequest("as_of needs a time zone", errors=[
            {"field": "as_of", "reason": "use ISO 8601 with an offset, e.g. 2026-01-01T00:00Z"}])
    return instant
