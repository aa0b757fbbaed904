"""Image bytes from the object store, with a bound on reads in flight."""

from __future__ import annotations

import asyncio
from typing import Protocol

from hone_common.storage import ObjectNotFound, ObjectRef
from hone_scorer.scoring import ImageMissing


class Getter(Protocol):
    async def get(self, ref: ObjectRef) -> bytes: ...


class ObjectStoreImages:
    def __init__(self, store: Getter, *, concurrency: int) -> None:
        self._store = store
        self._slots = asyncio.Semaphore(concurrency)

    async def fetch(self, uri: str) -> bytes:
        try:
            ref = ObjectRef.parse(uri)
        except ValueError as error:
            raise ImageMissing(str(error)) from error
        async with self._slots:
            try:
                return await self._store.get(ref)
            except ObjectNotFound as error:
                raise ImageMissing(f"{uri} is not in the object store") from error
