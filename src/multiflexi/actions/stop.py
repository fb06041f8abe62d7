"""Stop: deactivate the run template, so that no new job of it is created or scheduled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiflexi.actions.base import Action, ActionContext, ActionError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class Stop(Action):
    name = "Stop"
    description = "Deactivate the run template (active = false); reactivate it by hand."

    def perform(self, ctx: ActionContext) -> str:
        from multiflexi.storage.models import RunTemplate

        rt_id = ctx.job.runtemplate_id
        if rt_id is None:
            raise ActionError("the job has no run template any more")

        def write(session: Session) -> bool:
            rt = session.get(RunTemplate, rt_id)
            if rt is None:
                raise ActionError(f"run template {rt_id} not found")
            was = rt.active
            rt.active = False
            return was

        was_active = ctx.db.run(write)
        if not was_active:
            return f"run template {rt_id} was already inactive"
        return f"run template {rt_id} deactivated"
