"""What each image installs: the service's own locked dependencies (uv export / a dry-run of
the Dockerfile's uv sync in a build context holding only the files the Dockerfile mounts)."""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import pytest

from tests.unit.deploy.support import ROOT, SERVICES, Service, dockerfile_instructions, run, uv

TORCH_FAMILY = re.compile(r"^(torch|torchvision|triton|nvidia-[\w-]+|cuda-[\w-]+)$")
WITHOUT_TORCH = [s for s in SERVICES if s.name != "trainer"]
TRAINER = next(s for s in SERVICES if s.name == "trainer")


def exported(service: Service) -> dict[str, str]:
    """Package -> version of `uv export --package` (workspace members as `-e ./path`)."""
    result = uv(
        "export",
        "--package",
        service.package,
        "--frozen",
        "--no-dev",
        "--no-hashes",
        "--no-header",
        "--no-annotate",
    )
    assert result.returncode == 0, result.stderr
    packages: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith("-e ./"):
            packages["hone-" + Path(line[len("-e ./") :]).name] = "workspace"
        elif "==" in line:
            name, _, rest = line.partition("==")
            packages[name.strip()] = rest.split(";")[0].strip()
    return packages


@pytest.mark.parametrize("service", WITHOUT_TORCH, ids=lambda s: s.name)
def test_image_without_torch_gets_no_torch_nor_cuda(service: Service) -> None:
    packages = exported(service)
    assert service.package in packages
    assert "hone-common" in packages
    assert not [name for name in packages if TORCH_FAMILY.match(name)]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_image_holds_no_other_service_package(service: Service) -> None:
    packages = exported(service)
    others = {s.package for s in SERVICES if s != service} | {"hone-simulator"}
    assert not others & packages.keys()


def test_trainer_lock_has_torch_and_the_dockerfile_swaps_it_for_the_cpu_build() -> None:
    packages = exported(TRAINER)
    assert "torch" in packages
    assert "torchvision" in packages
    run = "\n".join(
        i.value for i in dockerfile_instructions(TRAINER.dockerfile) if i.keyword == "RUN"
    )
    pattern = re.search(r"grep -vE '([^']+)'", run)
    assert pattern is not None, "the trainer Dockerfile filters the exported requirements"
    kept = [name for name in packages if not re.match(pattern.group(1), f"{name}==")]
    dropped = sorted(set(packages) - set(kept))
    assert all(TORCH_FAMILY.match(name) for name in dropped), dropped
    assert {"torch", "torchvision"} <= set(dropped)
    # torch's own pure-Python dependencies and the archiver stay, pinned by the lock.
    assert {"torch-model-archiver", "filelock", "sympy", "networkx"} <= set(kept)
    assert '"torch==${torch}+cpu" "torchvision==${torchvision}+cpu"' in run


@pytest.mark.parametrize("service", [s for s in SERVICES if s.name in ("ingest", "scorer")])
def test_dockerfile_dependency_layer_resolves_from_the_mounted_files_alone(
    service: Service, tmp_path: Path
) -> None:
    """The first `uv sync` of the Dockerfile sees only its bind mounts: it must work there."""
    instructions = dockerfile_instructions(service.dockerfile)
    layer = next(i for i in instructions if i.keyword == "RUN" and "type=bind" in i.value)
    for source, target in re.findall(r"type=bind,source=([^,\s]+),target=([^,\s]+)", layer.value):
        (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, tmp_path / target)
    command = re.search(r"uv (sync [^\n]+)", layer.value)
    assert command is not None
    args = command.group(1).split()
    result = uv(
        *args, "--dry-run", "--python", shutil.which("python3.11") or "python3", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    planned = {
        line.split()[1].split("==")[0]
        for line in result.stderr.splitlines()
        if line.startswith(" + ")
    }
    assert {"faststream", "asyncpg", "fastapi"} <= planned
    assert not [name for name in planned if TORCH_FAMILY.match(name)]
    assert service.package not in planned, "--no-install-workspace: the code comes later"


def build_context(service: Service, target: Path) -> None:
    """Lay out what the Dockerfile's build stage COPYs, relative to its WORKDIR."""
    for instruction in dockerfile_instructions(service.dockerfile):
        if instruction.keyword != "COPY" or "--from=" in instruction.value:
            continue
        *sources, destination = instruction.value.split()
        for source in sources:
            where = target / destination if destination != "./" else target
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(
                    path,
                    where,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "Dockerfile"),
                )
            else:
                dest = where / path.name if destination.endswith("/") else where
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, dest)


# Two services (about 10 s each on 2 cores); the others share the same Dockerfile template.
@pytest.mark.parametrize("service", [s for s in SERVICES if s.name in ("ingest", "scorer")])
def test_image_environment_built_like_the_dockerfile_runs_the_service(
    service: Service, tmp_path: Path
) -> None:
    """Run the build stage's uv commands in a context of only what it copies: the venv must
    import the service's app and hold its console script, and nothing of torch."""
    try:
        importlib.import_module(f"{service.module}.app")
    except ModuleNotFoundError:
        pytest.skip(f"{service.module}.app does not exist yet")
    context = tmp_path / "src"
    build_context(service, context)
    venv = tmp_path / "venv"
    runs = [i.value for i in dockerfile_instructions(service.dockerfile) if i.keyword == "RUN"]
    commands = [m.group(1).split() for r in runs if (m := re.search(r"uv (sync [^\n]+)", r))]
    assert len(commands) == 2, "a dependency layer, then the workspace packages"
    for args in commands:
        result = uv(*args, "-q", cwd=context, env={"UV_PROJECT_ENVIRONMENT": str(venv)})
        assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    check = run(python, "-c", f"import {service.module}.app, importlib.util as u; "
                "print(u.find_spec('torch') is None)")  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "True"
    assert (venv / "bin" / f"hone-{service.name}").exists()
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert not (site / service.module / "__init__.py").is_symlink()
    assert not list(site.glob("*.pth")) or all(
        str(context) not in p.read_text() for p in site.glob("*.pth")
    ), "--no-editable: the image must not point back into the build context"
