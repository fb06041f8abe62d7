"""The stored environment and command line of many jobs that differ only in who they are.

Jobs of one application, company and executor whose run templates have no configuration
or credentials of their own are built from the same layers: their environments differ
only in the variables that name the job and its run template (id, name, directory), and
in whatever refers to those through a ``{VAR}`` macro. Assembling, expanding and
rendering the whole environment for each of 10,000 such jobs is most of what creating
them costs, so :class:`JobEnvShape` builds the first job of a shape exactly as
``jobs.service.create_job`` does, works out which variables depend on the job, and for
every further job recomputes only those, with the same functions. The environment comes
out serialized (:class:`~multiflexi.scheduling.rows.JSONText`), from the first job's
variables serialized once.

The shortcut relies on :data:`JOB_VARIABLES` being all that
:func:`~multiflexi.jobs.environment.injected_layer` takes from the job and its template.
Each shape checks that against the real function first; if it does not hold, every job
of the shape is built the long way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from multiflexi.env.layers import Env, EnvVar, assemble
from multiflexi.env.macros import MACRO, expand
from multiflexi.jobs import environment
from multiflexi.scheduling.rows import JSONText

if TYPE_CHECKING:
    from collections.abc import Sequence

    from multiflexi.secrets import Vault
    from multiflexi.storage.models import App, Company, Job, RunTemplate

#: The injected variables that name the job and its run template.
JOB_VARIABLES = frozenset(
    {
        "MULTIFLEXI_JOB_ID",
        "MULTIFLEXI_RUNTEMPLATE_ID",
        "MULTIFLEXI_RUNTEMPLATE_NAME",
        "MULTIFLEXI_TMP",
    }
)
#: Rewritten per job by ``environment.point_result_file_into`` when relative.
_RESULT_FILE = "RESULT_FILE"


class Named(Protocol):
    """What a job's environment reads of its run template."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


class Identity(NamedTuple):
    """What tells one job of a shape from another (a tuple: one is made per job)."""

    job_id: int
    rt: Named
    workdir: str

    def values(self) -> dict[str, str]:
        """The values of :data:`JOB_VARIABLES` for this job."""
        return {
            "MULTIFLEXI_JOB_ID": str(self.job_id),
            "MULTIFLEXI_RUNTEMPLATE_ID": str(self.rt.id),
            "MULTIFLEXI_RUNTEMPLATE_NAME": self.rt.name,
            "MULTIFLEXI_TMP": self.workdir,
        }


class Rendered(NamedTuple):
    """The columns of a job row that hold its environment and command line. ``argv`` may
    be shared by the jobs of a shape: it is not to be changed."""

    env: JSONText
    argv: list[str]
    command: str


@dataclass
class _JobView:
    """The attributes of a job the injected environment layer reads, without the cost of
    an ORM object per job."""

    id: int
    attempt: int
    executor: str


@dataclass(frozen=True)
class _Probe:
    id: int
    name: str


@dataclass(frozen=True)
class _Template:
    """What the first job of a shape left for the others."""

    #: Assembled values before macros are expanded, and the final ones.
    raw: dict[str, str]
    final: dict[str, str]
    #: (name, source, secret) of each stored variable, in order.
    order: list[tuple[str, str, bool]]
    #: The first job's stored variables, each serialized; those at the positions in
    #: ``redo`` are rebuilt for every job.
    pieces: list[str]
    #: (position, name, secret, text before the value, text after, the variable) of the
    #: variables that depend on the job, or are secret (sealed again for each job, with a
    #: fresh nonce, as ``create_job`` does). The variable is given when it shadowed a
    #: secret value, which is sealed again too: the whole item is then dumped anew.
    redo: list[tuple[int, str, bool, str, str, EnvVar | None]]
    depends: tuple[str, ...]
    #: The first job's argv and command, when they do not depend on the job.
    argv: list[str] | None
    command: str


class JobEnvShape:
    """Builds the stored environment and command of the jobs of one set of layers."""

    def __init__(
        self,
        *,
        layers: Sequence[list[EnvVar]],
        app: App,
        company: Company,
        executor: str,
        secrets: set[str],
        vault: Vault,
    ) -> None:
        #: host, global environment, app defaults, company environment, credentials,
        #: configuration (``environment.template_layers`` after the host's).
        self.layers = list(layers)
        self.app, self.company, self.executor = app, company, executor
        self.secrets, self.vault = secrets, vault
        #: The columns of a job row that come with the shape.
        self.columns: dict[str, Any] = {
            "app_id": app.id,
            "company_id": company.id,
            "executor": executor,
            "app_version": app.version or "",
        }
        self._template: _Template | None = None
        self._exact_only = False

    def render(self, who: Identity) -> Rendered:
        if self._exact_only:
            return self._exact(who)[0]
        if self._template is None:
            rendered, env, stored = self._exact(who)
            self._template = self._learn(who, env, stored, rendered)
            if self._template is None:
                self._exact_only = True
            return rendered
        return self._derive(self._template, who)

    # -- the long way: what create_job does ------------------------------------------

    def _all_layers(self, who: Identity) -> list[list[EnvVar]]:
        """The layers in the order of ``environment.gather_layers``."""
        job = cast("Job", _JobView(who.job_id, 1, self.executor))
        injected = environment.injected_layer(
            job=job,
            app=self.app,
            company=self.company,
            rt=cast("RunTemplate", who.rt),
            workdir=Path(who.workdir),
        )
        return [*self.layers, injected, environment.override_layer({})]

    def _exact(self, who: Identity) -> tuple[Rendered, Env, list[dict[str, Any]]]:
        env = environment.build_env(
            self._all_layers(who), secret_names=self.secrets, workdir=Path(who.workdir)
        )
        stored = environment.dump_env(env, self.vault)
        return self._finish(who, env, JSONText(json.dumps(stored))), env, stored

    def _finish(self, who: Identity, env: Env, stored: JSONText) -> Rendered:
        from multiflexi.jobs.service import command_of

        return Rendered(stored, *command_of(self.app, env))

    # -- the shortcut ----------------------------------------------------------------

    def _injected_is_as_assumed(self, who: Identity) -> bool:
        """Whether the injected layer takes nothing but :data:`JOB_VARIABLES` from the job
        and its template: compared for this job and a made-up other one."""
        other = Identity(who.job_id + 1, _Probe(who.rt.id + 1, who.rt.name + "~"), "/other")
        first, second = (self._all_layers(w)[-2] for w in (who, other))
        if [v.name for v in first] != [v.name for v in second]:
            return False
        for a, b in zip(first, second, strict=True):
            if a.name in JOB_VARIABLES:
                if (a.value, b.value) != (who.values()[a.name], other.values()[a.name]):
                    return False
            elif a != b:
                return False
        return True

    def _learn(
        self, who: Identity, env: Env, stored: list[dict[str, Any]], rendered: Rendered
    ) -> _Template | None:
        """What later jobs can copy from this one; None if the shortcut's assumptions do
        not hold for this shape."""
        if not self._injected_is_as_assumed(who):
            return None
        raw = assemble(self._all_layers(who)).as_dict()
        depends = set(JOB_VARIABLES)
        for name, value in raw.items():
            if "{" in value and not JOB_VARIABLES.isdisjoint(MACRO.findall(value)):
                depends.add(name)
        if _RESULT_FILE in raw:
            depends.add(_RESULT_FILE)
        order = [(v.name, v.source, v.secret) for v in env.values()]
        redo = [
            (i, name, secret, *_around_value(stored[i]), _if_shadows_a_secret(env[name]))
            for i, (name, _source, secret) in enumerate(order)
            if name in depends or (secret and env[name].value) or _if_shadows_a_secret(env[name])
        ]
        pieces = [json.dumps(item) for item in stored]
        # The pieces rebuilt per job must come out as dump_env writes them.
        if any(
            head + json.dumps(stored[i]["value"]) + tail != pieces[i]
            for i, _, _, head, tail, _ in redo
        ):
            return None  # pragma: no cover - dump_env changed its format
        command_fixed = depends.isdisjoint(_command_names(self.app)) and not any(
            env[name].secret for name in depends if name in env
        )
        return _Template(
            raw=raw,
            final=env.as_dict(),
            order=order,
            pieces=pieces,
            redo=redo,
            depends=tuple(name for name in raw if name in depends),
            argv=rendered.argv if command_fixed else None,
            command=rendered.command,
        )

    def _derive(self, template: _Template, who: Identity) -> Rendered:
        mine = who.values()
        final = {n: mine[n] if n in mine else template.raw[n] for n in template.depends}
        if any(["{" in value for value in final.values()]):
            raw = {**template.raw, **mine}
            # One pass against the unexpanded values, as environment.build_env expands.
            final = {name: expand(value, raw) for name, value in final.items()}
        if _RESULT_FILE in final:
            final[_RESULT_FILE] = _point_result_file(final[_RESULT_FILE], who.workdir)
        pieces = list(template.pieces)
        for position, name, secret, head, tail, var in template.redo:
            value = final[name] if name in final else template.final[name]
            if var is not None:
                pieces[position] = json.dumps(
                    environment.dump_var(replace(var, value=value), self.vault)
                )
                continue
            sealed = self.vault.seal(value) if secret and value else value
            pieces[position] = head + json.dumps(sealed) + tail
        # json.dumps of a list is its items' serializations joined by ", " in brackets.
        stored = JSONText("[" + ", ".join(pieces) + "]")
        if template.argv is not None:
            return Rendered(stored, template.argv, template.command)
        values = {**template.final, **final}
        env = Env(
            EnvVar(name, values[name], source, secret) for name, source, secret in template.order
        )
        return self._finish(who, env, stored)


def _around_value(item: dict[str, Any]) -> tuple[str, str]:
    """What surrounds the value in one variable as ``environment.dump_env`` stores it,
    serialized: a dictionary of name, value, then source, secret (and shadowed)."""
    head = '{"name": ' + json.dumps(item["name"]) + ', "value": '
    rest = {k: v for k, v in item.items() if k not in ("name", "value")}
    return head, ", " + json.dumps(rest)[1:]


def _if_shadows_a_secret(var: EnvVar) -> EnvVar | None:
    """``var`` if a value it shadowed is stored sealed (see ``environment.dump_var``)."""
    if any((var.secret or s.secret) and s.value for s in var.shadowed):
        return var
    return None


def _point_result_file(value: str, workdir: str) -> str:
    env = Env([EnvVar(_RESULT_FILE, value, "")])
    return environment.point_result_file_into(env, Path(workdir))[_RESULT_FILE].value


def _command_names(app: App) -> set[str]:
    """The variables the command line refers to, as ``env.cmdline.build_argv`` reads them:
    the executable, then each shell word of the parameters."""
    import shlex

    names = set(MACRO.findall(app.executable or ""))
    try:
        words = shlex.split(app.cmdparams or "", posix=True)
    except ValueError:
        return names  # such a template never builds an argv, whatever the values
    for word in words:
        names.update(MACRO.findall(word))
    return names


def workdir_prefix(job_dir_of_zero: Path) -> str:
    """What ``str(job_dir(settings, job_id))`` is before the id, so that a job's directory
    is ``prefix + str(job_id)`` without a Path per job: pathlib joins a plain name of
    digits as given, whatever the digits."""
    text = str(job_dir_of_zero)
    if not text.endswith("0"):  # pragma: no cover - see above
        raise ValueError(f"unexpected job directory {text!r}")
    return text[:-1]
