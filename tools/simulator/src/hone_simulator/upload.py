"""The other way in: simulated frames uploaded to ingest's `POST /v1/images` (DESIGN.md §6).

A few concurrent requests; server errors and dropped connections are retried with backoff,
refusals (4xx) are counted by error code, and a refused API key stops the run at once rather
than sending thousands of requests that cannot succeed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hone_simulator.frames import SimFrame, TruthWriter

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class UploadError(RuntimeError):
    """The upload cannot go on (the API key is refused)."""


@dataclass
class UploadReport:
    created: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.created + self.duplicates

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def upload_form(frame: SimFrame) -> tuple[dict[str, tuple[str, bytes, str]], dict[str, str]]:
    """The multipart `files` and `data` of one upload: the PNG and its metadata as JSON."""
    payload = frame.event.payload
    metadata: dict[str, Any] = {
        "camera_id": payload.camera_id,
        "captured_at": payload.captured_at.isoformat(),
        "object_id": payload.object_id,
        **payload.metadata,
    }
    files = {"file": (f"{payload.camera_id}-{frame.event.event_id}.png", frame.png, "image/png")}
    return files, {"metadata": json.dumps(metadata)}


async def upload_frames(
    frames: Iterable[SimFrame],
    url: str,
    api_key: str,
    *,
    concurrency: int = 4,
    retries: int = 3,
    backoff: float = 0.2,
    truth: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    request_timeout: float = 30.0,
) -> UploadReport:
    """Upload every frame; ground truth is written for images the server stored (or had)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    report = UploadReport()
    pending = iter(frames)
    started = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {api_key}"},
        transport=transport,
        timeout=request_timeout,
    ) as client:
        with TruthWriter(truth) as writer:

            async def worker() -> None:
                # Workers share one iterator; `next` never awaits, so no frame is taken twice.
                for frame in pending:
                    if await _upload_one(client, frame, report, retries, backoff):
                        writer.write([frame.truth])
                    if on_progress is not None:
                        on_progress(1)

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(concurrency):
                        group.create_task(worker())
            except* UploadError as errors:
                raise errors.exceptions[0] from None
            finally:
                report.seconds = time.perf_counter() - started
    return report


async def _upload_one(
    client: httpx.AsyncClient, frame: SimFrame, report: UploadReport, retries: int, backoff: float
) -> bool:
    files, data = upload_form(frame)
    for attempt in range(retries + 1):
        last_attempt = attempt == retries
        try:
            response = await client.post("/v1/images", files=files, data=data)
        except httpx.TransportError as error:
            if last_attempt:
                _fail(report, frame, repr(error))
                return False
        else:
            if response.status_code in (401, 403):
                raise UploadError(f"the API key was refused ({response.status_code})")
            if response.status_code in (200, 201):
                if _is_duplicate(response):
                    report.duplicates += 1
                else:
                    report.created += 1
                return True
            if response.status_code not in RETRY_STATUSES:
                report.refused[_error_code(response)] += 1
                _keep_error(report, f"{frame.event.event_id}: {response.status_code} "
                            f"{response.text[:300]}")  # fmt: skip
                return False
            if last_attempt:
                _fail(report, frame, f"{response.status_code} {response.text[:300]}")
                return False
        await asyncio.sleep(backoff * 2**attempt)
    return False  # pragma: no cover - the loop always returns on its last attempt


def _is_duplicate(response: httpx.Response) -> bool:
    try:
        return bool(response.json().get("duplicate"))
    except (ValueError, AttributeError):
        return response.status_code == 200


def _error_code(response: httpx.Response) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"
    return str(code)


def _fail(report: UploadReport, frame: SimFrame, message: str) -> None:
    report.failed += 1
    _keep_error(report, f"{frame.event.event_id}: {message}")


def _keep_error(report: UploadReport, message: str) -> None:
    if len(report.errors) < 10:
        report.errors.append(message)
