"""The evaluation manifest: the frozen test split as JSON Lines (`image_id`, `uri`, `label`,
`camera_id`), written by the trainer beside each candidate (`Candidate.evaluation_set_uri`).

A line that cannot be read is set aside and counted, never guessed at; the other lines are
used. The same image listed twice is scored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

from hone_common.events import ClassName, Identifier, S3Uri


class EvaluationItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    image_id: str
    uri: S3Uri
    label: ClassName
    camera_id: Identifier | None = None


@dataclass(frozen=True)
class Manifest:
    items: list[EvaluationItem]
    unreadable_lines: int = 0
    duplicates: int = 0
    first_error: str | None = None


def parse_manifest(data: bytes) -> Manifest:
    items: dict[str, EvaluationItem] = {}
    unreadable = duplicates = 0
    first_error: str | None = None
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = EvaluationItem.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as error:  # JSONDecodeError is a ValueError
            unreadable += 1
            first_error = first_error or f"line {number}: {str(error).splitlines()[0][:200]}"
            continue
        if item.image_id in items:
            duplicates += 1
            continue
        items[item.image_id] = item
    return Manifest(list(items.values()), unreadable, duplicates, first_error)
