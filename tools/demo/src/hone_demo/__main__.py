"""`hone-demo` / `python -m hone_demo`: run the closed-loop demo, stop its services, redo a report.

python -m hone_demo                   # the default run (about 15 minutes on 2 cores)
python -m hone_demo run --small       # a few hundred frames, two training rounds
python -m hone_demo stop              # end the services the demo left running
python -m hone_demo report artifacts/demo/<run-id>
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hone_demo import services
from hone_demo.config import DemoConfig, new_run_id

app = typer.Typer(help=__doc__, add_completion=False, invoke_without_command=True)
console = Console()
StateDirOpt = Annotated[
    Path | None, typer.Option(help="Where pid files go (default: .local-stack/services).")
]


@app.callback()
def default(context: typer.Context) -> None:
    """Without a command: the default run."""
    if context.invoked_subcommand is None:
        context.invoke(run)


@app.command()
def run(
    frames: Annotated[int | None, typer.Option(min=10, help="Frames the cameras send.")] = None,
    rate: Annotated[float | None, typer.Option(min=0.5, help="Frames per second.")] = None,
    labelers: Annotated[int | None, typer.Option(min=1, max=20)] = None,
    minutes: Annotated[
        float | None,
        typer.Option(min=1.0, help="Stream length: sets --frames to rate * 60 * minutes."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of training and of the labelers.")] = 0,
    error_rate: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    ambiguous_share: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    every_labels: Annotated[int | None, typer.Option(min=5, help="Retrain every N labels.")] = None,
    small: Annotated[bool, typer.Option(help="A few hundred frames, two quick rounds.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Default: d<UTC timestamp>.")] = None,
    port: Annotated[int, typer.Option(help="labeling-api's port; the others follow.")] = 8000,
    state_dir: StateDirOpt = None,
    live: Annotated[bool | None, typer.Option(help="Live table (default: on a terminal).")] = None,
) -> None:
    """Bootstrap, stream, label, retrain, promote; judge against a random control; report."""
    from hone_demo.run import ensure_stack
    from hone_demo.run import run as run_demo

    base = DemoConfig.small() if small else DemoConfig()
    overrides: dict[str, Any] = {"seed": seed, "http_port": port, "run_id": run_id or new_run_id()}
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    for name, value in [
        ("frames", frames),
        ("rate", rate),
        ("labelers", labelers),
        ("error_rate", error_rate),
        ("ambiguous_share", ambiguous_share),
        ("every_labels", every_labels),
    ]:
        if value is not None:
            overrides[name] = value
    config = replace(base, **overrides)
    if minutes is not None:
        config = replace(config, frames=max(10, int(config.rate * 60 * minutes)))
    ensure_stack(console)
    console.print(
        f"run {config.run_id}: {config.frames} frames at {config.rate}/s, "
        f"{config.labelers} labelers -> {config.run_dir}"
    )
    try:
        summary = asyncio.run(
            run_demo(config, console, show=sys.stdout.isatty() if live is None else live)
        )
    except services.ServiceError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from error
    _epilogue(config, summary)


def _epilogue(config: DemoConfig, summary: dict[str, Any]) -> None:
    final = summary.get("final") or {}
    labeling = f"http://127.0.0.1:{config.http_port}/label"
    key_file = config.run_dir / "keys.json"
    keys = json.loads(key_file.read_text()) if key_file.exists() else {}
    console.print(
        f"\n[bold]Done.[/bold] {final.get('labels', 0)} labels: Hone "
        f"{final.get('hone_accuracy', 0) * 100:.1f}% vs random control "
        f"{final.get('control_accuracy', 0) * 100:.1f}% held-out accuracy "
        f"(bootstrap {final.get('bootstrap_accuracy', 0) * 100:.1f}%)."
        f"\nReport: {config.run_dir / 'index.html'}"
        f"\n\nThe services keep running. Label a few images yourself: open {labeling}"
        f"\n  with the labeler key {keys.get('you', '(see keys.json)')}"
        "\nStop the services: .venv/bin/python -m hone_demo stop"
        "\nStop the local stack too: make down"
    )


@app.command()
def stop(
    state_dir: StateDirOpt = None,
    forget: Annotated[
        list[str] | None,
        typer.Option(
            help="Also remove run RUN_ID's model (demo_RUN_ID) from TorchServe; repeatable."
        ),
    ] = None,
) -> None:
    """Stop the services a demo started (pid files under .local-stack/services/)."""
    config = DemoConfig(run_id="stop")
    stopped = services.stop(replace(config, state_dir=state_dir) if state_dir else config)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    for run_id in forget or []:
        model = DemoConfig(run_id=run_id).model_name
        try:
            removed = asyncio.run(_forget(model, services.base_env(config)))
        except Exception as error:  # an unknown model or TorchServe down: say so, go on
            console.print(f"[red]{model}: not unregistered:[/red] {error}")
            continue
        console.print(f"{model}: unregistered {', '.join(removed) or 'nothing'}")


async def _forget(model: str, env: dict[str, str]) -> list[str]:
    from hone_common.settings import ServiceSettings
    from hone_common.torchserve import TorchServeClient

    # TorchServe's address and keys come from the local stack's env file, like the services'.
    os.environ.update(env)
    client = TorchServeClient(ServiceSettings().torchserve)
    try:
        return await services.unregister_model(client, model)
    finally:
        await client.aclose()


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False)]) -> None:
    """Redo the plots and the HTML page of a run from its summary.json."""
    from hone_demo.report import render

    summary = json.loads((run_dir / "summary.json").read_text())
    for path in render(summary, run_dir):
        console.print(str(path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
