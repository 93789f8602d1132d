"""Every AsyncAPI document (the whole one in docs/ and each service's /asyncapi.json) passes
the AsyncAPI CLI's `validate` (npm @asyncapi/cli, installed by ./dev test from
deploy/tools/asyncapi): a real peer's parser, not only our own pin."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from shared import kafka_acl

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "deploy/tools/asyncapi/node_modules/.bin/asyncapi"


def validate(path: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CLI.exists(), "the AsyncAPI CLI is missing: ./dev test installs it (npm ci)"
    config = tmp / "asyncapi-analytics.json"  # no analytics: there is no network here
    config.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true",
                                  "userID": "mptf-tests"}))
    return subprocess.run([str(CLI), "validate", str(path), "--fail-severity", "warn"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(config),
                               "CI": "true"})


def test_the_whole_document_is_valid(tmp_path: Path) -> None:
    out = validate(ROOT / "docs/asyncapi.json", tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout


@pytest.mark.parametrize("service", kafka_acl.SERVICES)
def test_each_service_document_is_valid(service: str, tmp_path: Path) -> None:
    _, runtime = importlib.import_module(f"services.{service}.app").build()
    doc = tmp_path / f"{service}.json"
    doc.write_text(json.dumps(runtime.asyncapi()))
    out = validate(doc, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout
