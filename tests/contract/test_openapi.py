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
