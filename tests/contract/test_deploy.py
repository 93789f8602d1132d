"""Deployment files stay in step with the code: dashboards only query metrics that exist;
manifests and docker-compose only set settings that exist, on the services' own ports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401  (registers the metrics)
from services.funding.app import FundingSettings
from services.intake.app import IntakeSettings
from services.monitoring.app import MonitoringSettings
from services.notifications.app import NotificationsSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [IntakeSettings, FundingSettings, MonitoringSettings, NotificationsSettings]
KNOWN = {f"MPTF_{name.upper()}" for cls in SETTINGS for name in cls.model_fields} | {
    alias for cls in SETTINGS for f in cls.model_fields.values()
    if f.validation_alias is not None for alias in getattr(f.validation_alias, "choices", [])}


def exported_metric_names() -> set[str]:
    """The series names Prometheus scrapes, by each family's type (a labelled metric has no
    samples until first used, so samples alone would miss it)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""], "summary": ["", "_sum", "_count"]}
    return {m.name + s for m in REGISTRY.collect() for s in suffixes.get(m.type, [""])}


def test_dashboards_query_only_metrics_that_exist() -> None:
    names = exported_metric_names()
    for f in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        for p in json.loads(f.read_text())["panels"]:
            for t in p["targets"]:
                for metric in re.findall(r"\bmptf_[a-z_]+", t["expr"]):
                    assert metric in names, f"{f.name}: {p['title']}: {metric}"


def test_manifests_and_compose_set_only_real_settings_on_the_right_ports() -> None:
    ports = {cls().service_name: cls().http_port for cls in SETTINGS}
    for f in (ROOT / "deploy/k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc:
                continue
            if doc["kind"] == "ConfigMap":
                assert set(doc["data"]) <= KNOWN, f.name
            if doc["kind"] == "Deployment":
                name = doc["metadata"]["name"]
                (c,) = doc["spec"]["template"]["spec"]["containers"]
                assert c["ports"][0]["containerPort"] == ports[name]
                assert {e["name"] for e in c["env"]} <= KNOWN
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        if name in ports:
            assert svc["command"] == ["python", "-m", f"services.{name}"]
            env = {**compose["x-service"]["environment"], **svc.get("environment", {})}
            assert set(env) <= KNOWN, name
            assert env["MPTF_HTTP_PORT"] == str(ports[name])
