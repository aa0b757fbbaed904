"""Stored XSS: class names, reasons and predictions are untrusted text. In a real browser the
labeling page shows them verbatim and never runs or parses them as markup."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from hone_common.auth import Role
from hone_common.events import Prediction, Reason
from hone_common.storage import ObjectStore
from hone_labeling_api.routes.page import STATIC
from tests.security.conftest import Keys
from tests.security.corpus import CLASS_NAMES, MARKUP
from tests.security.labeling import LabelingProcess, labeling_process

HERE = Path(__file__).parent
NODE_CACHE = Path(
    os.environ.get("HONE_E2E_NODE_CACHE", Path.home() / ".cache" / "hone-e2e" / "node")
)
PLAYWRIGHT_CORE = NODE_CACHE / "node_modules" / "playwright-core"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool[Any], store: ObjectStore) -> AsyncIterator[LabelingProcess]:
    async with labeling_process(pool, store) as running:
        yield running


async def probe(base_url: str, key: str) -> dict[str, Any]:
    missing = [str(p) for p in (CHROMIUM, PLAYWRIGHT_CORE) if not p.exists()]
    if missing or shutil.which("node") is None:
        pytest.fail(f"missing {missing or 'node'}: run tests/e2e/labeling_page/install.sh")
    process = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "xss_probe.mjs"),
        env=os.environ
        | {
            "BASE_URL": base_url,
            "API_KEY": key,
            "PLAYWRIGHT_CORE": str(PLAYWRIGHT_CORE),
            "CHROMIUM": str(CHROMIUM),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def test_hostile_class_names_reasons_and_predictions_are_shown_as_text_only(
    api: LabelingProcess, keys: Keys
) -> None:
    admin = {"Authorization": f"Bearer {keys.by_role[Role.ADMIN]}"}
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        answer = await http.put("/v1/classes", json={"classes": CLASS_NAMES}, headers=admin)
        assert answer.status_code == 200, answer.text
    reasons = [Reason(strategy=m[:64], score=0.5, detail=m) for m in MARKUP]
    share = round(1 / len(CLASS_NAMES), 6)
    prediction = Prediction(
        label=CLASS_NAMES[1],
        confidence=share,
        classes=CLASS_NAMES,
        probabilities=[share] * len(CLASS_NAMES),
    )
    await api.queue_task(reasons, prediction)

    seen = await probe(api.base_url, keys.by_role[Role.LABELER])

    assert seen["errors"] == []
    assert seen["dialogs"] == []
    assert seen["xss"] is None, "an injected script ran"
    assert seen["inline_handlers"] == [], "markup from the API was parsed into the page"
    elements = seen["elements"]
    assert (elements["img"], elements["script"], elements["form"]) == (1, 1, 1), elements
    parsed = {tag: n for tag, n in elements.items() if tag not in ("img", "script", "form") and n}
    assert not parsed, f"elements parsed from untrusted text: {parsed}"
    assert seen["choices"] == [c.strip() for c in CLASS_NAMES]
    for markup in MARKUP:
        assert any(markup in text for text in seen["reasons"]), markup
    assert CLASS_NAMES[1] in seen["guess"]
    assert any(CLASS_NAMES[1] in text for text in seen["top_k"])


def test_the_page_script_never_writes_html() -> None:
    script = (STATIC / "label.js").read_text()
    sinks = re.findall(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"setAttribute\(\s*[\"']on|\.src\s*=\s*[^i]",
        script,
    )
    # The one `.src =` assignment is the image's object URL (a blob: URL the page made).
    assert [s for s in sinks if not s.startswith(".src")] == []


async def test_the_page_is_served_with_a_policy_that_forbids_inline_script(
    api: LabelingProcess,
) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        page = await http.get("/label")
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert directives["default-src"] == "'none'"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert directives["frame-ancestors"] == "'none'"
