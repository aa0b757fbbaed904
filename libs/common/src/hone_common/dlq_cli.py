"""`hone-dlq`: inspect dead-letter topics and replay their messages to the topic they came from.

    hone-dlq list image.received.dlq [--limit 50] [--json]
    hone-dlq show image.received.dlq --offset 2:17
    hone-dlq replay image.received.dlq (--offset 2:17 ... | --all) [--dry-run]

A dead-letter topic has several partitions, so a message is named by `partition:offset` (the
`position` column of `list`). Replay republishes the original key, bytes and headers to the
original topic, adding `hone-replay-of: <dlq>:<partition>:<offset>`; consumers are idempotent
(DESIGN.md §2), so replaying a message twice has one effect. A letter whose original bytes were
cut (larger than 2 MiB) or that names another topic than its DLQ's is never replayed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from hone_common.kafka import DeadLetter, TopicMissing, read_to_end
from hone_common.settings import ServiceSettings

REPLAY_HEADER = "hone-replay-of"
DLQ_SUFFIX = ".dlq"

app = typer.Typer(
    help="Inspect dead-letter topics (<topic>.dlq) and replay their messages.",
    no_args_is_help=True,
)


class DlqError(Exception):
    """A request the CLI refuses: printed without a traceback, exit status 1."""


@dataclass(frozen=True)
class Stored:
    """One record of a dead-letter topic, read back as a `DeadLetter` if it is one."""

    partition: int
    offset: int
    timestamp_ms: int
    size: int
    letter: DeadLetter | None
    problem: str | None = None
    """Why the record is not a readable dead letter (then `letter` is None)."""

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Replay:
    """What replaying one dead letter publishes."""

    source: Stored
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def original_topic(dlq_topic: str) -> str:
    if not dlq_topic.endswith(DLQ_SUFFIX) or len(dlq_topic) == len(DLQ_SUFFIX):
        raise DlqError(f"{dlq_topic!r} is not a dead-letter topic (<topic>{DLQ_SUFFIX})")
    return dlq_topic[: -len(DLQ_SUFFIX)]


def parse_record(partition: int, offset: int, timestamp_ms: int, value: bytes | None) -> Stored:
    raw = value or b""
    try:
        letter = DeadLetter.model_validate_json(raw)
    except ValidationError as error:
        problem = f"not a dead letter: {error.errors()[0]['msg']}" if error.errors() else str(error)
        return Stored(partition, offset, timestamp_ms, len(raw), None, problem)
    return Stored(partition, offset, timestamp_ms, len(raw), letter)


def original_bytes(letter: DeadLetter) -> bytes:
    return base64.b64decode(letter.value, validate=True)


def decoded_key(letter: DeadLetter) -> bytes | None:
    return base64.b64decode(letter.key, validate=True) if letter.key is not None else None


def printable(data: bytes | None, limit: int = 48) -> str:
    """Text if the bytes are printable UTF-8, else `b64:<base64>`; cut to `limit` characters."""
    if data is None:
        return "-"
    try:
        text = data.decode()
        shown = text if text.isprintable() else "b64:" + base64.b64encode(data).decode()
    except UnicodeDecodeError:
        shown = "b64:" + base64.b64encode(data).decode()
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def select(stored: list[Stored], specs: list[str]) -> list[Stored]:
    """The records named by `partition:offset` specs; a bare offset must name only one."""
    by_position = {s.position: s for s in stored}
    chosen: dict[str, Stored] = {}
    for spec in specs:
        if ":" in spec:
            if spec not in by_position:
                raise DlqError(f"no message at {spec} (see `hone-dlq list`)")
            chosen[spec] = by_position[spec]
            continue
        if not spec.isdigit():
            raise DlqError(f"{spec!r} is not an offset (N or partition:N)")
        matches = [s for s in stored if s.offset == int(spec)]
        if not matches:
            raise DlqError(f"no message at offset {spec} (see `hone-dlq list`)")
        if len(matches) > 1:
            names = ", ".join(m.position for m in matches)
            raise DlqError(f"offset {spec} is ambiguous, name the partition: {names}")
        chosen[matches[0].position] = matches[0]
    return list(chosen.values())


def replay_of(stored: Stored, dlq_topic: str) -> Replay:
    """The record to republish for one dead letter, or why it must not be."""
    letter = stored.letter
    if letter is None:
        raise DlqError(f"{stored.position}: {stored.problem}")
    target = original_topic(dlq_topic)
    # The letter says where it came from; a letter naming another topic than its DLQ's is
    # either forged or misrouted, and replaying it would inject into an unrelated stream.
    if letter.topic != target:
        raise DlqError(f"{stored.position}: names topic {letter.topic!r}, not {target!r}")
    if letter.value_truncated:
        raise DlqError(f"{stored.position}: the original bytes were cut; cannot replay")
    try:
        value, key = original_bytes(letter), decoded_key(letter)
    except (binascii.Error, ValueError) as error:
        raise DlqError(f"{stored.position}: undecodable original bytes ({error})") from error
    headers = [(k, v.encode()) for k, v in letter.headers.items() if k != REPLAY_HEADER]
    headers.append((REPLAY_HEADER, f"{dlq_topic}:{stored.position}".encode()))
    return Replay(stored, target, key, value, headers)


def summary(stored: Stored) -> dict[str, Any]:
    letter = stored.letter
    when = (
        letter.failed_at
        if letter is not None
        else datetime.fromtimestamp(stored.timestamp_ms / 1000, UTC)
    )
    row: dict[str, Any] = {
        "position": stored.position,
        "time": when.astimezone(UTC).isoformat(timespec="seconds"),
    }
    if letter is None:
        return row | {"error_type": "-", "error": stored.problem, "key": "-", "size": stored.size}
    try:
        size: int | str = len(original_bytes(letter))
    except (binascii.Error, ValueError):
        size = "?"
    return row | {
        "error_type": letter.error_type,
        "error": letter.error,
        "key": printable(decoded_key(letter)),
        "size": f"{size}+" if letter.value_truncated else size,
        "consumer": letter.consumer,
        "source": f"{letter.topic}:{letter.partition}:{letter.offset}",
        "replay_of": letter.headers.get(REPLAY_HEADER),
    }


# --- Kafka ---------------------------------------------------------------------------------


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Stored]:
    """Every record of `topic` up to its end when called, in (partition, offset) order."""
    try:
        records = await read_to_end(bootstrap, topic, timeout_s)
    except (TopicMissing, TimeoutError) as error:
        raise DlqError(str(error)) from error
    return [parse_record(r.partition, r.offset, r.timestamp, r.value) for r in records]


async def publish(bootstrap: str, replays: list[Replay], max_bytes: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_request_size=max_bytes
    )
    await producer.start()
    try:
        for replay in replays:
            await producer.send_and_wait(
                replay.topic, replay.value, key=replay.key, headers=replay.headers
            )
    finally:
        await producer.stop()


# --- commands ------------------------------------------------------------------------------

Bootstrap = Annotated[
    str | None,
    typer.Option(help="Kafka host:port (default: HONE_KAFKA__BOOTSTRAP_SERVERS or 127.0.0.1:9092)"),
]
Positions = Annotated[
    list[str] | None,
    typer.Option("--offset", help="partition:offset of a message (repeatable); N alone if unique"),
]


def _bootstrap(option: str | None) -> str:
    return option or ServiceSettings().kafka.bootstrap_servers


def _read(topic: str, bootstrap: str | None) -> list[Stored]:
    original_topic(topic)
    return asyncio.run(read_topic(_bootstrap(bootstrap), topic))


def _fail(message: str) -> NoReturn:
    typer.echo(f"hone-dlq: {message}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_letters(
    topic: Annotated[str, typer.Argument(help="The dead-letter topic, e.g. image.received.dlq")],
    limit: Annotated[int, typer.Option(min=1, help="Show the latest N messages.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    bootstrap: Bootstrap = None,
) -> None:
    """List dead letters: position, time, error type, error, key, size of the original."""
    try:
        stored = _read(topic, bootstrap)
    except (DlqError, KafkaError) as error:
        _fail(str(error) or type(error).__name__)
    shown = sorted(stored, key=lambda s: (s.timestamp_ms, s.partition, s.offset))[-limit:]
    if as_json:
        for s in shown:
            typer.echo(json.dumps(summary(s), default=str))
        return
    typer.echo(f"{topic}: {len(stored)} message(s), showing {len(shown)}")
    typer.echo(f"{'POSITION':<10} {'TIME':<25} {'ERROR TYPE':<20} {'SIZE':>8}  {'KEY':<38} ERROR")
    for s in shown:
        row = summary(s)
        reason = " ".join(str(row["error"]).split())[:100]
        note = f" [replay of {row['replay_of']}]" if row.get("replay_of") else ""
        typer.echo(
            f"{row['position']:<10} {row['time']:<25} {row['error_type'][:20]:<20} "
            f"{row['size']!s:>8}  {row['key'][:38]:<38} {reason}{note}"
        )


@app.command()
def show(
    topic: Annotated[str, typer.Argument(help="The dead-letter topic.")],
    positions: Positions = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Show dead letters in full: where they came from, the error, headers and original bytes."""
    if not positions:
        _fail("name a message with --offset partition:offset")
    try:
        chosen = select(_read(topic, bootstrap), positions or [])
    except (DlqError, KafkaError) as error:
        _fail(str(error) or type(error).__name__)
    for s in chosen:
        detail = summary(s)
        if s.letter is not None:
            detail["headers"] = s.letter.headers
            detail["value_truncated"] = s.letter.value_truncated
            detail["failed_at"] = s.letter.failed_at.isoformat()
            detail["original"] = _original_for_display(s.letter)
        typer.echo(json.dumps(detail, indent=2, ensure_ascii=False, default=str))


def _original_for_display(letter: DeadLetter) -> Any:
    try:
        raw = original_bytes(letter)
    except (binascii.Error, ValueError):
        return {"undecodable_base64": letter.value[:200]}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"bytes": len(raw), "base64": base64.b64encode(raw[:4096]).decode()}


@app.command()
def replay(
    topic: Annotated[str, typer.Argument(help="The dead-letter topic.")],
    positions: Positions = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every message.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent.")] = False,
    bootstrap: Bootstrap = None,
) -> None:
    """Republish dead letters' original bytes to their original topic (marked as replays)."""
    if bool(positions) == all_letters:
        _fail("give either --offset partition:offset (repeatable) or --all")
    servers = _bootstrap(bootstrap)
    try:
        stored = _read(topic, servers)
        chosen = stored if all_letters else select(stored, positions or [])
        replays, refused = [], []
        for s in chosen:
            try:
                replays.append(replay_of(s, topic))
            except DlqError as error:
                if not all_letters:
                    raise
                refused.append(str(error))
        for message in refused:
            typer.echo(f"skipped {message}", err=True)
        verb = "would replay" if dry_run else "replaying"
        for r in replays:
            typer.echo(f"{verb} {r.source.position} -> {r.topic} ({len(r.value)} bytes)")
        if not dry_run and replays:
            asyncio.run(publish(servers, replays, ServiceSettings().kafka.max_message_bytes))
    except (DlqError, KafkaError) as error:
        _fail(str(error) or type(error).__name__)
    typer.echo(f"{'dry run: ' if dry_run else ''}{len(replays)} replayed, {len(refused)} skipped")
