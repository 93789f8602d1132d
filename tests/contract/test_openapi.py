"""The OpenAPI documents: every route names what it does, and shows an example of what it
takes (valid for its own model) and of what it answers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from services.funding.app import build as build_funding
from services.funding.commands import Decision, Deposit, Meeting, Pledge, Refund
from services.intake.api import Withdrawal
from services.intake.app import build as build_intake
from services.monitoring.app import build as build_monitoring
from services.notifications.api import ContactIn
from services.notifications.app import build as build_notifications
from tests.support import readme_authz_table

TABLE = readme_authz_table(["intake", "funding", "monitoring", "notifications"])
BUILDS = {"intake": build_intake, "funding": build_funding, "monitoring": build_monitoring,
          "notifications": build_notifications}


def openapi(service: str) -> dict[str, Any]:
    app, _ = BUILDS[service]()
    return app.openapi()


@pytest.mark.parametrize("service", sorted(BUILDS))
def test_every_route_shows_an_example_of_what_it_takes_and_answers(service: str) -> None:
    doc = openapi(service)
    schemas = doc["components"]["schemas"]
    routes = [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()
              if p.startswith("/v1/")]
    assert len(routes) >= 4
    for method, path, op in routes:
        where = f"{service} {method} {path}"
        assert op.get("summary"), where
        if "requestBody" in op:
            (body,) = op["requestBody"]["content"].values()
            name = body["schema"]["$ref"].rsplit("/", 1)[-1]
            assert body.get("examples") or schemas[name].get("examples"), where
        answers = [a for code, a in op["responses"].items() if code.startswith("2")]
        assert any(c.get("example") for a in answers for c in a.get("content", {}).values()), \
            where


@pytest.mark.parametrize("model", [Pledge, Deposit, Decision, Meeting, Refund, Withdrawal,
                                   ContactIn])
def test_request_examples_are_valid_for_their_own_model(model: type[BaseModel]) -> None:
    examples = model.model_config["json_schema_extra"]["examples"]  # type: ignore[index]
    assert examples
    for example in examples:
        model.model_validate(example)


@pytest.mark.parametrize("service", sorted(BUILDS))
def test_every_answer_the_edge_gives_is_documented_as_a_problem(service: str) -> None:
    """What an outside client (or an OpenAPI fuzzer) can be answered is in the document: a
    body can be malformed (400), too large (413) or invalid (422); a cursor or an instant
    unreadable (400); a token missing (401) or of another role (403), where the README's
    table of who may call what says some caller gets one. Every error answer
    is documented as what is sent, RFC 9457 problem+json, never FastAPI's own JSON shape
    for 422, which no route sends."""
    doc = openapi(service)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code"} <= set(problem["required"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{service} {method.upper()} {path}"
            answers = op["responses"]
            params = {p["name"] for p in op.get("parameters", ())}
            # the answers the README's table "Who may call what" gives some caller
            needed = set(TABLE[(service, method.upper(), path)].values()) & {"401", "403"}
            if "requestBody" in op:
                needed |= {"400", "413", "422"}
            if params:
                needed.add("422")
            if params & {"cursor", "as_of"}:
                needed.add("400")
            assert needed <= set(answers), (where, needed - set(answers))
            for code, answer in answers.items():
                if code.startswith("4"):
                    assert answer["content"] == {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}, (where, code)
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
