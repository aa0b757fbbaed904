"""The ingest path with an in-memory catalog and object store: what is stored, announced,
de-duplicated and refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY

from hone_common.events import image_id_for
from hone_ingest.handlers import frame_submission
from hone_ingest.intake import Accepted, Submission
from hone_ingest.validation import ImageMetadata, Refused
from tests.unit.ingest import corpus
from tests.unit.ingest.fakes import BUCKET, FakeCatalog, frame_event, make_ingestor


def upload(data: bytes, camera_id: str = "app-1", **extra: str | float) -> Submission:
    metadata = ImageMetadata(
        camera_id=camera_id, captured_at=datetime(2026, 3, 1, tzinfo=UTC), extra=extra
    )
    return Submission(source="http", metadata=metadata, data=data)


async def test_a_new_image_is_stored_under_its_content_and_announced_once() -> None:
    ingestor, catalog, store = make_ingestor()
    data = corpus.png(30, 20)
    sha = hashlib.sha256(data).hexdigest()
    event = frame_event(data, camera_id="cam-7", object_id="sku:9", metadata={"site": "north"})
    (outcome,) = await ingestor.ingest([frame_submission(event)])

    assert outcome == Accepted(image_id=image_id_for(sha), sha256=sha, duplicate=False)
    assert await store.read(f"images/{sha[:2]}/{sha}.png") == (data, "image/png")
    (announcement,) = catalog.announced
    payload = announcement.payload
    assert payload.uri == f"s3://{BUCKET}/images/{sha[:2]}/{sha}.png"
    assert (payload.image_id, payload.sha256, payload.format) == (image_id_for(sha), sha, "PNG")
    assert (payload.width, payload.height, payload.camera_id) == (30, 20, "cam-7")
    assert (payload.object_id, payload.metadata) == ("sku:9", {"site": "north"})
    assert announcement.correlation_id == payload.image_id
    assert 0.0 < payload.quality.brightness < 1.0
    assert payload.quality.sharpness > 0
    assert catalog.processed == {event.event_id}
    assert catalog.images[sha].frame_id == event.event_id


async def test_the_announcement_carries_the_frames_metadata_and_utc_capture_time() -> None:
    ingestor, catalog, _ = make_ingestor()
    captured = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    metadata = ImageMetadata(
        camera_id="cam-2", captured_at=captured, object_id="o-1", extra={"site": "s", "n": 3}
    )
    await ingestor.ingest([Submission(source="http", metadata=metadata, data=corpus.jpeg())])

    payload = catalog.announced[0].payload
    assert payload.captured_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert payload.captured_at.utcoffset() == timedelta(0)
    assert (payload.object_id, payload.metadata) == ("o-1", {"site": "s", "n": 3})
    assert payload.format == "JPEG"
    assert payload.uri.endswith(".jpg")


async def test_images_up_to_the_inline_size_travel_in_their_announcement_too() -> None:
    small, large = corpus.png(8, 8), corpus.png(200, 200)
    ingestor, catalog, store = make_ingestor(inline_image_bytes=len(small))
    await ingestor.ingest([upload(small), upload(large)])

    announced = {a.payload.sha256: a.payload for a in catalog.announced}
    assert announced[hashlib.sha256(small).hexdigest()].image == small
    assert announced[hashlib.sha256(large).hexdigest()].image is None
    assert len(await store.keys()) == 2  # inline or not, every image is stored


async def test_no_image_travels_inline_when_the_inline_size_is_zero() -> None:
    ingestor, catalog, _ = make_ingestor(inline_image_bytes=0)
    await ingestor.ingest([upload(corpus.png(8, 8))])

    assert catalog.announced[0].payload.image is None


async def test_the_same_bytes_twice_in_one_batch_are_stored_once() -> None:
    ingestor, catalog, store = make_ingestor()
    data = corpus.png()
    first, second = await ingestor.ingest([upload(data, "cam-1"), upload(data, "cam-2")])

    assert (first.duplicate, second.duplicate) == (False, True)  # type: ignore[union-attr]
    assert first.image_id == second.image_id  # type: ignore[union-attr]
    assert len(await store.keys()) == 1
    assert [a.payload.camera_id for a in catalog.announced] == ["cam-1"]


async def test_bytes_stored_before_are_a_duplicate_and_neither_written_nor_announced() -> None:
    ingestor, catalog, store = make_ingestor()
    data = corpus.webp()
    (first,) = await ingestor.ingest([upload(data)])
    (key,) = await store.keys()
    await store.delete(key)  # so a second write would show
    (again,) = await ingestor.ingest([frame_submission(frame_event(data))])

    assert isinstance(again, Accepted)
    assert again.duplicate
    assert again.image_id == first.image_id  # type: ignore[union-attr]
    assert await store.keys() == []
    assert len(catalog.announced) == 1


async def test_a_redelivered_frame_has_no_second_effect() -> None:
    ingestor, catalog, store = make_ingestor()
    event = frame_event(corpus.png())
    await ingestor.ingest([frame_submission(event)])
    outcomes = await ingestor.ingest([frame_submission(event), frame_submission(event)])

    assert all(isinstance(o, Accepted) and o.duplicate for o in outcomes)
    assert len(catalog.announced) == 1
    assert catalog.processed == {event.event_id}
    assert len(await store.keys()) == 1


async def test_refused_images_get_their_reason_and_the_rest_of_the_batch_is_stored() -> None:
    ingestor, catalog, _ = make_ingestor()
    good_one, good_two = corpus.png(), corpus.jpeg()
    outcomes = await ingestor.ingest(
        [
            upload(good_one),
            upload(b""),
            upload(corpus.png(64, 64)[:200]),
            upload(corpus.encode(corpus.pixels(), "GIF")),
            upload(corpus.png_bomb(5000, 5000)),
            upload(good_two),
        ]
    )

    codes = [o.code if isinstance(o, Refused) else "accepted" for o in outcomes]
    assert codes == [
        "accepted",
        "empty",
        "corrupt",
        "unsupported_format",
        "too_many_pixels",
        "accepted",
    ]
    stored = {hashlib.sha256(d).hexdigest() for d in (good_one, good_two)}
    assert set(catalog.images) == stored


async def test_refused_frames_are_not_claimed_so_a_fixed_redelivery_is_not_skipped() -> None:
    ingestor, catalog, _ = make_ingestor()
    event = frame_event(b"\x89PNG\r\n\x1a\n broken")
    (outcome,) = await ingestor.ingest([frame_submission(event)])
    assert isinstance(outcome, Refused)
    assert catalog.processed == set()


async def test_metadata_json_cannot_store_is_refused_even_when_the_frame_contract_admits_it() -> (
    None
):
    ingestor, catalog, store = make_ingestor()
    event = frame_event(corpus.png(), metadata={"exposure": float("nan")})
    (outcome,) = await ingestor.ingest([frame_submission(event)])

    assert isinstance(outcome, Refused)
    assert outcome.code == "invalid_metadata"
    assert (catalog.announced, await store.keys()) == ([], [])


async def test_a_frame_pointing_into_the_image_bucket_is_fetched_and_stored_by_content() -> None:
    ingestor, catalog, store = make_ingestor()
    data = corpus.png()
    await store.put("uploads/cam-1/0001.png", data)
    (outcome,) = await ingestor.ingest(
        [frame_submission(frame_event(uri=f"s3://{BUCKET}/uploads/cam-1/0001.png"))]
    )

    sha = hashlib.sha256(data).hexdigest()
    assert outcome == Accepted(image_id_for(sha), sha, duplicate=False)
    assert catalog.announced[0].payload.uri == f"s3://{BUCKET}/images/{sha[:2]}/{sha}.png"


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("s3://other-bucket/images/a.png", "invalid_uri"),
        (f"s3://{BUCKET}/images/../secrets.png", "invalid_uri"),
        (f"s3://{BUCKET}/uploads/missing.png", "not_found"),
        (f"s3://{BUCKET}/uploads/huge.png", "too_large"),
    ],
)
async def test_a_frame_pointing_where_ingest_may_not_read_is_refused(uri: str, code: str) -> None:
    ingestor, catalog, store = make_ingestor()
    await store.put("uploads/huge.png", b"\x00" * (2 * 1024 * 1024))
    (outcome,) = await ingestor.ingest([frame_submission(frame_event(uri=uri))])

    assert isinstance(outcome, Refused)
    assert outcome.code == code
    assert "image has" not in outcome.message  # refused from its URI or size, not its bytes
    assert catalog.announced == []


async def test_an_image_the_database_refuses_is_refused_alone_and_the_others_are_stored() -> None:
    catalog = FakeCatalog()
    catalog.unstorable_cameras = {"cam-bad"}
    ingestor, _, _ = make_ingestor(catalog)
    events = [
        frame_event(corpus.png(), camera_id="cam-1"),
        frame_event(corpus.png(), camera_id="cam-bad"),
        frame_event(corpus.png(), camera_id="cam-3"),
    ]
    outcomes = await ingestor.ingest([frame_submission(e) for e in events])

    assert [type(o).__name__ for o in outcomes] == ["Accepted", "Refused", "Accepted"]
    assert outcomes[1].code == "unstorable"  # type: ignore[union-attr]
    assert sorted(a.payload.camera_id for a in catalog.announced) == ["cam-1", "cam-3"]
    assert catalog.processed == {events[0].event_id, events[2].event_id}


async def test_a_catalog_outage_is_raised_for_a_retry_not_turned_into_a_refusal() -> None:
    catalog = FakeCatalog()
    catalog.outage = ConnectionError("database restarting")
    ingestor, _, _ = make_ingestor(catalog)
    with pytest.raises(ConnectionError):
        await ingestor.ingest([upload(corpus.png())])


async def test_every_outcome_is_counted_by_source_and_reason() -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"source": "kafka", **labels}) or 0.0

    names = {
        "in": ("hone_ingest_images_in_total", {}),
        "bytes": ("hone_ingest_bytes_in_total", {}),
        "accepted": ("hone_ingest_accepted_total", {}),
        "duplicates": ("hone_ingest_duplicates_total", {}),
        "corrupt": ("hone_ingest_refused_total", {"reason": "corrupt"}),
        "empty": ("hone_ingest_refused_total", {"reason": "empty"}),
        "timed": ("hone_ingest_processing_seconds_count", {}),
    }
    before = {key: sample(name, **labels) for key, (name, labels) in names.items()}
    ingestor, _, _ = make_ingestor()
    data = corpus.png()
    frames = [frame_event(data), frame_event(data), frame_event(b"\x89PNG\r\n\x1a\nxx")]
    await ingestor.ingest([frame_submission(f) for f in frames])
    after = {key: sample(name, **labels) for key, (name, labels) in names.items()}

    delta = {key: after[key] - before[key] for key in names}
    assert delta == {
        "in": 3,
        "bytes": 2 * len(data) + 10,
        "accepted": 1,
        "duplicates": 1,
        "corrupt": 1,
        "empty": 0,
        "timed": 3,
    }
