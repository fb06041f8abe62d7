"""A job's environment: gathered from the database layers, assembled, expanded, stored.

Assembly order (later wins, so the most specific value wins): host basics -> global job
environment -> app defaults -> company environment -> credentials -> run template
configuration -> injected ``MULTIFLEXI_*`` -> one-off overrides; then ``{VAR}`` macros,
once. Upstream applied the company environment after the run template's configuration,
so a company variable silently replaced what a template set explicitly; here the
template wins (docs/environment.md). Each stored variable keeps its source and the values
it shadowed. Secret values are stored sealed, never in clear text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiflexi import __version__
from multiflexi.env.layers import Env, EnvVar, assemble
from multiflexi.secrets import REDACTED, Vault, is_sealed

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.storage.models import App, Company, ConfField, Job, RunTemplate

#: Variables a program needs to run at all, taken from the executor's own environment.
#: Nothing else of the daemon's environment (DB passwords...) reaches a job.
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def host_layer(environ: Mapping[str, str] | None = None) -> list[EnvVar]:
    source = os.environ if environ is None else environ
    out = [EnvVar(k, source[k], "host") for k in HOST_VARIABLES if k in source]
    if "PATH" not in source:
        out.insert(0, EnvVar("PATH", DEFAULT_PATH, "host"))
    return out


def injected_layer(
    *, job: Job, app: App, company: Company, rt: RunTemplate | None, workdir: Path
) -> list[EnvVar]:
    src = "multiflexi"
    pairs = {
        "MULTIFLEXI_JOB_ID": str(job.id),
        "MULTIFLEXI_JOB_ATTEMPT": str(job.attempt),
        "MULTIFLEXI_COMPANY_ID": str(company.id),
        "MULTIFLEXI_COMPANY_NAME": company.name,
        "MULTIFLEXI_COMPANY_CODE": company.slug,
        "MULTIFLEXI_COMPANY_SLUG": company.slug,
        "MULTIFLEXI_APPLICATION_ID": str(app.id),
        "MULTIFLEXI_APPLICATION_NAME": app.name,
        "MULTIFLEXI_APPLICATION_UUID": app.uuid or "",
        "MULTIFLEXI_APPLICATION_CODE": app.code or "",
        "MULTIFLEXI_RUNTEMPLATE_ID": str(rt.id) if rt else "",
        "MULTIFLEXI_RUNTEMPLATE_NAME": rt.name if rt else "",
        "MULTIFLEXI_EXECUTOR": job.executor,
        "MULTIFLEXI_TMP": str(workdir),
        "MULTIFLEXI_VERSION": __version__,
    }
    return [EnvVar(k, v, src) for k, v in pairs.items()]


def override_layer(overrides: Mapping[str, str]) -> list[EnvVar]:
    return [EnvVar(k, v, "override") for k, v in overrides.items()]


#: ``php://stdout``, ``s3://bucket/key``...: a stream or a URL the application opens itself.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(value: str) -> bool:
    """Whether ``value`` starts with ``scheme://``: not a path of ours."""
    return _SCHEME.match(value) is not None


def point_result_file_into(env: Env, workdir: Path) -> Env:
    """A relative ``RESULT_FILE`` means a file in the job's own directory; an absolute
    path or a ``scheme://`` value (``php://stdout``) is passed through unchanged."""
    var = env.get("RESULT_FILE")
    if var is None or not var.value or os.path.isabs(var.value) or is_url(var.value):
        return env
    return env.with_values({"RESULT_FILE": str(workdir / var.value)})


def result_path(values: Mapping[str, str]) -> str | None:
    """The file to keep as the job's result: ``RESULT_FILE`` unless empty or a URL."""
    value = values.get("RESULT_FILE")
    return value if value and not is_url(value) else None


def gather_layers(
    session: Session,
    *,
    job: Job,
    app: App,
    company: Company,
    rt: RunTemplate | None,
    vault: Vault,
    workdir: Path,
    overrides: Mapping[str, str],
    fields: Sequence[ConfField] | None = None,
    empty: Collection[str] = (),
) -> list[list[EnvVar]]:
    """Read every layer from the database, in precedence order. ``fields``: the
    application's declarations, when the caller has them already (the executor caches
    them per application); ``empty``: layers known to have no rows (``global``,
    ``config``, ``credentials``, ``company``), which are then not read."""
    layers = [host_layer(), *template_layers(session, app, company, rt, vault, fields, empty)]
    layers.append(injected_layer(job=job, app=app, company=company, rt=rt, workdir=workdir))
    layers.append(override_layer(overrides))
    return layers


def template_layers(
    session: Session,
    app: App,
    company: Company,
    rt: RunTemplate | None,
    vault: Vault,
    fields: Sequence[ConfField] | None = None,
    empty: Collection[str] = (),
) -> list[list[EnvVar]]:
    """The layers read from the database, in precedence order: global job environment,
    app defaults, company environment, credentials, run template configuration. What a
    job of ``rt`` gets before the host basics below and the injected variables and
    overrides above; ``runtemplate:show`` shows it."""
    from multiflexi.companies.service import company_env_layer
    from multiflexi.runtemplates.service import app_default_layer, config_layer

    layers: list[list[EnvVar]] = []
    if "global" not in empty:
        from multiflexi.jobs.globalenv import global_env_layer

        layers.append(global_env_layer(session))
    layers.append(app_default_layer(session, app, fields=fields))
    if "company" not in empty:
        layers.append(company_env_layer(session, company))
    if rt is not None:
        from multiflexi.credentials.service import credential_layer

        if "credentials" not in empty:
            layers.append(credential_layer(session, rt.id, vault))
        if "config" not in empty:
            layers.append(config_layer(session, rt, vault, fields=fields))
    return layers


def assemble_marked(layers: Iterable[Iterable[EnvVar]], secret_names: Iterable[str]) -> Env:
    """Assemble, with the variables the application declares secret marked secret in
    every layer (a company or the global environment may set them too)."""
    secret = set(secret_names)
    return assemble(
        [
            [
                v
                if v.name not in secret or v.secret
                else EnvVar(v.name, v.value, v.source, True, v.description)
                for v in layer
            ]
            for layer in layers
        ]
    )


def build_env(
    layers: Iterable[Iterable[EnvVar]], *, secret_names: Iterable[str], workdir: Path
) -> Env:
    """Assemble, mark declared secrets, expand macros once, and place RESULT_FILE."""
    from multiflexi.env.macros import expand_env

    env = assemble_marked(layers, secret_names)
    return point_result_file_into(expand_env(env), workdir)


class RedactingVault(Vault):
    """Opens every sealed value as :data:`REDACTED` and seals nothing: the layers of a
    display that shows no secret in clear, read without the master key."""

    def __init__(self) -> None:
        super().__init__(None)

    def open(self, sealed: str) -> str:
        return REDACTED if is_sealed(sealed) else sealed

    def seal(self, plaintext: str) -> str:
        raise TypeError("a RedactingVault seals nothing")


# -- storage --------------------------------------------------------------------------


def dump_var(v: EnvVar, vault: Vault) -> dict[str, Any]:
    """One variable as ``job.env`` stores it: secrets sealed; ``shadowed`` only when it
    replaced an earlier layer's value (a shadowed value of a secret variable is secret)."""
    item: dict[str, Any] = {
        "name": v.name,
        "value": vault.seal(v.value) if v.secret and v.value else v.value,
        "source": v.source,
        "secret": v.secret,
    }
    if v.shadowed:
        item["shadowed"] = [
            {
                "value": vault.seal(s.value) if (v.secret or s.secret) and s.value else s.value,
                "source": s.source,
                "secret": v.secret or s.secret,
            }
            for s in v.shadowed
        ]
    return item


def dump_env(env: Env, vault: Vault) -> list[dict[str, Any]]:
    """The JSON stored in ``job.env``: secrets sealed."""
    return [dump_var(v, vault) for v in env.values()]


def _opened(item: Mapping[str, Any], vault: Vault | None) -> str:
    value = str(item.get("value") or "")
    if item.get("secret") and value:
        return vault.open(value) if vault is not None else REDACTED
    return value


def load_env(stored: Iterable[Mapping[str, Any]], vault: Vault | None) -> Env:
    """Back from ``job.env``; without a vault, secret values come back redacted."""
    out = []
    for item in stored:
        shadowed = tuple(
            EnvVar(
                str(item["name"]),
                _opened(s, vault),
                str(s.get("source", "")),
                bool(s.get("secret")),
            )
            for s in item.get("shadowed") or ()
        )
        out.append(
            EnvVar(
                str(item["name"]),
                _opened(item, vault),
                str(item.get("source", "")),
                bool(item.get("secret")),
                shadowed=shadowed,
            )
        )
    return Env(out)


def seal_overrides(
    overrides: Mapping[str, str], secret_names: Iterable[str], vault: Vault
) -> dict[str, str]:
    secret = set(secret_names)
    return {k: vault.seal(v) if k in secret and v else v for k, v in overrides.items()}


def open_overrides(stored: Mapping[str, str], vault: Vault) -> dict[str, str]:
    return {k: vault.open(v) for k, v in stored.items()}
