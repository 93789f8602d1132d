"""The deployment files are proven, not only written: every Kubernetes manifest validates,
strictly, against the Kubernetes API schemas (kubernetes-validate, which ships them); the
Strimzi resources against the CRDs of the Strimzi release we target (vendored in
deploy/schemas/strimzi); docker-compose.yml against the Compose Specification's JSON schema
(vendored). Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES = "1.34.0"  # the API version the manifests are written for


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def strimzi_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of each served version of each CRD."""
    out = {}
    for f in sorted((SCHEMAS / "strimzi").glob("*-Crd-*.yaml")):
        crd = yaml.safe_load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(k["resources"]) == sorted(
        f.name for f in K8S.glob("*.yaml") if f.name != "kustomization.yaml")


def test_every_manifest_validates_against_its_schema() -> None:
    crds = strimzi_schemas()
    wrong = []
    docs = manifests()
    for name, doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        try:
            if doc["apiVersion"].startswith("kafka.strimzi.io/"):
                assert key in crds, f"Strimzi serves no {key} (only {sorted(crds)})"
                jsonschema.validate(doc, crds[key])
            else:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except (AssertionError, jsonschema.ValidationError,
                kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError
                ) as e:
            wrong.append(f"{name} {doc['kind']} {doc['metadata'].get('name')}: "
                         f"{str(e).splitlines()[0][:300]}")
    assert len(docs) > 20 and {d["kind"] for _, d in docs} >= {
        "Deployment", "Service", "PodDisruptionBudget", "Kafka", "KafkaTopic", "KafkaUser"}
    assert not wrong, "\n".join(wrong)


def test_docker_compose_validates_against_the_compose_specification() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, schema)


def test_the_manifests_set_what_a_cluster_needs() -> None:
    docs = [d for _, d in manifests()]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    kafka = by[("Kafka", "mptf-kafka")]["spec"]["kafka"]["config"]
    assert (kafka["default.replication.factor"], kafka["min.insync.replicas"],
            kafka["unclean.leader.election.enable"]) == (3, 2, False)
    assert by[("KafkaNodePool", "dual")]["spec"]["replicas"] == 3
    assert {d["spec"]["replicas"] for d in docs if d["kind"] == "KafkaTopic"} == {3}
    pdbs = {d["spec"]["selector"]["matchLabels"]["app"]: d for d in docs
            if d["kind"] == "PodDisruptionBudget"}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        name, spec = d["metadata"]["name"], d["spec"]
        assert spec["replicas"] >= 2, name
        assert pdbs[name]["spec"]["minAvailable"] < spec["replicas"], name
        pod = spec["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"], name
        (c,) = pod["containers"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
    mongo = by[("StatefulSet", "mongo")]["spec"]["template"]["spec"]["containers"][0]
    assert by[("StatefulSet", "mongo")]["spec"]["replicas"] == 3  # a replica set
    assert "transactionLifetimeLimitSeconds=15" in mongo.get("args", [])


def test_the_store_requires_authentication_and_each_service_has_its_own_user_alone() -> None:
    """Kubernetes and docker-compose alike: mongod runs with users (its administrator from a
    secret, the members' key file), mongo-init makes mptf_cli.mongo_users' plan, and each
    service is given its own Mongo password and Kafka password, nobody else's."""
    from mptf_cli.mongo_users import ADMIN, plan

    services = ("intake", "funding", "monitoring", "notifications")
    assert set(plan()) == {f"svc-{s}" for s in services}
    by = {(d["kind"], d["metadata"]["name"]): d for d in (d for _, d in manifests())}
    pod = by[("StatefulSet", "mongo")]["spec"]["template"]["spec"]
    (mongod,) = pod["containers"]
    env = {e["name"]: e for e in mongod["env"]}
    assert env["MONGO_INITDB_ROOT_USERNAME"]["value"] == ADMIN
    assert env["MONGO_INITDB_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mongo-admin"
    assert "--keyFile" in mongod["args"] and "--noauth" not in mongod["args"]
    job = by[("Job", "mongo-init")]["spec"]["template"]["spec"]
    (init,) = job["containers"]
    assert init["command"][:4] == ["python", "-m", "mptf_cli.mongo_users", "apply"]
    (users,) = job["volumes"]
    assert {item["path"] for src in users["projected"]["sources"]
            for item in src["secret"]["items"]} == {ADMIN, *plan()}
    secrets = {name for kind, name in by if kind == "Secret"}
    for s in services:
        (c,) = by[("Deployment", s)]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["MONGODB_USERNAME"]["value"] == f"svc-{s}"
        assert env["MONGODB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"mongo-svc-{s}"
        assert f"mongo-svc-{s}" in secrets
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
        assert refs == {f"svc-{s}", f"mongo-svc-{s}"}, s  # its own Kafka and Mongo secrets

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mongo = compose["services"]["mongo"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"] == ADMIN
    assert "--keyFile" in mongo["command"]
    assert all(p.startswith("127.0.0.1:") for p in mongo.get("ports", []))  # this host alone
    assert compose["services"]["mongo-init"]["command"][:4] == init["command"][:4]
    files = {name: s["file"] for name, s in compose["secrets"].items()}
    for s in services:
        svc = compose["services"][s]
        mounted = {(m["source"], m["target"]) if isinstance(m, dict) else (m, m)
                   for m in svc["secrets"]}
        assert mounted == {(f"kafka_{s}", "kafka_credentials"),
                           (f"mongo_{s}", "mongo_credentials"), ("auth_jwks", "auth_jwks")}
        assert files[f"kafka_{s}"].endswith(f"kafka-{s}.json")
        assert files[f"mongo_{s}"].endswith(f"mongo-{s}.json")
    env = compose["x-service"]["environment"]
    assert env["MPTF_MONGODB_CREDENTIALS"] == "/run/secrets/mongo_credentials"
    assert env["MPTF_KAFKA_CREDENTIALS"] == "/run/secrets/kafka_credentials"
