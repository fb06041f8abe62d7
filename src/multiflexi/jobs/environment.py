"""A job's environment: gathered from the database layers, assembled, expanded, stored.

Assembly order (later wins): host basics -> app defaults -> run template configuration
-> credentials -> company environment -> injected ``MULTIFLEXI_*`` -> one-off overrides;
then ``{VAR}`` macros, once. Secret values are stored sealed, never in clear text.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiflexi import __version__
from multiflexi.env.layers import Env, EnvVar, assemble
from multiflexi.secrets import REDACTED, Vault

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


def point_result_file_into(env: Env, workdir: Path) -> Env:
    """A relative ``RESULT_FILE`` means a file in the job's own directory."""
    var = env.get("RESULT_FILE")
    if var is None or not var.value or os.path.isabs(var.value):
        return env
    return env.with_values({"RESULT_FILE": str(workdir / var.value)})


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
    them per application); ``empty``: layers known to have no rows (``config``,
    ``credentials``, ``company``), which are then not read."""
    from multiflexi.companies.service import company_env_layer
    from multiflexi.runtemplates.service import app_default_layer, config_layer

    layers: list[list[EnvVar]] = [host_layer(), app_default_layer(session, app, fields=fields)]
    if rt is not None:
        from multiflexi.credentials.service import credential_layer

        if "config" not in empty:
            layers.append(config_layer(session, rt, vault, fields=fields))
        if "credentials" not in empty:
            layers.append(credential_layer(session, rt.id, vault))
    if "company" not in empty:
        layers.append(company_env_layer(session, company))
    layers.append(injected_layer(job=job, app=app, company=company, rt=rt, workdir=workdir))
    layers.append(override_layer(overrides))
    return layers


def build_env(
    layers: Iterable[Iterable[EnvVar]], *, secret_names: Iterable[str], workdir: Path
) -> Env:
    """Assemble, mark declared secrets, expand macros once, and place RESULT_FILE."""
    from multiflexi.env.macros import expand_env

    secret = set(secret_names)
    env = assemble(
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
    return point_result_file_into(expand_env(env), workdir)


# -- storage --------------------------------------------------------------------------


def dump_env(env: Env, vault: Vault) -> list[dict[str, Any]]:
    """The JSON stored in ``job.env``: secrets sealed."""
    return [
        {
            "name": v.name,
            "value": vault.seal(v.value) if v.secret and v.value else v.value,
            "source": v.source,
            "secret": v.secret,
        }
        for v in env.values()
    ]


def load_env(stored: Iterable[Mapping[str, Any]], vault: Vault | None) -> Env:
    """Back from ``job.env``; without a vault, secret values come back redacted."""
    out = []
    for item in stored:
        value = str(item.get("value") or "")
        if item.get("secret") and value:
            value = vault.open(value) if vault is not None else REDACTED
        out.append(
            EnvVar(str(item["name"]), value, str(item.get("source", "")), bool(item.get("secret")))
        )
    return Env(out)


def seal_overrides(
    overrides: Mapping[str, str], secret_names: Iterable[str], vault: Vault
) -> dict[str, str]:
    secret = set(secret_names)
    return {k: vault.seal(v) if k in secret and v else v for k, v in overrides.items()}


def open_overrides(stored: Mapping[str, str], vault: Vault) -> dict[str, str]:
    return {k: vault.open(v) for k, v in stored.items()}
