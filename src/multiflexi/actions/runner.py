"""Running the actions of a finished job, each isolated, each with a deadline.

:class:`ActionHook` receives the runner's ``finished`` event, which comes after the
job's final status and artifacts are committed. :func:`run_actions` picks the mode
(``success`` only for a successful job; failed, lost and cancelled jobs are ``fail``),
then runs that mode's actions one after another, in their order. Each runs in its own
worker thread; we wait for it until its timeout (plus a short grace, so that an action
honouring its own deadline reports its own words) and then stop waiting: the action is
recorded as timed out and the next one starts. An action that fails, hangs or raises
never changes the job, never stops the others, and never reaches the executor.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, exists, select

from multiflexi.actions.base import Action, ActionContext, ActionError
from multiflexi.actions.payload import load_job_info, scrub
from multiflexi.monitoring import counters
from multiflexi.storage.models import ActionConfig, Job, JobAction, table_of

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.jobs.hooks import JobEvent
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.actions")

#: Extra seconds we wait beyond an action's timeout before abandoning it.
GRACE = 1.0
MAX_MESSAGE = 4000


@dataclass(frozen=True)
class Outcome:
    """What one action did; stored in ``job_action``."""

    mode: str
    action: str
    ok: bool
    message: str
    duration: float


class ActionHook:
    """The job hook that runs actions when a job finishes."""

    def job_finished(self, event: JobEvent) -> None:
        if event.data.get("has_actions") is False:
            return  # the runner saw no actions on the template when the job started
        run_actions(event.db, event.settings, event.job_id)


def hook_factory(settings: Settings) -> ActionHook:
    """Built-in hook factory (see ``multiflexi.jobs.hooks.BUILTIN``)."""
    return ActionHook()


_JOB, _ACTIONS = table_of(Job), table_of(ActionConfig)
_HAS_ACTIONS = select(exists().where(_ACTIONS.c.runtemplate_id == _JOB.c.runtemplate_id)).where(
    _JOB.c.id == bindparam("b_job")
)


def run_actions(db: Database, settings: Settings, job_id: int) -> list[Outcome]:
    """Run the actions of a finished job once; returns their outcomes.

    Safe to call twice (say, by a daemon that found a lost job): a job whose actions
    already have recorded outcomes is left alone.
    """
    from multiflexi.actions.config import configured, global_defaults, resolve
    from multiflexi.actions.registry import get_action
    from multiflexi.jobs.lifecycle import is_final
    from multiflexi.secrets import Vault

    with db.read() as session:  # most templates have no actions: one cheap query says so
        if not session.connection().execute(_HAS_ACTIONS, {"b_job": job_id}).scalar():
            return []
    vault = Vault.from_settings(settings, db)
    with db.read() as session:
        job = session.get(Job, job_id)
        if job is None or job.runtemplate_id is None or not is_final(job.status):
            return []
        mode = "success" if job.status == "success" else "fail"
        if session.scalar(select(exists().where(JobAction.job_id == job_id))):
            return []
        attached = configured(session, job.runtemplate_id, mode)
        if not attached:
            return []
        plans: list[tuple[str, type[Action] | None, dict[str, Any] | str]] = []
        for item in attached:
            try:
                cls = get_action(item.name)
                values = resolve(
                    cls,
                    global_defaults(cls, settings, session, vault),
                    item.opened(cls, vault),
                )
                plans.append((item.name, cls, values))
            except Exception as exc:  # bad stored configuration: record it, go on
                plans.append((item.name, None, _one_line(exc)))
    info, secrets, stored_env = load_job_info(db, job_id, vault)
    outcomes = []
    for name, plan_cls, plan in plans:
        if plan_cls is None or isinstance(plan, str):
            outcome = Outcome(mode, name, False, f"not run: {plan}", 0.0)
        else:
            own = {
                secret for o in plan_cls.all_options() for secret in o.secrets_in(plan.get(o.name))
            }
            timeout = float(plan.get("timeout") or settings.action_timeout)
            ctx = ActionContext(
                job=info,
                mode=mode,
                options=plan,
                db=db,
                settings=settings,
                vault=vault,
                secrets=secrets | own,
                stored_env=stored_env,
                timeout=timeout,
            )
            outcome = run_one(plan_cls, ctx)
        _record(db, job_id, outcome)
        counters.inc("multiflexi_actions", outcome.action, "ok" if outcome.ok else "failed")
        if not outcome.ok:
            counters.inc("multiflexi_actions_failed")
        log.info(
            "action=job_action job_id=%s name=%s ok=%s duration=%.3f",
            job_id,
            outcome.action,
            outcome.ok,
            outcome.duration,
        )
        outcomes.append(outcome)
    return outcomes


def run_one(cls: type[Action], ctx: ActionContext) -> Outcome:
    """Run one action in a worker thread; give up waiting after its timeout."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["message"] = cls().perform(ctx)
            result["ok"] = True
        except ActionError as exc:
            result["message"], result["ok"] = str(exc), False
        except BaseException as exc:  # an action's bug is its outcome, not ours
            result["message"], result["ok"] = f"error: {_one_line(exc)}", False

    started = time.monotonic()
    worker = threading.Thread(target=work, name=f"action-{cls.name}-{ctx.job.job_id}", daemon=True)
    worker.start()
    worker.join(ctx.timeout + GRACE)
    duration = time.monotonic() - started
    if worker.is_alive():
        # The thread cannot be killed; it is a daemon, abandoned, and its result ignored.
        log.warning("action=action_timeout job_id=%s name=%s", ctx.job.job_id, cls.name)
        return Outcome(ctx.mode, cls.name, False, f"timed out after {ctx.timeout:g} s", duration)
    message = scrub(str(result.get("message") or ""), ctx.secrets)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return Outcome(ctx.mode, cls.name, bool(result.get("ok")), message, duration)


def _record(db: Database, job_id: int, outcome: Outcome) -> None:
    from sqlalchemy.orm import Session

    def write(session: Session) -> None:
        session.add(
            JobAction(
                job_id=job_id,
                mode=outcome.mode,
                action=outcome.action,
                ok=outcome.ok,
                message=outcome.message,
                duration=outcome.duration,
            )
        )

    try:
        db.run(write)
    except Exception as exc:  # the job may have been deleted meanwhile
        log.warning("action=record_action_failed job_id=%s error=%s", job_id, exc)


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
