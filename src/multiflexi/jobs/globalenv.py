"""The global job environment: variables every job gets, set once for all companies.

A proxy, a CA bundle, a locale: what every job of every company needs goes here rather
than into each company. It is the first layer after the host basics, so an
application's default, a company, a credential, a run template or a one-off override
replaces it, and ``job:show --env`` says so (source ``global``).

Stored in the database (table ``globalenv``) rather than in a file of each host, so that
every executor of a multi-host installation gives the same jobs the same environment,
and changing it is one command, not a deployment. Values of names that look secret
(``...PASSWORD``, ``...TOKEN``...) are redacted in every display, as a company's are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.env.layers import EnvVar
from multiflexi.env.names import check_name
from multiflexi.errors import Invalid, NotFound
from multiflexi.storage.models import GlobalEnv, table_of
from multiflexi.storage.types import utcnow

#: The provenance of its variables in a job's environment.
SOURCE = "global"
_TABLE = table_of(GlobalEnv)
_LAYER = select(_TABLE.c.keyword, _TABLE.c.value).order_by(_TABLE.c.keyword)


def list_global_env(session: Session) -> list[GlobalEnv]:
    return list(session.scalars(select(GlobalEnv).order_by(GlobalEnv.keyword)))


def set_global_env(session: Session, values: Mapping[str, str]) -> list[str]:
    """Set variables of the global job environment; returns the names set."""
    for key, value in values.items():
        check_name(key)
        if "\x00" in value:
            raise Invalid(f"value of {key} contains a NUL character")
    existing = {e.keyword: e for e in list_global_env(session)}
    now = utcnow()
    for key, value in values.items():
        row = existing.get(key)
        if row is None:
            session.add(GlobalEnv(keyword=key, value=value, updated=now))
        elif row.value != value:
            row.value, row.updated = value, now
    session.flush()
    return list(values)


def unset_global_env(session: Session, keys: Iterable[str]) -> list[str]:
    """Remove variables of the global job environment; a name it does not have is an error."""
    wanted = list(dict.fromkeys(keys))
    existing = {e.keyword: e for e in list_global_env(session)}
    missing = [k for k in wanted if k not in existing]
    if missing:
        raise NotFound(f"the global job environment has no variable {', '.join(missing)}")
    for key in wanted:
        session.delete(existing[key])
    session.flush()
    return wanted


def global_env_layer(session: Session) -> list[EnvVar]:
    """The global job environment as a layer, source ``global``."""
    from multiflexi.companies.service import looks_secret

    rows = session.connection().execute(_LAYER)
    return [EnvVar(k, v, SOURCE, secret=looks_secret(k)) for k, v in rows]
