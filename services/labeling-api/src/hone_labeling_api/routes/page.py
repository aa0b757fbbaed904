"""The labeling page: server-rendered HTML (autoescaped) and a small vanilla script."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from hone_labeling_api.settings import LabelingSettings

PACKAGE = Path(__file__).resolve().parents[1]
STATIC = PACKAGE / "static"
TEMPLATES = PACKAGE / "templates"

# Autoescaping on for every template: nothing rendered here is trusted to be HTML.
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
)


def _asset_version() -> str:
    """Changes whenever a static file does, so browsers never run a stale script."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/label", status_code=307)


@router.get("/label", response_class=HTMLResponse)
async def labeling_page(request: Request) -> HTMLResponse:
    settings: LabelingSettings = request.app.state.labeling_settings
    return templates.TemplateResponse(
        request,
        "label.html",
        {
            "asset_version": ASSET_VERSION,
            "undo_seconds": settings.undo_seconds,
            "prefetch": settings.prefetch,
        },
        headers={"Cache-Control": "no-cache"},
    )
