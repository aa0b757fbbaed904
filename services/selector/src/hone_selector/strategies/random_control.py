"""Random control: a fixed share of the stream, drawn uniformly and reproducibly.

The draw hashes the seed and the image id, so a replay or a redelivery decides the same and
the sample does not depend on any score: its labels estimate production accuracy without bias.
"""

from __future__ import annotations

import hashlib
import uuid

from hone_selector.strategies import RANDOM, StrategyScore


def random_draw(image_id: uuid.UUID, seed: str) -> float:
    """A uniform number in [0, 1) determined by (seed, image_id)."""
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_random_control(image_id: uuid.UUID, share: float, seed: str) -> bool:
    return random_draw(image_id, seed) < share


def random_reason(share: float) -> StrategyScore:
    return StrategyScore(RANDOM, 1.0, f"random control sample ({share:.1%} of the stream)")
