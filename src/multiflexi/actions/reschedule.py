"""Reschedule: queue the same run template again after ``delay`` seconds.

The new job gets the finished job's one-off overrides (secret ones stay sealed) and its
executor, with schedule type ``reschedule``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from multiflexi.actions.base import Action, ActionContext, ActionError, Option
from multiflexi.errors import Invalid, MultiFlexiError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.storage.models import RunTemplate


class Reschedule(Action):
    name = "Reschedule"
    description = "Queue the same run template again after a delay."
    options = (Option("delay", "int", default=3600, description="Seconds to wait (default 3600)."),)

    @classmethod
    def check(
        cls, options: Mapping[str, Any], session: Session, rt: RunTemplate, settings: Settings
    ) -> None:
        if int(options.get("delay") or 0) < 0:
            raise Invalid("option delay of Reschedule must not be negative")

    def perform(self, ctx: ActionContext) -> str:
        from multiflexi.jobs.environment import open_overrides
        from multiflexi.jobs.service import create_job, get_job
        from multiflexi.storage.types import utcnow

        rt_id = ctx.job.runtemplate_id
        if rt_id is None:
            raise ActionError("the job has no run template any more")
        with ctx.db.read() as session:
            job = get_job(session, ctx.job.job_id)
            overrides = open_overrides(job.overrides or {}, ctx.vault)
            executor = job.executor
        delay = int(ctx.options.get("delay") or 0)
        at = utcnow() + timedelta(seconds=delay)
        try:
            new = create_job(
                ctx.db,
                ctx.settings,
                runtemplate_id=rt_id,
                overrides=overrides,
                at=at,
                schedule_type="reschedule",
                executor=executor,
            )
        except MultiFlexiError as exc:
            raise ActionError(f"cannot reschedule run template {rt_id}: {exc.message}") from None
        return f"queued job {new.id} of run template {rt_id} not before {at.isoformat()}"
