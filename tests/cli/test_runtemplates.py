"""run-template:* (and runtemplate:*) through the real CLI entry point."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from multiflexi.runtemplates.service import app_default_layer, config_layer, get_runtemplate
from multiflexi.secrets import REDACTED, Vault
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Base,
    ConfField,
    Configuration,
    Job,
    RunTemplate,
    ScheduleEntry,
)

APP_UUID = "0b6d3c1a-0000-4000-8000-0000000000aa"
SECRET = "hunter2-very-secret"


def counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            t.name: s.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


def make_app(db: Database, name: str = "Bank Import", uuid: str | None = None) -> int:
    """An application declaring one key of each interesting kind."""
    fields = [
        ConfField(keyname="API_URL", type="url", required=True),
        ConfField(keyname="API_PASSWORD", type="password", required=True),
        ConfField(keyname="TOKEN", type="string", secret=True, defval="default-token"),
        ConfField(keyname="DAYS", type="integer", defval="7"),
        ConfField(keyname="DEBUG", type="bool", defval="false"),
        ConfField(keyname="LANG", type="set", options={"cs": "Czech", "en": "English"}),
        ConfField(keyname="NOTIFY", type="email"),
    ]
    for position, field in enumerate(fields):
        field.position = position
    with db.session() as s:
        app = App(name=name, executable="/bin/true", uuid=uuid or str(uuid4()), fields=fields)
        s.add(app)
        s.flush()
        return app.id


@pytest.fixture
def world(cli: Any, sqlite_db: Database) -> dict[str, int]:
    app = make_app(sqlite_db, uuid=APP_UUID)
    company = cli.json("company:create", "--name", "Acme")["company_id"]
    return {"app": app, "company": company}


def create(cli: Any, world: dict[str, int], *extra: str) -> int:
    data = cli.json(
        "run-template:create", "--app_id", world["app"], "--company_id", world["company"], *extra
    )
    return int(data["runtemplate_id"])


def test_create_assigns_the_app_and_uses_its_name_by_default(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    data = cli.json("run-template:create", "--app_uuid", APP_UUID, "--company", "acme")
    assert data["created"] is True
    assert data["company_app_assigned"] is True
    assert data["missing_required"] == ["API_URL", "API_PASSWORD"]
    with sqlite_db.read() as s:
        rt = s.get_one(RunTemplate, data["runtemplate_id"])
        assert (rt.name, rt.interv, rt.cron, rt.executor, rt.active) == (
            "Bank Import", "n", None, "Native", True,
        )  # fmt: skip
    second = cli.json(
        "run-template:create",
        "--app-id",
        world["app"],
        "--company-id",
        world["company"],
        "--name",
        "Nightly",
    )
    assert second["company_app_assigned"] is False
    assert counts(sqlite_db)["companyapp"] == 1
    res = cli.ok(
        "run-template:create", "--app_id", world["app"], "--company", str(world["company"])
    )
    assert res.stdout.startswith("RunTemplate created with ID: ")
    assert "warning: required value(s) not set: API_URL, API_PASSWORD" in res.stderr


def test_create_with_every_setting(cli: Any, sqlite_db: Database, world: dict[str, int]) -> None:
    rt_id = create(
        cli, world,
        "--name", "Every", "--cron", "30 2 * * *", "--delay", "60", "--executor", "native",
        "--active", "false", "--timeout", "600", "--max_attempts", "3",
        "--retry_backoff", "exponential", "--retry-min-gap", "30", "--overlap", "skip",
        "--mask_secrets", "false", "--keep-workdir", "true", "--note", "hello",
        "--on_interrupt", "fail",
    )  # fmt: skip
    with sqlite_db.read() as s:
        rt = s.get_one(RunTemplate, rt_id)
        got = (rt.interv, rt.cron, rt.delay, rt.executor, rt.active, rt.timeout, rt.max_attempts)
        assert got == ("c", "30 2 * * *", 60, "Native", False, 600, 3)
        assert (rt.retry_backoff, rt.retry_min_gap, rt.overlap) == ("exponential", 30, "skip")
        assert (rt.mask_secrets, rt.keep_workdir, rt.note) == (False, True, "hello")
        assert rt.on_interrupt == "fail"
    shown = cli.ok("runtemplate:show", rt_id).stdout
    assert re.search(r"^on_interrupt +fail$", shown, re.M), shown
    cli.ok("run-template:update", rt_id, "--on-interrupt", "requeue")
    assert cli.json("runtemplate:show", rt_id)["on_interrupt"] == "requeue"


def test_wrong_input_is_refused_and_leaves_the_database_as_it_was(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    base = [
        "run-template:create",
        "--app_id",
        str(world["app"]),
        "--company_id",
        str(world["company"]),
    ]
    before = counts(sqlite_db)
    cases = [
        (["--cron", "0 0 31 2 *"], "never fires"),
        (["--cron", "* * * * * *"], "has 6 fields; expected 5"),
        (["--interv", "d", "--cron", "0 1 * * *"], "--cron needs interval c"),
        (["--interv", "c"], "interval c (custom) needs a cron expression"),
        (["--interv", "q"], "unknown interval 'q'"),
        (["--config", "DAYS=seven"], "configuration key DAYS: expected an integer, got 'seven'"),
        (["--config", "DEBUG=maybe"], "configuration key DEBUG: expected a boolean"),
        (["--config", "LANG=de"], "configuration key LANG: expected one of cs, en, got 'de'"),
        (["--config", "NOTIFY=nobody"], "configuration key NOTIFY: expected an e-mail address"),
        (["--config", "API_URL=nohost"], "configuration key API_URL: expected a URL"),
        (["--config", "TYPO=1"], "unknown configuration key TYPO"),
        (["--delay", "soon"], "--delay must be a whole number"),
        (["--max_attempts", "0"], "max_attempts must be at least 1"),
        (["--overlap", "queue"], "overlap must be one of forbid, allow, skip"),
        (["--on-interrupt", "retry"], "on_interrupt must be one of requeue, fail, got 'retry'"),
        (["--active", "perhaps"], "--active must be true or false"),
    ]
    for extra, message in cases:
        res = cli(*base, *extra)
        assert res.exit_code == 1, extra
        assert message in res.stderr, (extra, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
    missing = [
        (
            ["run-template:create", "--app_id", "999", "--company_id", str(world["company"])],
            "application 999 not found",
        ),
        (
            ["run-template:create", "--app_id", str(world["app"]), "--company_id", "999"],
            "company 999 not found",
        ),
        (
            ["run-template:create", "--app_id", str(world["app"]), "--company", "nope"],
            "company 'nope' not found",
        ),
        (
            ["run-template:create", "--app_uuid", "nope", "--company", "acme"],
            "no application with UUID 'nope'",
        ),
    ]
    for args, message in missing:
        res = cli(*args)
        assert res.exit_code == 1 and message in res.stderr, (args, res.stderr)
    assert cli("run-template:create", "--app_id", world["app"]).exit_code == 2
    assert cli("run-template:create", "--company_id", world["company"]).exit_code == 2
    assert cli("run-template:create", *base[1:], "--company", "acme").exit_code == 2
    assert cli("run-template:create", *base[1:], "--config", "NOEQUALS").exit_code == 2
    assert counts(sqlite_db) == before


def test_values_are_normalised_and_unknown_keys_need_force(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(
        cli, world, "--config", "DEBUG=YES", "--config", "DAYS=030", "--config", "LANG=cs",
        "--config", "EXTRA_KEY=x", "--force",
    )  # fmt: skip
    with sqlite_db.read() as s:
        rows = {
            c.name: (c.value, c.config_type, c.encrypted) for c in s.scalars(select(Configuration))
        }
    assert rows == {
        "DEBUG": ("true", "bool", False),
        "DAYS": ("30", "integer", False),
        "LANG": ("cs", "set", False),
        "EXTRA_KEY": ("x", "string", False),
    }
    shown = cli.json("runtemplate:show", rt_id)
    extra = next(c for c in shown["config"] if c["name"] == "EXTRA_KEY")
    assert (extra["declared"], extra["source"]) == (False, f"runtemplate:{rt_id}")


def test_secret_values_are_sealed_at_rest_and_never_shown(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(
        cli, world, "--config", f"API_PASSWORD={SECRET}", "--config", "TOKEN=tok-123",
        "--config", "API_URL=https://bank.example/api",
    )  # fmt: skip
    with sqlite_db.read() as s:
        stored = {c.name: c for c in s.scalars(select(Configuration))}
    assert stored["API_PASSWORD"].encrypted and stored["TOKEN"].encrypted
    assert SECRET not in stored["API_PASSWORD"].value
    assert not stored["API_URL"].encrypted

    for fmt in ("text", "json"):
        out = cli.ok("run-template:get", "--id", rt_id, "-f", fmt).stdout
        assert SECRET not in out and "tok-123" not in out and "default-token" not in out
    data = cli.json("run-template:get", rt_id)
    by_name = {c["name"]: c for c in data["config"]}
    assert by_name["API_PASSWORD"]["value"] == REDACTED
    assert by_name["TOKEN"]["default"] == REDACTED

    vault = Vault.from_settings(sqlite_db.settings, sqlite_db)
    with sqlite_db.read() as s:
        rt = get_runtemplate(s, rt_id)
        layer = {v.name: v for v in config_layer(s, rt, vault)}
        defaults = {v.name: v for v in app_default_layer(s, s.get_one(App, rt.app_id))}
    assert layer["API_PASSWORD"].value == SECRET
    assert (layer["API_PASSWORD"].secret, layer["API_URL"].secret) == (True, False)
    assert layer["TOKEN"].source == f"runtemplate:{rt_id}"
    assert set(defaults) == {"TOKEN", "DAYS", "DEBUG"}
    assert defaults["TOKEN"].secret and defaults["DAYS"].source == f"app:{world['app']} default"


def test_show_lists_every_declared_key_with_source_and_missing_ones(
    cli: Any, world: dict[str, int]
) -> None:
    rt_id = create(cli, world, "--config", "API_URL=https://x.example", "--config", "DAYS=3")
    data = cli.json("runtemplate:show", rt_id)
    assert data["id"] == rt_id and data["app_uuid"] == APP_UUID and data["company_slug"] == "acme"
    rows = {c["name"]: c for c in data["config"]}
    assert [c["name"] for c in data["config"]] == [
        "API_URL", "API_PASSWORD", "TOKEN", "DAYS", "DEBUG", "LANG", "NOTIFY",
    ]  # fmt: skip
    here, app_default = f"runtemplate:{rt_id}", f"app:{world['app']} default"
    assert (rows["API_URL"]["value"], rows["API_URL"]["source"]) == ("https://x.example", here)
    assert (rows["DAYS"]["value"], rows["DAYS"]["default"], rows["DAYS"]["source"]) == (
        "3",
        "7",
        here,
    )
    assert rows["DAYS"]["shadowed"] == [{"source": app_default, "value": "7"}]
    assert (rows["DEBUG"]["value"], rows["DEBUG"]["source"]) == ("false", app_default)
    assert (rows["LANG"]["value"], rows["LANG"]["source"]) == (None, None)
    assert rows["API_PASSWORD"]["missing"] is True
    assert data["missing_required"] == ["API_PASSWORD"]
    assert data["next_runs"] == []  # not scheduled
    text = cli.ok("run-template:get", rt_id).stdout
    assert "Missing required: API_PASSWORD" in text
    assert "(not set)" in text


def test_show_gives_the_next_five_runs_in_the_configured_time_zone(
    cli: Any, world: dict[str, int]
) -> None:
    cli.env["MULTIFLEXI_TIMEZONE"] = "Europe/Prague"
    rt_id = create(cli, world, "--interv", "d")
    data = cli.json("run-template:get", rt_id)
    runs = [datetime.fromisoformat(r) for r in data["next_runs"]]
    assert len(runs) == 5
    assert all(r.strftime("%H:%M") == "00:00" for r in runs)
    assert str(runs[0].utcoffset()) in ("1:00:00", "2:00:00")
    assert runs[0] > datetime.now(UTC)
    assert all(a < b for a, b in itertools.pairwise(runs))
    assert data["timezone"] == "Europe/Prague" and data["schedule"] == "daily"
    text = cli.ok("runtemplate:show", rt_id).stdout
    assert "Next runs (Europe/Prague):" in text
    cli.ok("run-template:update", rt_id, "--active", "false")
    assert cli.json("run-template:get", rt_id)["next_runs"] == []


def test_update_changes_settings_schedule_and_values(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(cli, world, "--cron", "*/5 * * * *", "--config", "DAYS=3", "--config", "LANG=en")
    data = cli.json(
        "run-template:update", "--id", rt_id, "--interv", "h", "--name", "Hourly",
        "--config", "DAYS=4", "--config", "LANG=", "--timeout", "0",
    )  # fmt: skip
    assert data["updated"] is True
    assert data["changes"] == ["interv", "cron", "name", "config:DAYS", "config:LANG"]
    with sqlite_db.read() as s:
        rt = s.get_one(RunTemplate, rt_id)
        assert (rt.interv, rt.cron, rt.name, rt.timeout) == ("h", None, "Hourly", None)
        assert rt.saved is not None
        values = {c.name: c.value for c in s.scalars(select(Configuration))}
    assert values == {"DAYS": "4"}
    same = cli.json("run-template:update", rt_id, "--config", "DAYS=4", "--interv", "h")
    assert same == {
        "runtemplate_id": rt_id,
        "updated": False,
        "changes": [],
        "changed": {},
        "waiting_held": 0,
        "missing_required": ["API_URL", "API_PASSWORD"],
    }
    assert cli.json("run-template:update", rt_id, "--cron", "0 6 * * 1-5")["changes"] == [
        "interv",
        "cron",
    ]


def test_update_refuses_bad_input_and_changes_nothing(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(cli, world)
    other = make_app(sqlite_db, "Other")
    before = counts(sqlite_db)
    cases = [
        (["--id", "999", "--name", "x"], "run template 999 not found"),
        (["--id", str(rt_id), "--cron", "bad cron"], "has 2 fields"),
        (["--id", str(rt_id), "--interv", "c"], "needs a cron expression"),
        (["--id", str(rt_id), "--config", "DAYS=x"], "configuration key DAYS"),
        (["--id", str(rt_id), "--app_id", str(other)], "cannot be changed"),
        (["--id", str(rt_id), "--name", " "], "name must not be empty"),
    ]
    for extra, message in cases:
        res = cli("run-template:update", *extra)
        assert res.exit_code == 1 and message in res.stderr, (extra, res.stderr)
    assert cli("run-template:update", "--name", "x").exit_code == 2
    assert counts(sqlite_db) == before


def test_moving_to_another_company_assigns_the_app_there(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(cli, world, "--config", "DAYS=3")
    beta = cli.json("company:create", "--name", "Beta")["company_id"]
    assert cli.json("run-template:update", rt_id, "--company", "beta")["changes"] == ["company_id"]
    with sqlite_db.read() as s:
        assert s.scalars(select(Configuration.company_id)).all() == [beta]
    assert [r["company_id"] for r in cli.json("company-app:list", "--app_id", world["app"])] == [
        world["company"],
        beta,
    ]


def make_job(db: Database, rt_id: int, status: str, queued: bool = False) -> int:
    with db.session() as s:
        rt = s.get_one(RunTemplate, rt_id)
        job = Job(app_id=rt.app_id, company_id=rt.company_id, runtemplate_id=rt.id, status=status)
        s.add(job)
        s.flush()
        if queued:
            s.add(ScheduleEntry(job=job.id, after=datetime.now(UTC)))
        return job.id


def test_delete_keeps_jobs_as_records_and_cancels_waiting_ones(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(cli, world, "--config", "DAYS=3")
    keep = create(cli, world, "--name", "Keep")
    finished = make_job(sqlite_db, rt_id, "failed")
    loaded = make_job(sqlite_db, rt_id, "loaded")
    queued = make_job(sqlite_db, rt_id, "scheduled", queued=True)
    other = make_job(sqlite_db, keep, "scheduled", queued=True)
    data = cli.json("run-template:delete", "--id", rt_id)
    assert data == {"runtemplate_id": rt_id, "deleted": True, "cancelled_jobs": [loaded, queued]}
    with sqlite_db.read() as s:
        jobs = {j.id: (j.status, j.runtemplate_id, j.reason) for j in s.scalars(select(Job))}
        assert s.scalars(select(ScheduleEntry.job)).all() == [other]
        assert s.scalars(select(Configuration)).all() == []
    assert jobs[finished] == ("failed", None, "")
    assert jobs[loaded] == ("cancelled", None, "run template deleted")
    assert jobs[queued] == ("cancelled", None, "run template deleted")
    assert jobs[other] == ("scheduled", keep, "")
    res = cli("run-template:delete", rt_id)
    assert res.exit_code == 1 and f"run template {rt_id} not found" in res.stderr


def test_delete_is_refused_while_a_job_runs_unless_forced(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(cli, world)
    running = make_job(sqlite_db, rt_id, "running")
    before = counts(sqlite_db)
    res = cli("run-template:delete", rt_id)
    assert (
        res.exit_code == 1
        and f"job(s) {running} of run template(s) {rt_id} are running" in res.stderr
    )
    assert counts(sqlite_db) == before
    assert (
        "RunTemplate deleted successfully" in cli.ok("runtemplate:delete", rt_id, "--force").stdout
    )
    with sqlite_db.read() as s:
        job = s.get_one(Job, running)
        assert (job.status, job.runtemplate_id) == ("running", None)


def test_list_and_every_spelling(cli: Any, sqlite_db: Database, world: dict[str, int]) -> None:
    other_app = make_app(sqlite_db, "Other")
    first = create(cli, world, "--name", "One")
    cli.json(
        "run-template:create",
        "--app_id",
        other_app,
        "--company_id",
        world["company"],
        "--name",
        "Two",
    )
    beta = cli.json("company:create", "--name", "Beta")["company_id"]
    cli.json("run-template:create", "--app_id", other_app, "--company_id", beta, "--name", "Three")
    assert [r["name"] for r in cli.json("run-template:list")] == ["One", "Two", "Three"]
    assert [r["name"] for r in cli.json("runtemplate:list", "--company", "acme")] == ["One", "Two"]
    assert [r["name"] for r in cli.json("run-template:list", "--company_id", beta)] == ["Three"]
    assert [r["name"] for r in cli.json("run-template:list", "--app_uuid", APP_UUID)] == ["One"]
    assert [r["name"] for r in cli.json("run-template:list", "--app-id", other_app)] == [
        "Two",
        "Three",
    ]
    assert "One" in cli.ok("runtemplate", "list").stdout
    for args in (
        ("runtemplate:show", first),
        ("run-template:get", "--id", first),
        ("runtemplate", "show", first),
    ):
        assert cli.json(*args)["name"] == "One"
    assert cli.json("run-template:get", "--name", "Two")["name"] == "Two"
    assert "no run template named 'Nope'" in cli("run-template:get", "--name", "Nope").stderr
    assert cli("run-template:get").exit_code == 2
    assert cli("run-template:list", "--company", "nope").exit_code == 1


def test_retention_overrides_and_executor_are_validated_on_update(
    cli: Any, sqlite_db: Database
) -> None:
    from tests.factories import make_setup

    _, _, rt_id = make_setup(sqlite_db, cmdparams="-c pass")
    cli.ok(f"run-template:update --id {rt_id} --keep-success-days 7 --keep_last 3")
    record = cli.json(f"run-template:get --id {rt_id}")
    assert record["keep_success_days"] == 7 and record["keep_last"] == 3
    bad = cli(f"run-template:update --id {rt_id} --keep-last -1")
    assert bad.exit_code == 1 and "keep_last" in bad.stderr
    unknown = cli(f"run-template:update --id {rt_id} --executor Kubernetes")
    assert unknown.exit_code == 1 and "Native" in unknown.stderr
