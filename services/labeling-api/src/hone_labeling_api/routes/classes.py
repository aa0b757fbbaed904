"""The label set: read by everyone with a key, replaced by admins."""

from __future__ import annotations

from fastapi import APIRouter

from hone_labeling_api.deps import Admin, AnyRole, LabelingDep
from hone_labeling_api.routes import errors
from hone_labeling_api.schemas import ClassesIn, ClassesOut

router = APIRouter(prefix="/v1", tags=["classes"])


@router.get("/classes", response_model=ClassesOut, responses=errors())
async def get_classes(who: AnyRole, labeling: LabelingDep) -> ClassesOut:
    """The classes an answer may use, in keyboard order (1-9, then 0)."""
    return await labeling.classes()


@router.put("/classes", response_model=ClassesOut, responses=errors())
async def put_classes(body: ClassesIn, who: Admin, labeling: LabelingDep) -> ClassesOut:
    """Replace the label set (admins)."""
    return await labeling.replace_classes(who, body)
