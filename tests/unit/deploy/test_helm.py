"""The Helm chart: lint, render with default and production values, validate the manifests
against the Kubernetes schemas (kubeconform -strict) and the Prometheus Operator CRDs, and check
what the chart promises: probes, non-root read-only pods, HPAs, PDBs, settings names."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.support import (
    K8S_SCHEMAS,
    NODE_MODULES,
    ROOT,
    SERVICES,
    Service,
    load_settings,
    run,
    tool,
    unknown_settings,
)

CHART = ROOT / "deploy" / "helm" / "hone"
PRODUCTION = CHART / "values-production.yaml"
KUBE_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")
SCALED = {"ingest", "scorer"}

Manifests = list[dict[str, Any]]


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    return run(
        tool("helm"), "template", "hone", CHART, "--namespace", "hone",
        "--kube-version", KUBE_VERSIONS[1], *args,
    )  # fmt: skip


def render(*args: str) -> tuple[str, Manifests]:
    result = helm_template(*args)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return result.stdout, docs


@pytest.fixture(scope="module")
def default() -> tuple[str, Manifests]:
    return render()


@pytest.fixture(scope="module")
def production() -> tuple[str, Manifests]:
    return render("-f", str(PRODUCTION))


def of_kind(docs: Manifests, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def kubeconform(manifests: Path, version: str) -> subprocess.CompletedProcess[str]:
    location = (
        f"file://{K8S_SCHEMAS}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}"
        "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
    return run(
        tool("kubeconform"), "-strict", "-summary", "-kubernetes-version", version,
        "-schema-location", location, "-skip", ",".join(OPERATOR_KINDS), manifests,
    )  # fmt: skip


# ------------------------------------------------------------------------------ validity


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_chart_passes_helm_lint(values: list[str]) -> None:
    result = run(tool("helm"), "lint", CHART, "--kube-version", KUBE_VERSIONS[1], *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", ["default", "production"])
def test_rendered_manifests_are_valid_kubernetes_objects(
    values: str, version: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    text, docs = request.getfixturevalue(values)
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(text)
    result = kubeconform(manifests, version)
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = sum(d["kind"] in OPERATOR_KINDS for d in docs)
    assert f"Valid: {len(docs) - skipped}, Invalid: 0, Errors: 0, Skipped: {skipped}" in (
        result.stdout
    )


def test_kubeconform_refuses_a_misspelt_field(tmp_path: Path) -> None:
    text, _ = render()
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1))
    result = kubeconform(broken, KUBE_VERSIONS[1])
    assert result.returncode != 0
    assert "Invalid: 1" in result.stdout


def validate_operator_objects(docs: Manifests) -> subprocess.CompletedProcess[str]:
    return run(
        "node",
        ROOT / "tests/unit/deploy/validate_prometheus_operator.mjs",
        input=json.dumps(docs),
        env=dict(os.environ, HONE_TOOLS_NODE_MODULES=str(NODE_MODULES)),
    )


def test_service_monitor_and_rules_match_the_prometheus_operator_crds(
    production: tuple[str, Manifests],
) -> None:
    _, docs = production
    operator = [d for d in docs if d["kind"] in OPERATOR_KINDS]
    assert sorted(d["kind"] for d in operator) == ["PrometheusRule", "ServiceMonitor"]
    result = validate_operator_objects(operator)
    assert result.returncode == 0, result.stdout + result.stderr


def test_crd_validation_refuses_a_bad_service_monitor(production: tuple[str, Manifests]) -> None:
    _, docs = production
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    bad = json.loads(json.dumps(monitor))
    bad["spec"]["endpoints"][0]["interval"] = 30
    result = validate_operator_objects([bad])
    assert result.returncode == 1
    assert "interval" in result.stdout


# ------------------------------------------------------------------------------ promises


def test_every_service_has_a_deployment_and_a_service(default: tuple[str, Manifests]) -> None:
    _, docs = default
    deployments, services = of_kind(docs, "Deployment"), of_kind(docs, "Service")
    for service in SERVICES:
        name = f"hone-{service.name}"
        assert name in deployments
        assert name in services
        port = services[name]["spec"]["ports"][0]
        assert (port["name"], port["port"]) == ("http", service.port)
        selector = services[name]["spec"]["selector"]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    assert "hone-torchserve" in deployments


@pytest.mark.parametrize("values", ["default", "production"])
def test_pods_run_non_root_on_a_read_only_root_filesystem_with_limits(
    values: str, request: pytest.FixtureRequest
) -> None:
    _, docs = request.getfixturevalue(values)
    for deployment in of_kind(docs, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_probes_health_and_readiness_on_its_port(
    default: tuple[str, Manifests], service: Service
) -> None:
    _, docs = default
    container = of_kind(docs, "Deployment")[f"hone-{service.name}"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["ports"] == [
        {"name": "http", "containerPort": service.port, "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["image"] == f"ghcr.io/hone-project/hone-{service.name}:0.1.0"


def test_ingest_and_scorer_scale_horizontally_and_the_rest_do_not(
    default: tuple[str, Manifests],
) -> None:
    _, docs = default
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    deployments = of_kind(docs, "Deployment")
    assert {name.removeprefix("hone-") for name in hpas} == SCALED
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert hpa["spec"]["minReplicas"] >= 2
        assert "replicas" not in deployments[name]["spec"], "the HPA owns the replica count"
    for name in ("hone-selector", "hone-trainer", "hone-gatekeeper", "hone-torchserve"):
        assert deployments[name]["spec"]["replicas"] == 1
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate"


def test_every_service_has_a_disruption_budget_matching_its_pods(
    default: tuple[str, Manifests],
) -> None:
    _, docs = default
    budgets = of_kind(docs, "PodDisruptionBudget")
    deployments = of_kind(docs, "Deployment")
    for service in SERVICES:
        budget = budgets[f"hone-{service.name}"]
        labels = deployments[f"hone-{service.name}"]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if service.name in SCALED or service.name == "labeling-api":
            assert budget["spec"]["minAvailable"] == 1
        else:  # one replica: a budget that never blocks a node drain
            assert budget["spec"]["maxUnavailable"] == 1


def settings_env(docs: Manifests, deployment: str) -> dict[str, str]:
    """The environment a service container gets: ConfigMap, then its own env (secrets faked)."""
    config = of_kind(docs, "ConfigMap")["hone-config"]["data"]
    container = of_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]["containers"][0]
    env = dict(config)
    for item in container["env"]:
        env[item["name"]] = item.get("value", f"secret:{item['name']}")
    env["HONE_POSTGRES__DSN"] = "postgresql://hone:secret@postgres:5432/hone"
    return env


@pytest.mark.parametrize("values", ["default", "production"])
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_environment_is_read_by_the_service_settings(
    values: str, service: Service, request: pytest.FixtureRequest
) -> None:
    _, docs = request.getfixturevalue(values)
    env = settings_env(docs, f"hone-{service.name}")
    assert not unknown_settings(service.name, list(env))
    settings = load_settings(service.name, {k: v for k, v in env.items() if k.startswith("HONE_")})
    assert settings.kafka.bootstrap_servers == "hone-kafka-bootstrap.kafka.svc:9092"
    assert settings.torchserve.inference_url == "http://hone-torchserve:8080"
    assert settings.http.port == service.port  # type: ignore[attr-defined]


def test_credentials_come_from_the_secret_never_from_values(
    default: tuple[str, Manifests],
) -> None:
    _text, docs = default
    assert not of_kind(docs, "Secret"), "by default the chart only references hone-credentials"
    container = of_kind(docs, "Deployment")["hone-scorer"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
    }
    assert secret_env == {
        "HONE_POSTGRES__DSN": {"name": "hone-credentials", "key": "postgres-dsn"},
        "HONE_S3__ACCESS_KEY": {"name": "hone-credentials", "key": "s3-access-key"},
        "HONE_S3__SECRET_KEY": {"name": "hone-credentials", "key": "s3-secret-key"},
    }


def test_chart_can_create_the_credentials_secret_and_requires_its_values() -> None:
    values = [
        "--set", "credentials.create=true",
        "--set", "credentials.postgresDsn=postgresql://u:p@db:5432/hone",
        "--set", "credentials.s3AccessKey=ak",
        "--set", "credentials.s3SecretKey=sk",
    ]  # fmt: skip
    _, docs = render(*values)
    secret = of_kind(docs, "Secret")["hone-credentials"]
    assert secret["stringData"]["s3-secret-key"] == "sk"
    refused = helm_template("--set", "credentials.create=true")
    assert refused.returncode != 0
    assert "credentials.postgresDsn is required" in refused.stderr


def test_external_torchserve_needs_its_urls() -> None:
    refused = helm_template("--set", "torchserve.enabled=false")
    assert refused.returncode != 0
    assert "torchserve.inferenceUrl is required" in refused.stderr
    _, docs = render(
        "--set", "torchserve.enabled=false",
        "--set", "torchserve.inferenceUrl=http://ts.ml.svc:8080",
        "--set", "torchserve.managementUrl=http://ts.ml.svc:8081",
        "--set", "torchserve.metricsUrl=http://ts.ml.svc:8082",
        "--set", "torchserve.keysSecret=ts-keys",
    )  # fmt: skip
    assert "hone-torchserve" not in of_kind(docs, "Deployment")
    config = of_kind(docs, "ConfigMap")["hone-config"]["data"]
    assert config["HONE_TORCHSERVE__INFERENCE_URL"] == "http://ts.ml.svc:8080"
    scorer = of_kind(docs, "Deployment")["hone-scorer"]["spec"]["template"]["spec"]
    keys = next(v for v in scorer["volumes"] if v["name"] == "torchserve-keys")
    assert keys["secret"] == {"secretName": "ts-keys", "optional": True}


def test_torchserve_keys_reach_the_services_that_call_it(default: tuple[str, Manifests]) -> None:
    _, docs = default
    deployments = of_kind(docs, "Deployment")
    torchserve = deployments["hone-torchserve"]["spec"]["template"]["spec"]
    publisher = next(c for c in torchserve["containers"] if c["name"] == "key-publisher")
    published = next(e["value"] for e in publisher["env"] if e["name"] == "HONE_KEYS_SECRET")
    role = of_kind(docs, "Role")["hone-torchserve-keys"]
    assert published in role["rules"][0]["resourceNames"]
    for name in ("hone-scorer", "hone-gatekeeper"):
        pod = deployments[name]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "torchserve-keys")
        assert volume["secret"]["secretName"] == published
        mount = next(
            m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "torchserve-keys"
        )
        assert "subPath" not in mount, "a subPath mount never sees rotated keys"
    allowed = next(
        e["value"] for e in torchserve["containers"][0]["env"] if e["name"] == "TS_ALLOWED_URLS"
    )
    assert allowed == "http://minio\\.minio\\.svc:9000/hone-models/.*"


def test_monitoring_objects_are_off_by_default_and_on_in_production(
    default: tuple[str, Manifests], production: tuple[str, Manifests]
) -> None:
    assert not [d for d in default[1] if d["kind"] in OPERATOR_KINDS]
    _, docs = production
    monitor = of_kind(docs, "ServiceMonitor")["hone"]
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "metrics"}
    rules = of_kind(docs, "PrometheusRule")["hone"]["spec"]
    source = yaml.safe_load((ROOT / "deploy/monitoring/rules/hone-alerts.yml").read_text())
    assert rules == source, "the PrometheusRule is the rules file, untemplated"


@pytest.mark.parametrize(
    ("kind", "name", "path", "expected"),
    [
        ("Ingress", "hone-ingest", "spec.rules.0.host", "hone.example.com"),
        ("ConfigMap", "hone-config", "data.HONE_S3__SECURE", "true"),
        ("HorizontalPodAutoscaler", "hone-scorer", "spec.maxReplicas", 12),
        ("PersistentVolumeClaim", "hone-torchserve-model-store",
         "spec.resources.requests.storage", "20Gi"),
    ],
    ids=["ingress", "s3-tls", "scorer-max-replicas", "model-store-pvc"],
)  # fmt: skip
def test_production_values_take_effect(
    production: tuple[str, Manifests], kind: str, name: str, path: str, expected: Any
) -> None:
    value: Any = of_kind(production[1], kind)[name]
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else value[part]
    assert value == expected


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("services.scorer.replica=3", "additional properties 'replica' not allowed"),
        ("environment=prod", "/environment"),
        ("services.ingest.port=0", "/services/ingest/port"),
        ("kafka.bootstrapServers=", "/kafka/bootstrapServers"),
    ],
)
def test_values_schema_refuses_misspelt_or_invalid_values(setting: str, complaint: str) -> None:
    refused = helm_template("--set", setting)
    assert refused.returncode != 0
    assert complaint in refused.stderr
