"""Zabbix action: send the job's metrics file (or a JSON job summary) to a trapper item.

The item key is ``zabbix_action[<key>]``, the form the shipped template expects (upstream
sent ``zabbix_action-[...]`` with the placeholder unexpanded). ``key`` defaults to
``<company slug>-<app code>-<runtemplate id>-data``. The host is option ``host``, else
the company's ``zabbix_host``, else ``ZABBIX_HOST``, else this machine's name. The value
is the artifact named by ``metricsfile`` (a result file the job produced) or, without
it, :func:`multiflexi.actions.payload.job_document`; either way scrubbed of secrets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multiflexi.actions.base import Action, ActionContext, ActionError, Option
from multiflexi.actions.payload import JobInfo, job_document, scrub_data
from multiflexi.errors import Invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.storage.models import RunTemplate

#: Zabbix text items hold up to 64 KB; larger values would be refused by the server.
MAX_VALUE = 65535
#: Characters an unquoted item key parameter may not contain.
_BAD_KEY = re.compile(r'[\[\],"\s]')


def default_key(info: JobInfo) -> str:
    return f"{info.item_code}-data"


def item_key(key: str) -> str:
    return f"zabbix_action[{key}]"


class ZabbixAction(Action):
    name = "Zabbix"
    description = (
        "Send the job's metrics file (option metricsfile) or a JSON job summary to the "
        "Zabbix trapper item zabbix_action[<key>] (needs ZABBIX_SERVER)."
    )
    options = (
        Option(
            "key",
            description="Item key parameter; default <company slug>-<app code>-<template id>-data.",
        ),
        Option(
            "metricsfile",
            description="Artifact (filename or relative path) whose content is the value.",
        ),
        Option("host", description="Zabbix host; default company zabbix_host or ZABBIX_HOST."),
    )

    @classmethod
    def check(
        cls, options: Mapping[str, Any], session: Session, rt: RunTemplate, settings: Settings
    ) -> None:
        key = options.get("key")
        if key and _BAD_KEY.search(str(key)):
            raise Invalid(
                f"option key of Zabbix must not contain spaces, commas, quotes or brackets: {key!r}"
            )

    def perform(self, ctx: ActionContext) -> str:
        from multiflexi.monitoring.zabbix import send, zabbix_target

        target = zabbix_target(ctx.settings)
        if target is None:
            raise ActionError("ZABBIX_SERVER is not configured")
        key = item_key(str(ctx.options.get("key") or default_key(ctx.job)))
        wanted = ctx.options.get("metricsfile")
        if wanted:
            content = ctx.read_artifact(str(wanted), MAX_VALUE + 1)
            if content is None:
                raise ActionError(f"metrics file {wanted!r} is not among the job's artifacts")
            if len(content) > MAX_VALUE:
                raise ActionError(f"metrics file {wanted!r} is larger than {MAX_VALUE} bytes")
            value = ctx.scrub(content.decode("utf-8", "replace"))
            what = f"metrics file {wanted}"
        else:
            value = json.dumps(scrub_data(job_document(ctx.job), ctx.secrets), ensure_ascii=False)
            what = "job summary"
        host = str(ctx.options.get("host") or target.host_for(ctx.job.zabbix_host))
        result = send(target, [(host, key, value)])
        if not result.ok:
            raise ActionError(
                f"{what} not sent to {key} on {host}: {result.message}", permanent=False
            )
        return f"{what} sent to {key} on {host}: {result.message}"
