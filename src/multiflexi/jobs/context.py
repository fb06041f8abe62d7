"""What a runner reads before it starts a job: the job, its application, company and
run template in one query, and the application's declarations once per version.

The executor does this for every job, so it uses Core statements built once; the rows it
returns answer the attribute reads of the environment layers like the ORM objects do.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, exists, select

from multiflexi.jobs.lifecycle import ExitMeaning
from multiflexi.secrets import is_secret
from multiflexi.storage.models import (
    ActionConfig,
    App,
    Company,
    CompanyEnv,
    Configuration,
    GlobalEnv,
    Job,
    RunTemplate,
    RunTplCred,
    table_of,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.artifacts.service import Pattern
    from multiflexi.storage.models import ConfField
    from multiflexi.storage.pipeline import Executes

_JOB, _APP, _COMPANY, _RT = table_of(Job), table_of(App), table_of(Company), table_of(RunTemplate)

#: (prefix, table, columns): what the runner reads of each row.
_PARTS = (
    (
        "job",
        _JOB,
        ("id", "status", "worker", "app_id", "company_id", "runtemplate_id", "overrides",
         "attempt", "schedule_type", "executor", "env", "argv", "command", "workdir"),
    ),
    ("app", _APP, ("id", "name", "uuid", "code", "executable", "cmdparams", "DatUpdate")),
    ("company", _COMPANY, ("id", "name", "slug")),
    ("rt", _RT, ("id", "app_id", "name", "timeout", "mask_secrets", "keep_workdir", "active",
                 "memory_limit", "cpu_time_limit", "cpus", "max_processes", "max_open_files",
                 "output_limit")),
)  # fmt: skip

_ACTIONS, _CONFIG, _BINDINGS, _COMPANY_ENV, _GLOBAL_ENV = (
    table_of(ActionConfig),
    table_of(Configuration),
    table_of(RunTplCred),
    table_of(CompanyEnv),
    table_of(GlobalEnv),
)


#: Environment layers (as ``environment.gather_layers`` names them) and whether each has
#: rows: an empty one (no credentials bound, no company variables: most jobs) then costs
#: no query of its own.
def _layer_rows(runtemplate_id: Any, company_id: Any) -> dict[str, Any]:
    return {
        "global": select(_GLOBAL_ENV.c.id).exists(),
        "config": exists().where(_CONFIG.c.runtemplate_id == runtemplate_id),
        "credentials": exists().where(_BINDINGS.c.runtemplate_id == runtemplate_id),
        "company": exists().where(_COMPANY_ENV.c.company_id == company_id),
    }


_LAYER_ROWS = _layer_rows(_JOB.c.runtemplate_id, _JOB.c.company_id)
_LOAD = (
    select(
        *(t.c[c].label(f"{p}__{c}") for p, t, cols in _PARTS for c in cols),
        exists().where(_ACTIONS.c.runtemplate_id == _JOB.c.runtemplate_id).label("has_actions"),
        *(found.label(f"layer__{name}") for name, found in _LAYER_ROWS.items()),
    )
    .select_from(_JOB)
    .outerjoin(_APP, _APP.c.id == _JOB.c.app_id)
    .outerjoin(_COMPANY, _COMPANY.c.id == _JOB.c.company_id)
    .outerjoin(_RT, _RT.c.id == _JOB.c.runtemplate_id)
    .where(_JOB.c.id == bindparam("b_job"))
)


@dataclass(frozen=True)
class JobContext:
    """The rows one job runs from; ``app``/``company``/``rt`` are None when deleted.
    ``has_actions``: whether its template had actions when the job started (the action
    hook skips its own query when it had none); ``empty_layers``: the environment layers
    that have no rows for this job."""

    job: Any
    app: Any
    company: Any
    rt: Any
    has_actions: bool
    empty_layers: frozenset[str] = frozenset()


def load_context(session: Session, job_id: int) -> JobContext | None:
    return read_context(session.connection(), job_id)


def read_context(conn: Executes, job_id: int) -> JobContext | None:
    row = conn.execute(_LOAD, {"b_job": job_id}).first()
    if row is None:
        return None
    values = row._mapping
    parts = _parts(values, _PARTS)
    return JobContext(
        parts["job"],
        parts["app"],
        parts["company"],
        parts["rt"],
        bool(values["has_actions"]),
        frozenset(name for name in _LAYER_ROWS if not values[f"layer__{name}"]),
    )


def _parts(values: Any, spec: Any) -> dict[str, Any]:
    """The row's columns per table prefix (None for a row its outer join did not find)."""
    parts: dict[str, Any] = {}
    for prefix, _table, columns in spec:
        if values[f"{prefix}__id"] is None:
            parts[prefix] = None
            continue
        attrs = {c: values[f"{prefix}__{c}"] for c in columns}
        if prefix == "app":
            attrs["updated"] = attrs.pop("DatUpdate")
        parts[prefix] = SimpleNamespace(**attrs)
    return parts


#: What job creation reads of a run template, its application and company.
_TEMPLATE_PARTS = (
    ("rt", _RT, ("id", "name", "app_id", "company_id", "active", "executor")),
    (
        "app",
        _APP,
        ("id", "name", "uuid", "code", "executable", "cmdparams", "DatUpdate", "enabled",
         "version"),
    ),
    ("company", _COMPANY, ("id", "name", "slug", "enabled")),
)  # fmt: skip
_TEMPLATE_LOAD = (
    select(
        *(t.c[c].label(f"{p}__{c}") for p, t, cols in _TEMPLATE_PARTS for c in cols),
        *(
            found.label(f"layer__{name}")
            for name, found in _layer_rows(_RT.c.id, _RT.c.company_id).items()
        ),
    )
    .select_from(_RT)
    .outerjoin(_APP, _APP.c.id == _RT.c.app_id)
    .outerjoin(_COMPANY, _COMPANY.c.id == _RT.c.company_id)
    .where(_RT.c.id == bindparam("b_rt"))
)


def read_template_context(conn: Executes, runtemplate_id: int) -> JobContext | None:
    """A run template with its application and company (None when deleted) and which
    environment layers have rows, in one query: what creating a job of it reads.
    ``job`` is None and ``has_actions`` False: there is no job yet."""
    row = conn.execute(_TEMPLATE_LOAD, {"b_rt": runtemplate_id}).first()
    if row is None:
        return None
    values = row._mapping
    parts = _parts(values, _TEMPLATE_PARTS)
    return JobContext(
        None,
        parts["app"],
        parts["company"],
        parts["rt"],
        False,
        frozenset(name for name in _LAYER_ROWS if not values[f"layer__{name}"]),
    )


@dataclass(frozen=True)
class AppFacts:
    """An application's declarations: its variables, exit codes and artifact patterns."""

    fields: tuple[ConfField, ...]
    secret_names: frozenset[str]
    meanings: tuple[ExitMeaning, ...]
    patterns: tuple[Pattern, ...]
    #: Default resource limits of the application's definition (``"limits"``).
    limits: Mapping[str, Any] = field(default_factory=dict)


class AppFactsCache:
    """Declarations per application version. An import or update of an application sets
    its ``updated`` time, and its uuid tells a new application that reused an id."""

    LIMIT = 512

    def __init__(self) -> None:
        self._facts: dict[tuple[int, str | None, datetime | None], AppFacts] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, app: Any) -> AppFacts:
        key = (app.id, app.uuid, app.updated)
        found = self._facts.get(key)
        if found is None:
            found = read_facts(session, app.id)
            with self._lock:
                if len(self._facts) >= self.LIMIT:
                    self._facts.clear()
                self._facts[key] = found
        return found


def read_facts(session: Session, app_id: int) -> AppFacts:
    from multiflexi.artifacts.service import app_patterns
    from multiflexi.jobs.service import exit_meanings
    from multiflexi.runtemplates.limits import app_limits
    from multiflexi.runtemplates.service import app_fields

    fields = tuple(app_fields(session, app_id))
    return AppFacts(
        fields=fields,
        secret_names=frozenset(f.keyname for f in fields if is_secret(f.type, f.secret)),
        meanings=tuple(exit_meanings(session, app_id)),
        patterns=tuple(app_patterns(session, app_id)),
        limits=app_limits(session.get_one(App, app_id)),
    )
