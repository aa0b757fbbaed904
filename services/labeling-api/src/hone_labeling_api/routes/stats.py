"""Queue and labeler statistics: everything for admins, one's own counts for a labeler."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hone_labeling_api.deps import Admin, Labeler, LabelingDep
from hone_labeling_api.routes import errors
from hone_labeling_api.schemas import MyStats, Stats

router = APIRouter(prefix="/v1", tags=["stats"])

Window = Annotated[float, Query(gt=0, le=24 * 90, description="Window of the answer counts.")]


@router.get("/stats", response_model=Stats, responses=errors())
async def get_stats(who: Admin, labeling: LabelingDep, window_hours: Window = 24) -> Stats:
    """Queue depth, answers per labeler, class counts, agreement rates (admins)."""
    return await labeling.stats(window_hours)


@router.get("/stats/me", response_model=MyStats, responses=errors())
async def get_my_stats(who: Labeler, labeling: LabelingDep, window_hours: Window = 24) -> MyStats:
    """Your own answer counts and the queue's depth."""
    return await labeling.my_stats(who, window_hours)
