"""Reading the evaluation manifest: bad lines are set aside and counted, never guessed at."""

from __future__ import annotations

import json

from hone_gatekeeper.manifest import parse_manifest


def line(image_id: str, label: str = "Bag", camera: str | None = "cam-1") -> bytes:
    row = {"image_id": image_id, "uri": f"s3://hone-images/x/{image_id}.png", "label": label}
    if camera is not None:
        row["camera_id"] = camera
    return json.dumps(row).encode()


def test_every_valid_line_becomes_an_item_in_order() -> None:
    manifest = parse_manifest(b"\n".join([line("a"), line("b", camera=None)]) + b"\n")
    assert [item.image_id for item in manifest.items] == ["a", "b"]
    assert manifest.items[1].camera_id is None
    assert manifest.unreadable_lines == 0


def test_unreadable_lines_are_counted_and_the_rest_is_used() -> None:
    data = b"\n".join(
        [
            line("a"),
            b"{not json",
            b'{"image_id": "c", "uri": "http://elsewhere/c.png", "label": "Bag"}',
            b'{"image_id": "d", "uri": "s3://hone-images/d.png"}',
            b"[1, 2]",
            b"\xff\xfe",
            line("e"),
        ]
    )
    manifest = parse_manifest(data)
    assert [item.image_id for item in manifest.items] == ["a", "e"]
    assert manifest.unreadable_lines == 5
    assert manifest.first_error is not None
    assert manifest.first_error.startswith("line 2:")


def test_an_image_listed_twice_is_scored_once() -> None:
    manifest = parse_manifest(b"\n".join([line("a"), line("a", label="Coat")]))
    assert [(i.image_id, i.label) for i in manifest.items] == [("a", "Bag")]
    assert manifest.duplicates == 1


def test_an_empty_manifest_has_no_items() -> None:
    manifest = parse_manifest(b"")
    assert manifest.items == []
    assert manifest.unreadable_lines == 0
