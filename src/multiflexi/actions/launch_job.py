"""LaunchJob (alias ChainRuntemplate): queue a job of another run template.

Upstream's LaunchJob does nothing and ChainRuntemplate copies the whole environment;
here the chained job gets only what is asked for: ``pass`` names variables of the
finished job to hand over (as one-off overrides, so the new job records where they came
from), and ``artifact`` names one of its artifacts, written to a file under
``<data dir>/handoff/job-<id>/`` and passed as ``MULTIFLEXI_INPUT_FILE`` (or ``as``).
A secret variable is passed only to an application that declares it secret too, so it
stays sealed at rest; otherwise it is left out and the message says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiflexi.actions.base import Action, ActionContext, ActionError, Option
from multiflexi.actions.payload import find_artifact
from multiflexi.env.names import name_problem
from multiflexi.errors import Invalid, MultiFlexiError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.storage.models import RunTemplate

HANDOFF_PREFIX = "job-"


def handoff_root(settings: Settings) -> Path:
    """Where LaunchJob leaves artifacts for chained jobs; housekeeping empties it."""
    return Path(settings.data_dir) / "handoff"


def handoff_dir(settings: Settings, job_id: int) -> Path:
    """Where artifacts handed to chained jobs are written."""
    return handoff_root(settings) / f"{HANDOFF_PREFIX}{job_id}"


class LaunchJob(Action):
    name = "LaunchJob"
    aliases = ("ChainRuntemplate",)
    description = (
        "Queue a job of another run template, optionally passing variables of this job "
        "and one of its artifacts as an input file."
    )
    options = (
        Option("runtemplate", "int", required=True, description="Id of the run template."),
        Option("pass", "list", default=[], description="Variables of this job to pass on."),
        Option("artifact", description="Filename of an artifact of this job to pass on."),
        Option(
            "as",
            default="MULTIFLEXI_INPUT_FILE",
            description="Variable that receives the artifact's path.",
        ),
    )

    @classmethod
    def check(
        cls, options: Mapping[str, Any], session: Session, rt: RunTemplate, settings: Settings
    ) -> None:
        from multiflexi.storage.models import RunTemplate as Template

        target = int(options["runtemplate"])
        if target == rt.id:
            raise Invalid("LaunchJob cannot launch its own run template; use Reschedule")
        if session.get(Template, target) is None:
            raise Invalid(f"option runtemplate of LaunchJob: run template {target} not found")
        for name in [*(options.get("pass") or []), str(options.get("as") or "")]:
            if name_problem(name) is not None:
                raise Invalid(f"LaunchJob: {name!r} is not a valid variable name")

    def perform(self, ctx: ActionContext) -> str:
        from multiflexi.jobs.environment import load_env
        from multiflexi.jobs.service import create_job, secret_names
        from multiflexi.storage.models import App, RunTemplate

        target = int(ctx.options["runtemplate"])
        with ctx.db.read() as session:
            rt = session.get(RunTemplate, target)
            app = session.get(App, rt.app_id) if rt is not None else None
            if rt is None or app is None:
                raise ActionError(f"run template {target} not found")
            target_secrets = secret_names(app)
        env = load_env(ctx.stored_env, ctx.vault)
        overrides: dict[str, str] = {}
        notes: list[str] = []
        for name in ctx.options.get("pass") or []:
            var = env.get(name)
            if var is None:
                notes.append(f"{name} not set")
            elif var.secret and name not in target_secrets:
                notes.append(f"{name} not passed (secret here, not secret there)")
            else:
                overrides[name] = var.value
        wanted = ctx.options.get("artifact")
        if wanted:
            overrides[str(ctx.options.get("as") or "MULTIFLEXI_INPUT_FILE")] = str(
                self._handoff(ctx, str(wanted))
            )
        try:
            job = create_job(
                ctx.db,
                ctx.settings,
                runtemplate_id=target,
                overrides=overrides,
                schedule_type="chained",
            )
        except MultiFlexiError as exc:
            raise ActionError(f"cannot queue run template {target}: {exc.message}") from None
        passed = f"; passed {', '.join(sorted(overrides))}" if overrides else ""
        skipped = f"; {'; '.join(notes)}" if notes else ""
        return f"queued job {job.id} of run template {target}{passed}{skipped}"

    @staticmethod
    def _handoff(ctx: ActionContext, wanted: str) -> Path:
        from multiflexi.storage import blobs

        art = find_artifact(ctx.job, wanted)
        if art is None:
            raise ActionError(f"job {ctx.job.job_id} has no artifact {wanted!r}")
        folder = handoff_dir(ctx.settings, ctx.job.job_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / Path(art.filename).name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for piece in blobs.iter_content(ctx.db, art.id):
                out.write(piece)
        return path
