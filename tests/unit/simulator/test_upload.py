"""Uploads to ingest's POST /v1/images, against a fake ingest (httpx.MockTransport)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hone_simulator.data import FashionMnist
from hone_simulator.frames import SimFrame, generate_frames, read_truth
from hone_simulator.splits import Split
from hone_simulator.upload import UploadError, UploadReport, upload_form, upload_frames

URL = "http://ingest.test"


@pytest.fixture(scope="module")
def frames(dataset: FashionMnist, tiny_split: Split) -> list[SimFrame]:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return list(generate_frames(dataset, tiny_split, 12, seed=9, start=start))


class FakeIngest:
    """Answers like ingest: 201 for a new image, 200 + duplicate for one it already has."""

    def __init__(self, answer: Callable[[httpx.Request, int], httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.seen: set[bytes] = set()  # file names: the multipart boundary differs per request
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._answer is not None:
            return self._answer(request, len(self.requests))
        found = re.search(rb'filename="([^"]+)"', request.content)
        assert found is not None
        if found[1] in self.seen:
            return httpx.Response(200, json={"image_id": "x", "sha256": "y", "duplicate": True})
        self.seen.add(found[1])
        return httpx.Response(201, json={"image_id": "x", "sha256": "y", "duplicate": False})


async def _upload(
    frames: list[SimFrame], ingest: FakeIngest, **options: Any
) -> tuple[UploadReport, FakeIngest]:
    report = await upload_frames(
        frames,
        URL,
        "camera-key",
        transport=httpx.MockTransport(ingest),
        backoff=0.0,
        **options,
    )
    return report, ingest


def test_the_form_has_the_png_and_the_metadata_json(frames: list[SimFrame]) -> None:
    frame = frames[0]
    files, data = upload_form(frame)
    name, content, content_type = files["file"]
    assert content == frame.png
    assert content_type == "image/png"
    assert name.endswith(".png")
    metadata = json.loads(data["metadata"])
    payload = frame.event.payload
    assert metadata["camera_id"] == payload.camera_id
    assert datetime.fromisoformat(metadata["captured_at"]) == payload.captured_at
    assert metadata["object_id"] == payload.object_id
    assert {k: metadata[k] for k in payload.metadata} == payload.metadata
    assert set(metadata) == {"camera_id", "captured_at", "object_id", *payload.metadata}


async def test_every_frame_is_posted_as_multipart_with_the_bearer_key(
    frames: list[SimFrame], tmp_path: Path
) -> None:
    truth = tmp_path / "truth.jsonl"
    report, ingest = await _upload(frames, FakeIngest(), truth=truth, concurrency=3)
    assert report.created == len(frames)
    assert len(ingest.requests) == len(frames)
    for request in ingest.requests:
        assert request.method == "POST"
        assert request.url.path == "/v1/images"
        assert request.headers["authorization"] == "Bearer camera-key"
        assert request.headers["content-type"].startswith("multipart/form-data")
        assert b'name="file"' in request.content
        assert b'name="metadata"' in request.content
    assert set(read_truth(truth)) == {f.truth.image_id for f in frames}


async def test_duplicates_are_counted_apart_and_still_get_truth(
    frames: list[SimFrame], tmp_path: Path
) -> None:
    ingest = FakeIngest()
    await _upload(frames[:3], ingest)
    truth = tmp_path / "truth.jsonl"
    report, _ = await _upload(frames[:3], ingest, truth=truth)
    assert (report.created, report.duplicates) == (0, 3)
    assert len(read_truth(truth)) == 3


async def test_server_errors_are_retried_until_they_pass(frames: list[SimFrame]) -> None:
    def flaky(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(503 if n <= 2 else 201, json={"duplicate": False})

    report, ingest = await _upload(frames[:1], FakeIngest(flaky), retries=3)
    assert report.created == 1
    assert len(ingest.requests) == 3


async def test_a_frame_that_keeps_failing_is_counted_and_the_rest_go_on(
    frames: list[SimFrame], tmp_path: Path
) -> None:
    broken_body = frames[0].png

    def one_broken(request: httpx.Request, n: int) -> httpx.Response:
        if broken_body in request.content:
            return httpx.Response(500, text="boom")
        return httpx.Response(201, json={"duplicate": False})

    truth = tmp_path / "truth.jsonl"
    report, ingest = await _upload(frames, FakeIngest(one_broken), retries=2, truth=truth)
    assert report.failed == 1
    assert report.created == len(frames) - 1
    assert frames[0].truth.image_id not in read_truth(truth)
    assert len(ingest.requests) == len(frames) - 1 + 3


async def test_refusals_are_counted_by_error_code_and_not_retried(
    frames: list[SimFrame],
) -> None:
    def refuse(request: httpx.Request, n: int) -> httpx.Response:
        if n % 2:
            return httpx.Response(
                422, json={"error": {"code": "invalid_metadata", "message": "no"}}
            )
        return httpx.Response(413, text="too big")

    report, ingest = await _upload(frames[:4], FakeIngest(refuse), concurrency=1)
    assert dict(report.refused) == {"invalid_metadata": 2, "http_413": 2}
    assert len(ingest.requests) == 4
    assert report.errors


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_stops_the_upload(frames: list[SimFrame], status: int) -> None:
    ingest = FakeIngest(lambda request, n: httpx.Response(status, json={}))
    with pytest.raises(UploadError, match=str(status)):
        await _upload(frames, ingest, concurrency=2)
    assert len(ingest.requests) <= 2


async def test_an_unreachable_server_counts_every_frame_as_failed(
    frames: list[SimFrame],
) -> None:
    def down(request: httpx.Request, n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    report, ingest = await _upload(frames[:2], FakeIngest(down), retries=1)
    assert report.failed == 2
    assert len(ingest.requests) == 4


async def test_concurrency_must_be_positive(frames: list[SimFrame]) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await upload_frames(frames, URL, "k", concurrency=0)
