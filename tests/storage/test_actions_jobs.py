"""Actions that act on MultiFlexi itself (LaunchJob, Reschedule, Stop), CustomCommand,
the Zabbix action, and the isolation of actions that hang or raise."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multiflexi.actions import registry
from multiflexi.actions.base import Action, ActionContext
from multiflexi.actions.config import set_action
from multiflexi.actions.runner import run_actions
from multiflexi.jobs.runner import JobRunner
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.secrets import REDACTED
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    ActionConfig,
    Artifact,
    Company,
    Job,
    JobStatus,
    RunTemplate,
)
from tests.factories import make_script, make_setup
from tests.support_servers import (
    PROBE,
    TrapperServer,
    outcomes,
    run_job,
    settings_for,
)


def probe(db: Database, tmp_path: Path, exit_code: int = 0, **kw: Any) -> int:
    script = make_script(tmp_path, PROBE)
    fields = {"EXIT": {"defval": str(exit_code)}, **kw.pop("fields", {})}
    _, _, rt_id = make_setup(db, cmdparams=str(script), fields=fields, **kw)
    return rt_id


def attach(db: Database, rt_id: int, mode: str, name: str, **options: str) -> None:
    set_action(db, settings_for(db), rt_id=rt_id, mode=mode, name=name, assignments=options)


# -- LaunchJob, Reschedule, Stop ---------------------------------------------------------


def test_launch_job_queues_the_next_template_with_chosen_variables_and_an_artifact(
    sqlite_db: Database, tmp_path: Path
) -> None:
    first = probe(
        sqlite_db,
        tmp_path,
        fields={"REGION": {"defval": "eu-1"}, "TOKEN": {"type": "password"}},
        config={"TOKEN": "tok-secret-1"},
    )
    reader = make_script(
        tmp_path,
        "import os; print(os.environ['REGION'], os.environ.get('TOKEN', '-'));"
        "print(open(os.environ['MULTIFLEXI_INPUT_FILE']).read())",
        name="reader.py",
    )
    _, _, second = make_setup(sqlite_db, cmdparams=str(reader), fields={"REGION": {}})
    attach(
        sqlite_db,
        first,
        "success",
        "ChainRuntemplate",
        runtemplate=str(second),
        artifact="metrics.json",
        **{"pass": "REGION,TOKEN,MISSING"},
    )
    settings = settings_for(sqlite_db)
    job = run_job(sqlite_db, settings, first)
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["action"] == "LaunchJob" and outcome["ok"], outcome["message"]
    assert "passed MULTIFLEXI_INPUT_FILE, REGION" in outcome["message"]
    assert "TOKEN not passed (secret here, not secret there)" in outcome["message"]
    assert "MISSING not set" in outcome["message"]
    with sqlite_db.read() as s:
        chained = s.scalars(select(Job).where(Job.runtemplate_id == second)).one()
    assert chained.status == JobStatus.SCHEDULED and chained.schedule_type == "chained"
    assert chained.overrides["REGION"] == "eu-1"

    claim = claim_job(sqlite_db, chained.id, new_worker_id("test"), 60)
    assert JobRunner(sqlite_db, settings, job_hooks=[]).perform_job(claim) == JobStatus.SUCCESS
    with sqlite_db.read() as s:
        out = s.scalars(
            select(Artifact).where(Artifact.job_id == chained.id, Artifact.kind == "stdout")
        ).one()
    text = b"".join(blobs.iter_content(sqlite_db, out.id)).decode()
    assert text.splitlines()[0] == "eu-1 -"
    assert json.loads(text.splitlines()[1])["rows"] == 12


def test_launch_job_refuses_a_missing_or_its_own_template_at_set_time(
    sqlite_db: Database, tmp_path: Path
) -> None:
    from multiflexi.errors import Invalid

    rt_id = probe(sqlite_db, tmp_path)
    with pytest.raises(Invalid, match="run template 9999 not found"):
        attach(sqlite_db, rt_id, "success", "LaunchJob", runtemplate="9999")
    with pytest.raises(Invalid, match="cannot launch its own run template"):
        attach(sqlite_db, rt_id, "success", "LaunchJob", runtemplate=str(rt_id))


def test_reschedule_queues_the_same_template_after_the_delay(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe(sqlite_db, tmp_path, exit_code=1)
    attach(sqlite_db, rt_id, "fail", "Reschedule", delay="600")
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id, overrides={"EXTRA": "kept"})
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"], outcome["message"]
    with sqlite_db.read() as s:
        again = s.scalars(select(Job).where(Job.schedule_type == "reschedule")).one()
    assert again.runtemplate_id == rt_id and again.overrides == {"EXTRA": "kept"}
    assert again.schedule is not None and job.end is not None
    delay = again.schedule - job.end
    assert timedelta(seconds=590) < delay < timedelta(seconds=660)


def test_stop_deactivates_the_template(sqlite_db: Database, tmp_path: Path) -> None:
    rt_id = probe(sqlite_db, tmp_path, exit_code=1)
    attach(sqlite_db, rt_id, "fail", "Stop")
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id)
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome == {
        "mode": "fail",
        "action": "Stop",
        "ok": True,
        "message": f"run template {rt_id} deactivated",
        "duration": outcome["duration"],
    }
    with sqlite_db.read() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None and rt.active is False


# -- CustomCommand -----------------------------------------------------------------------

DUMP_ENV = (
    f'{sys.executable} -c "import json, os; print(json.dumps(dict(os.environ))); '
    "import sys; print('bye', file=sys.stderr)\""
)


def test_custom_command_sees_the_job_context_with_secrets_redacted(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe(
        sqlite_db,
        tmp_path,
        exit_code=4,
        fields={"TOKEN": {"type": "password"}, "PLAIN": {"defval": "visible"}},
        config={"TOKEN": "cc-secret-value"},
    )
    attach(sqlite_db, rt_id, "fail", "CustomCommand", command=DUMP_ENV)
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id)
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"], outcome["message"]
    assert outcome["message"].startswith("exit code 0\nstdout:\n")
    env = json.loads(outcome["message"].split("\n")[2])
    assert env["MULTIFLEXI_JOB_ID"] == str(job.id)
    assert env["MULTIFLEXI_JOB_STATUS"] == "failed" and env["MULTIFLEXI_JOB_EXITCODE"] == "4"
    assert env["MULTIFLEXI_RUNTEMPLATE_ID"] == str(rt_id)
    assert env["PLAIN"] == "visible" and env["TOKEN"] == REDACTED
    assert "DB_PASSWORD" not in env
    assert outcome["message"].endswith("stderr:\nbye")


def test_custom_command_failing_or_hanging_fails_the_action_only(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe(sqlite_db, tmp_path)
    attach(
        sqlite_db,
        rt_id,
        "success",
        "CustomCommand",
        command=f"{sys.executable} -c \"import sys; print('x' * 10000, file=sys.stderr); sys.exit(3)\"",
    )
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id)
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"] and outcome["message"].startswith("exit code 3\nstderr:\n…")
    assert len(outcome["message"]) < 4200

    hang = probe(sqlite_db, tmp_path)
    attach(
        sqlite_db,
        hang,
        "success",
        "CustomCommand",
        command=f"{sys.executable} -c \"import time; print('started', flush=True); time.sleep(60)\"",
        timeout="1",
    )
    started = time.monotonic()
    job = run_job(sqlite_db, settings_for(sqlite_db), hang)
    assert time.monotonic() - started < 10 and job.status == JobStatus.SUCCESS
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"]
    assert outcome["message"] == "timed out after 1 s; killed\nstdout:\nstarted"

    missing = probe(sqlite_db, tmp_path)
    attach(sqlite_db, missing, "success", "CustomCommand", command="/no/such/tool --x")
    job = run_job(sqlite_db, settings_for(sqlite_db), missing)
    assert outcomes(sqlite_db, job.id)[0]["message"] == "command not found: /no/such/tool"


# -- Zabbix action -----------------------------------------------------------------------


def test_zabbix_action_sends_the_metrics_file_to_the_template_key_on_the_company_host(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe(sqlite_db, tmp_path)
    with sqlite_db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        company = s.get(Company, rt.company_id if rt else 0)
        assert company is not None
        company.zabbix_host = "acme-zbx"
    attach(sqlite_db, rt_id, "success", "Zabbix", metricsfile="metrics.json")
    attach(sqlite_db, rt_id, "success", "Zabbix", metricsfile="")  # KEY= clears an option
    with TrapperServer() as trapper:
        settings = settings_for(sqlite_db, **trapper.settings_values())
        attach(sqlite_db, rt_id, "success", "Zabbix", metricsfile="metrics.json")
        job = run_job(sqlite_db, settings, rt_id, hooks=None)
        trapper.wait_for(4)  # LLD, jobStart, jobDone, and the action's value
        values = list(trapper.values())
    from multiflexi.actions.payload import load_job_info

    info, _, _ = load_job_info(sqlite_db, job.id, None)
    key = f"zabbix_action[{info.company_slug}-{info.app_code}-{rt_id}-data]"
    sent = [v for v in values if v[1] == key]
    assert sent == [("acme-zbx", key, json.dumps({"rows": 12, "company": info.company_slug}))]
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"] and outcome["message"].startswith(
        f"metrics file metrics.json sent to {key}"
    )


def test_zabbix_action_without_metrics_file_sends_the_job_summary_and_reports_trouble(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe(sqlite_db, tmp_path, exit_code=1)
    attach(sqlite_db, rt_id, "fail", "Zabbix", key="nightly-import")
    with TrapperServer(mode="unknown") as trapper:
        settings = settings_for(sqlite_db, **trapper.settings_values("zbx-default"))
        job = run_job(sqlite_db, settings, rt_id, hooks=[])
        run_actions(sqlite_db, settings, job.id)
        trapper.wait_for(2)  # the discovery value sent at creation, then the action's
    [(host, key, value)] = [v for v in trapper.values() if v[1].startswith("zabbix_action")]
    assert host == "zbx-default" and key == "zabbix_action[nightly-import]"
    assert json.loads(value)["job"]["id"] == job.id
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"] and "processed 0, failed 1" in outcome["message"]
    assert run_actions(sqlite_db, settings, job.id) == []  # once per job


def test_zabbix_action_without_a_server_fails_with_a_clear_message(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe(sqlite_db, tmp_path)
    attach(sqlite_db, rt_id, "success", "Zabbix")
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id)
    assert outcomes(sqlite_db, job.id)[0]["message"] == "ZABBIX_SERVER is not configured"


# -- isolation ---------------------------------------------------------------------------


class Hang(Action):
    name = "Hang"
    description = "Never returns (test plugin)."

    def perform(self, ctx: ActionContext) -> str:
        time.sleep(30)
        return "woke up"


class Boom(Action):
    name = "Boom"
    description = "Raises (test plugin)."

    def perform(self, ctx: ActionContext) -> str:
        raise RuntimeError("kaboom\nwith a second line")


@pytest.fixture
def test_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import importlib.metadata

    class EP:
        def __init__(self, cls: type[Action]) -> None:
            self.name, self.value, self.cls = cls.name, f"tests:{cls.name}", cls

        def load(self) -> type[Action]:
            return self.cls

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [EP(Hang), EP(Boom)])
    registry.reset()
    yield
    registry.reset()


def test_actions_that_hang_or_raise_are_recorded_and_the_others_still_run(
    sqlite_db: Database, tmp_path: Path, test_plugins: None
) -> None:
    rt_id = probe(sqlite_db, tmp_path)
    attach(sqlite_db, rt_id, "success", "Hang", timeout="0.5")
    attach(sqlite_db, rt_id, "success", "Boom")
    attach(sqlite_db, rt_id, "success", "Stop")
    with sqlite_db.session() as s:  # an action whose plugin was uninstalled since
        s.add(ActionConfig(runtemplate_id=rt_id, mode="success", module="Gone", position=9))
    started = time.monotonic()
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id)
    assert time.monotonic() - started < 10
    assert job.status == JobStatus.SUCCESS and job.exitcode == 0
    got = {o["action"]: (o["ok"], o["message"]) for o in outcomes(sqlite_db, job.id)}
    assert got["Hang"] == (False, "timed out after 0.5 s")
    assert got["Boom"] == (False, "error: kaboom with a second line")
    assert got["Stop"] == (True, f"run template {rt_id} deactivated")
    assert got["Gone"][0] is False and got["Gone"][1].startswith("not run: unknown action 'Gone'")
    assert [o["action"] for o in outcomes(sqlite_db, job.id)] == ["Hang", "Boom", "Stop", "Gone"]


def test_global_defaults_from_the_configuration_satisfy_required_options(
    sqlite_db: Database, tmp_path: Path
) -> None:
    from multiflexi.errors import Invalid

    rt_id = probe(sqlite_db, tmp_path)
    with pytest.raises(Invalid, match="needs option command"):
        attach(sqlite_db, rt_id, "success", "CustomCommand")
    settings = settings_for(
        sqlite_db,
        MULTIFLEXI_ACTION_CUSTOMCOMMAND_COMMAND=f"{sys.executable} -c \"print('global')\"",
    )
    set_action(
        sqlite_db, settings, rt_id=rt_id, mode="success", name="CustomCommand", assignments={}
    )
    job = run_job(sqlite_db, settings, rt_id)
    assert outcomes(sqlite_db, job.id)[0]["message"] == "exit code 0\nstdout:\nglobal"


def test_a_job_that_fails_before_it_starts_still_runs_its_fail_actions(
    sqlite_db: Database,
) -> None:
    _, _, rt_id = make_setup(sqlite_db, executable="/nonexistent/tool")
    attach(sqlite_db, rt_id, "fail", "Stop")
    job = run_job(sqlite_db, settings_for(sqlite_db), rt_id)
    assert job.status == JobStatus.FAILED and job.exitcode == 127
    assert [o["action"] for o in outcomes(sqlite_db, job.id)] == ["Stop"]


def test_option_layers_modconfig_then_configuration_then_template(sqlite_db: Database) -> None:
    from multiflexi.actions.config import global_defaults, resolve
    from multiflexi.actions.webhook import WebHook
    from multiflexi.secrets import Vault
    from multiflexi.storage.models import ModConfig

    with sqlite_db.session() as s:
        s.add(ModConfig(module="WebHook", cfg="uri", value="http://db-default/"))
        s.add(ModConfig(module="WebHook", cfg="attempts", value="4"))
    settings = settings_for(sqlite_db, MULTIFLEXI_ACTION_WEBHOOK_ATTEMPTS="6")
    vault = Vault.from_settings(settings, sqlite_db)
    with sqlite_db.read() as s:
        defaults = global_defaults(WebHook, settings, s, vault)
    assert defaults == {"uri": "http://db-default/", "attempts": "6"}
    values = resolve(WebHook, defaults, {"attempts": "2"})
    assert values["uri"] == "http://db-default/" and values["attempts"] == 2
