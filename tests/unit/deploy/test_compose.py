"""docker-compose.yml: valid against the compose specification, no secrets in the file, health
checks behind every depends_on, and service settings that the services really read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.support import (
    ROOT,
    SERVICE_NAMES,
    SERVICES,
    Service,
    compose_variables,
    dockerfile_instructions,
    env_file,
    interpolate,
    load_settings,
    run,
    tool,
    unknown_settings,
)

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INFRASTRUCTURE = ("kafka", "minio", "postgres", "torchserve", "prometheus", "grafana")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|DSN|TOKEN")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file interpolated with .env.example, as `docker compose config` sees it."""
    loaded = interpolate(raw_compose(), env_file(ENV_EXAMPLE))
    assert isinstance(loaded, dict)
    return loaded


def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    rendered = tmp_path / "compose.yml"
    rendered.write_text(yaml.safe_dump(interpolate(raw_compose(), env_file(ENV_EXAMPLE))))
    for path in (COMPOSE, rendered):
        result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_refuses_an_invalid_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy", "condition: up", 1))
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", broken)
    assert result.returncode != 0


def test_every_variable_without_default_is_in_env_example_and_none_is_stale() -> None:
    used = compose_variables(raw_compose())
    example = env_file(ENV_EXAMPLE)
    missing = [name for name, default in used.items() if default is None and name not in example]
    assert not missing, f"set in .env.example: {missing}"
    assert not set(example) - set(used), "variables in .env.example that compose never reads"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        env = {k: v for k, v in env_file(ENV_EXAMPLE).items() if k != secret}
        with pytest.raises(KeyError, match=secret):
            interpolate(raw_compose(), env)


def test_no_secret_is_written_in_the_compose_file() -> None:
    raw = raw_compose()
    blocks = [raw.get("x-hone-env", {})] + [environment(s) for s in raw["services"].values()]
    for block in blocks:
        for name, value in block.items():
            if SECRET_NAME.search(name):
                assert "${" in str(value), f"{name} must come from the environment"


def test_the_whole_system_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == set(INFRASTRUCTURE) | set(SERVICE_NAMES)
    kafka = compose["services"]["kafka"]["image"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka)
    assert re.fullmatch(r"postgres:1[56]\.\d+-\S+", compose["services"]["postgres"]["image"])
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image, f"{name}: pin the image tag"
        assert not image.endswith(":latest"), f"{name}: pin the image tag"


def test_every_dependency_is_waited_for_until_healthy(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"
            target = compose["services"][dependency]
            has_check = "healthcheck" in target or any(
                i.keyword == "HEALTHCHECK"
                for i in dockerfile_instructions(ROOT / target["build"]["dockerfile"])
            )
            assert has_check, f"{dependency} has no health check"


def test_infrastructure_has_health_checks_and_named_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    for name in INFRASTRUCTURE:
        service = compose["services"][name]
        assert "healthcheck" in service, name
        named = [v.split(":")[0] for v in service.get("volumes", []) if not v.startswith(".")]
        assert named, name
        assert set(named) <= volumes, name


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_is_built_from_its_dockerfile_and_published_on_its_port(
    compose: dict[str, Any], service: Service
) -> None:
    entry = compose["services"][service.name]
    assert entry["build"] == {"context": ".", "dockerfile": f"services/{service.name}/Dockerfile"}
    assert environment(entry)["HONE_HTTP__PORT"] == str(service.port)
    assert f"127.0.0.1:{service.port}:{service.port}" in entry["ports"]
    assert entry["read_only"] is True
    assert "ALL" in entry["cap_drop"]
    assert {"kafka", "postgres", "minio"} <= set(entry["depends_on"])


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_environment_names_are_settings_the_service_reads(
    compose: dict[str, Any], service: Service
) -> None:
    names = list(environment(compose["services"][service.name]))
    assert [n for n in names if n.startswith("HONE_")], "the services are configured by HONE_"
    assert not unknown_settings(service.name, names)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_settings_load_from_the_compose_environment(
    compose: dict[str, Any], service: Service
) -> None:
    env = environment(compose["services"][service.name])
    settings = load_settings(service.name, env)
    example = env_file(ENV_EXAMPLE)
    assert settings.kafka.bootstrap_servers == "kafka:19092"
    assert settings.postgres.dsn.get_secret_value() == (
        f"postgresql://{example['POSTGRES_USER']}:{example['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{example['POSTGRES_DB']}"
    )
    assert settings.s3.endpoint == "minio:9000"
    assert settings.s3.secure is False
    assert settings.s3.secret_key.get_secret_value() == example["MINIO_ROOT_PASSWORD"]
    assert settings.torchserve.inference_url == "http://torchserve:8080"
    assert str(settings.torchserve.key_file) == "/var/run/hone/torchserve/key_file.json"
    assert settings.environment == "production"
    http = getattr(settings, "http", None)
    if http is not None:
        assert http.port == service.port


def test_unknown_setting_names_are_caught() -> None:
    assert unknown_settings("scorer", ["HONE_KAFKA__BOOTSTRAP_SERVER", "HONE_S3__ENDPOINT"]) == [
        "HONE_KAFKA__BOOTSTRAP_SERVER"
    ]


def test_services_reach_torchserve_keys_through_the_shared_volume(compose: dict[str, Any]) -> None:
    torchserve = compose["services"]["torchserve"]
    assert "torchserve-run:/home/model-server/run" in torchserve["volumes"]
    for name in ("scorer", "gatekeeper"):
        assert "torchserve-run:/var/run/hone/torchserve:ro" in compose["services"][name]["volumes"]
        assert compose["services"][name]["depends_on"]["torchserve"]["condition"] == (
            "service_healthy"
        )


def test_prometheus_scrapes_every_service_of_the_compose_file(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy/monitoring/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for target in job["static_configs"][0]["targets"]
    }
    for service in SERVICES:
        assert targets[service.name] == f"{service.name}:{service.port}"
    assert targets["torchserve"] == "torchserve:8082"
    mounts = compose["services"]["prometheus"]["volumes"]
    for mount in mounts:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
