"""The Dockerfiles: hadolint-clean, pinned, one service's dependencies each, non-root, with a
health check on the service's own port; TorchServe's image with token auth and the same
versions as the local stack."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.unit.deploy.support import (
    ROOT,
    SERVICES,
    Service,
    dockerfile_instructions,
    run,
    settings_class,
    tool,
)

TORCHSERVE_DIR = ROOT / "docker" / "torchserve"
DOCKERFILES = [s.dockerfile for s in SERVICES] + [TORCHSERVE_DIR / "Dockerfile"]
BASE_IMAGE = "python:3.11-slim-bookworm"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = run(tool("hadolint"), "--no-color", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_base_image_is_pinned(dockerfile: Path) -> None:
    instructions = dockerfile_instructions(dockerfile)
    args = dict(
        i.value.partition("=")[::2] for i in instructions if i.keyword == "ARG" and "=" in i.value
    )
    for line in (i.value for i in instructions if i.keyword == "FROM"):
        image = line.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        name, _, tag = image.rpartition(":")
        assert name, image
        assert tag not in ("", "latest"), f"{dockerfile}: unpinned base {image}"
        assert image in (BASE_IMAGE, "ghcr.io/astral-sh/uv:0.13.9"), image


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_image_installs_only_its_own_locked_package(service: Service) -> None:
    text = service.dockerfile.read_text()
    runs = "\n".join(
        i.value for i in dockerfile_instructions(service.dockerfile) if i.keyword == "RUN"
    )
    syncs = re.findall(r"uv (?:sync|export) [^\n]*", runs)
    assert syncs, "the image must be installed with uv from the lock"
    for command in syncs:
        assert "--frozen" in command, command
        assert "--no-dev" in command, command
        assert f"--package {service.package}" in command, command
    # Nothing of another service is copied into the build.
    for other in SERVICES:
        if other != service:
            assert f"services/{other.name}" not in text


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_image_runs_its_console_script_as_non_root_on_its_port(service: Service) -> None:
    instructions = dockerfile_instructions(service.dockerfile)
    runtime = [i for i in instructions if i.stage == max(j.stage for j in instructions)]
    by_keyword = {i.keyword: i.value for i in runtime}

    user = by_keyword["USER"].split(":")[0]
    assert user.isdigit(), "a numeric user, so runAsNonRoot can check it"
    assert int(user) > 0
    assert by_keyword["EXPOSE"] == str(service.port)
    assert f"HONE_HTTP__PORT={service.port}" in by_keyword["ENV"]
    assert "HONE_HTTP__HOST=0.0.0.0" in by_keyword["ENV"]
    assert by_keyword["ENTRYPOINT"] == f'["hone-{service.name}"]'
    assert "/healthz" in by_keyword["HEALTHCHECK"]
    assert "HONE_HTTP__PORT" in by_keyword["HEALTHCHECK"]

    scripts = tomllib.loads((service.dockerfile.parent / "pyproject.toml").read_text())["project"]
    assert f"hone-{service.name}" in scripts["scripts"], "the ENTRYPOINT must exist"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_image_port_is_the_default_port_of_the_service_settings(service: Service) -> None:
    cls = settings_class(service.name)
    if cls is None:
        pytest.skip(f"{service.module}.settings does not exist yet")
    assert cls().http.port == service.port  # type: ignore[attr-defined]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_everything_the_dockerfile_copies_exists_in_the_build_context(dockerfile: Path) -> None:
    sources: list[str] = []
    for instruction in dockerfile_instructions(dockerfile):
        if instruction.keyword == "COPY" and "--from=" not in instruction.value:
            sources += instruction.value.split()[:-1]
        sources += re.findall(r"type=bind,source=([^,\s]+)", instruction.value)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile}: {source} is not in the repository"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("**/.venv", ".git", ".local-stack", ".env"):
        assert pattern in ignored


# ----------------------------------------------------------------------------- TorchServe


def _properties(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().replace("\\\\", "\\")
    return values


def test_torchserve_config_keeps_token_authorization_on() -> None:
    config = _properties(TORCHSERVE_DIR / "config.properties")
    assert config["disable_token_authorization"] == "false"
    assert int(config["token_expiration_min"]) > 0
    assert config["model_store"] == "/home/model-server/model-store"
    assert config["metrics_mode"] == "prometheus"
    assert config["enable_envvars_config"] == "true"  # TS_ALLOWED_URLS from compose / Helm


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://minio:9000/hone-models/scorer/v3.mar", True),
        ("http://minio:9000/hone-models/v3.mar?X-Amz-Signature=abc", True),
        ("http://minio:9000/hone-images/x.mar", False),
        ("http://attacker.example/hone-models/x.mar", False),
        ("https://minio:9000/hone-models/x.mar", False),
        ("file:///etc/passwd", False),
    ],
)
def test_torchserve_registers_models_only_from_the_minio_model_bucket(
    url: str, allowed: bool
) -> None:
    pattern = _properties(TORCHSERVE_DIR / "config.properties")["allowed_urls"]
    compose = (ROOT / "docker-compose.yml").read_text()
    overridden = re.search(r"TS_ALLOWED_URLS: (\S+)", compose)
    assert overridden is not None
    for regex in (pattern, overridden.group(1)):
        # TorchServe matches the whole URL (Java's Pattern.matches).
        assert bool(re.fullmatch(regex, url)) is allowed, (regex, url)


def test_torchserve_image_uses_the_local_stack_versions() -> None:
    versions = dict(
        line.split("#")[0].strip().partition("=")[::2]
        for line in (ROOT / "deploy/local/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    args = dict(
        i.value.partition("=")[::2]
        for i in dockerfile_instructions(TORCHSERVE_DIR / "Dockerfile")
        if i.keyword == "ARG" and "=" in i.value
    )
    for name in (
        "TORCHSERVE_VERSION",
        "TORCH_MODEL_ARCHIVER_VERSION",
        "TORCH_VERSION",
        "TORCHVISION_VERSION",
        "PYYAML_VERSION",
        "NUMPY_VERSION",
        "PILLOW_VERSION",
    ):
        assert args[name] == versions[name], name


def test_torchserve_runs_as_the_uid_of_the_services_so_they_can_read_its_key_file() -> None:
    def runtime_user(path: Path) -> str:
        instructions = dockerfile_instructions(path)
        last = max(i.stage for i in instructions)
        return next(i.value for i in instructions if i.stage == last and i.keyword == "USER")

    uids = {runtime_user(p) for p in DOCKERFILES}
    assert uids == {"10001:10001"}


def test_service_dockerfiles_without_torch_differ_only_in_name_and_port() -> None:
    """So what is tested on one of them (e.g. a real build of its environment) holds for all."""
    shapes = {
        s.name: s.dockerfile.read_text().replace(s.name, "NAME").replace(str(s.port), "PORT")
        for s in SERVICES
        if s.name != "trainer"
    }
    assert len(set(shapes.values())) == 1, sorted(shapes)
