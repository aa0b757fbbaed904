"""`hone-dlq`'s decisions without Kafka: reading letters, naming them, what a replay sends."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from hone_common.dlq_cli import (
    REPLAY_HEADER,
    DlqError,
    Stored,
    app,
    original_topic,
    parse_record,
    printable,
    replay_of,
    select,
    summary,
)
from hone_common.kafka import DeadLetter

DLQ = "image.received.dlq"


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "topic": "image.received",
        "partition": 1,
        "offset": 41,
        "key": base64.b64encode(b"image-7").decode(),
        "value": base64.b64encode(b'{"event_id": "x"}').decode(),
        "headers": {"content-type": "application/json"},
        "error_type": "ImageMissing",
        "error": "s3://hone-images/a.png is not in the object store",
        "consumer": "scorer",
        "failed_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return DeadLetter.model_validate(fields | changes)


def stored(partition: int = 0, offset: int = 0, **changes: object) -> Stored:
    value = letter(**changes).model_dump_json().encode()
    return parse_record(partition, offset, 1_700_000_000_000, value)


def test_a_dead_letter_topic_names_its_original_topic() -> None:
    assert original_topic("image.received.dlq") == "image.received"
    for bad in ("image.received", ".dlq", "image.received.dlq.x"):
        with pytest.raises(DlqError):
            original_topic(bad)


def test_a_record_that_is_not_a_dead_letter_is_listed_with_the_reason() -> None:
    record = parse_record(2, 9, 1_700_000_000_000, b"\xff\x00 not json")
    assert record.letter is None
    assert record.problem is not None
    assert "not a dead letter" in record.problem
    row = summary(record)
    assert row["position"] == "2:9"
    assert row["size"] == len(b"\xff\x00 not json")


def test_the_summary_shows_error_key_and_size_of_the_original_bytes() -> None:
    row = summary(stored(1, 3))
    assert row["position"] == "1:3"
    assert row["error_type"] == "ImageMissing"
    assert row["key"] == "image-7"
    assert row["size"] == len(b'{"event_id": "x"}')
    assert row["source"] == "image.received:1:41"
    assert row["time"] == "2026-01-02T03:04:05+00:00"


def test_binary_keys_are_shown_as_base64_and_long_ones_are_cut() -> None:
    assert printable(b"\x00\x01").startswith("b64:")
    assert printable(b"x" * 100, limit=10) == "x" * 9 + "…"
    assert printable(None) == "-"


def test_a_partition_and_offset_names_one_message() -> None:
    records = [stored(0, 5), stored(1, 5), stored(2, 6)]
    assert [s.position for s in select(records, ["1:5"])] == ["1:5"]
    assert [s.position for s in select(records, ["6"])] == ["2:6"]


def test_an_offset_held_by_several_partitions_is_refused_as_ambiguous() -> None:
    with pytest.raises(DlqError, match=r"ambiguous.*0:5, 1:5"):
        select([stored(0, 5), stored(1, 5)], ["5"])


@pytest.mark.parametrize("spec", ["3:5", "7", "abc", "-1"])
def test_a_position_that_names_nothing_is_refused(spec: str) -> None:
    with pytest.raises(DlqError):
        select([stored(0, 5)], [spec])


def test_a_replay_sends_the_original_key_bytes_and_headers_marked_as_a_replay() -> None:
    replay = replay_of(stored(2, 17), DLQ)
    assert replay.topic == "image.received"
    assert replay.key == b"image-7"
    assert replay.value == b'{"event_id": "x"}'
    assert ("content-type", b"application/json") in replay.headers
    assert (REPLAY_HEADER, b"image.received.dlq:2:17") in replay.headers


def test_replaying_a_replay_keeps_one_marker_naming_the_latest_letter() -> None:
    again = stored(0, 3, headers={REPLAY_HEADER: "image.received.dlq:2:17"})
    markers = [v for k, v in replay_of(again, DLQ).headers if k == REPLAY_HEADER]
    assert markers == [b"image.received.dlq:0:3"]


def test_a_letter_naming_another_topic_is_never_replayed() -> None:
    # A forged or misrouted letter must not inject messages into an unrelated stream.
    with pytest.raises(DlqError, match=r"names topic 'label\.submitted'"):
        replay_of(stored(topic="label.submitted"), DLQ)


def test_a_letter_whose_bytes_were_cut_is_never_replayed() -> None:
    with pytest.raises(DlqError, match="cut"):
        replay_of(stored(value_truncated=True), DLQ)


def test_a_letter_with_undecodable_bytes_is_refused() -> None:
    with pytest.raises(DlqError, match="undecodable"):
        replay_of(stored(value="not base64!"), DLQ)


def test_an_unreadable_record_is_never_replayed() -> None:
    with pytest.raises(DlqError, match="not a dead letter"):
        replay_of(parse_record(0, 0, 0, b"garbage"), DLQ)


def test_the_cli_refuses_a_topic_that_is_not_a_dead_letter_topic() -> None:
    result = CliRunner().invoke(app, ["list", "image.received"])
    assert result.exit_code == 1
    assert "not a dead-letter topic" in result.output


def test_replay_needs_either_offsets_or_all_but_not_both() -> None:
    runner = CliRunner()
    neither = runner.invoke(app, ["replay", DLQ])
    both = runner.invoke(app, ["replay", DLQ, "--all", "--offset", "0:1"])
    assert neither.exit_code == both.exit_code == 1
    assert "either --offset" in neither.output
