"""A run template the scheduler cannot queue is recorded on the template -- reason and
first moment -- and shown by runtemplate:list/show, status, the metrics and Zabbix; the
next job queued clears it (issue 32, item 2). Never only a log line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from multiflexi.monitoring.zabbix import (
    SCHEDULE_ERRORS_KEY,
    ScheduleErrorReport,
    ZabbixTarget,
)
from multiflexi.scheduling.problems import broken_count, broken_templates
from multiflexi.scheduling.scheduler import Scheduler
from multiflexi.secrets import Vault
from multiflexi.storage.database import Database
from multiflexi.storage.models import Configuration, Job, RunTemplate
from tests.conftest import Cli
from tests.factories import make_setup
from tests.support_servers import TrapperServer

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
# The database's key identity is this process's key: a value sealed under another key
# is a damaged value of this template, not a host whose key is wrong.
UNDECRYPTABLE = (
    "a secret cannot be decrypted although this process's master key is the database's:"
    " the stored value is damaged"
)


def at(hour: int, second: int = 5) -> datetime:
    return datetime(2026, 11, 28, hour, 0, second, tzinfo=UTC)


def _template_with_a_secret_that_does_not_open(db: Database) -> int:
    """A template whose stored secret was sealed under another master key."""
    other = Vault("another key entirely, 32 bytes or more of it").seal("s3cret")
    *_, rt = make_setup(
        db,
        executable="/bin/true",
        interv="h",
        created=LONG_AGO,
        fields={"TOKEN": {"type": "password", "secret": True}},
        config={"TOKEN": "placeholder"},
    )
    with db.session() as session:
        session.execute(
            update(Configuration).where(Configuration.runtemplate_id == rt).values(value=other)
        )
    return rt


def _row(db: Database, rt: int) -> RunTemplate:
    with db.read() as session:
        return session.get_one(RunTemplate, rt)


def _jobs(db: Database, rt: int) -> int:
    with db.read() as session:
        return len(session.scalars(select(Job.id).where(Job.runtemplate_id == rt)).all())


def test_an_unschedulable_template_is_recorded_kept_and_cleared_by_the_next_job(
    any_db: Database,
) -> None:
    broken = _template_with_a_secret_that_does_not_open(any_db)
    unknown = make_setup(
        any_db, executable="/bin/true", interv="h", created=LONG_AGO, executor="Nowhere"
    )[2]
    fine = make_setup(any_db, executable="/bin/true", interv="h", created=LONG_AGO)[2]
    scheduler = Scheduler(any_db, any_db.settings, job_hooks=[])

    scheduler.step(at(10))
    assert (_jobs(any_db, broken), _jobs(any_db, unknown), _jobs(any_db, fine)) == (0, 0, 1)
    first = _row(any_db, broken)
    assert first.last_schedule_error == UNDECRYPTABLE
    assert first.last_schedule_error_at is not None
    assert _row(any_db, unknown).last_schedule_error == "unknown executor 'Nowhere'"
    assert _row(any_db, fine).last_schedule_error is None

    # Still broken a step later: the same record, its first moment kept.
    Scheduler(any_db, any_db.settings, job_hooks=[]).step(at(10, 30))
    assert _row(any_db, broken).last_schedule_error_at == first.last_schedule_error_at
    with any_db.read() as session:
        assert broken_count(session) == 2
        listed = broken_templates(session)
    assert {r["runtemplate_id"]: r["error"] for r in listed} == {
        broken: UNDECRYPTABLE,
        unknown: "unknown executor 'Nowhere'",
    }

    with any_db.session() as session:
        session.execute(update(RunTemplate).where(RunTemplate.id == unknown).values(executor=""))
    scheduler.step(at(10, 40))
    assert _jobs(any_db, unknown) == 1
    cleared = _row(any_db, unknown)
    assert (cleared.last_schedule_error, cleared.last_schedule_error_at) == (None, None)


def test_an_invalid_stored_cron_is_recorded(any_db: Database) -> None:
    rt = make_setup(any_db, executable="/bin/true", interv="c", cron="61 * * * *")[2]
    Scheduler(any_db, any_db.settings, job_hooks=[]).step(at(10))
    error = _row(any_db, rt).last_schedule_error
    assert error is not None and "61" in error


def test_list_show_status_and_metrics_show_the_broken_template(
    cli: Cli, sqlite_db: Database
) -> None:
    rt = _template_with_a_secret_that_does_not_open(sqlite_db)
    Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[]).step(at(10))

    [row] = cli.json("runtemplate:list")
    assert row["schedule_error"] == UNDECRYPTABLE
    assert "schedule_error" in cli.ok("runtemplate:list --wide").stdout
    table = cli.ok("runtemplate:list").stdout
    assert table.splitlines()[0].split()[-1] == "problem" and "cannot be decrypted" in table
    shown = cli.json(f"runtemplate:show {rt}")
    assert shown["last_schedule_error"] == UNDECRYPTABLE and shown["last_schedule_error_at"]

    status = cli.json("status")["problems"]
    assert status["unschedulable"] == 1 and status["templates"][0]["runtemplate_id"] == rt
    text = cli.ok("status").stdout
    assert "Problems:\n1 run template(s) cannot be scheduled:\n  run template" in text
    assert text.rstrip().endswith(UNDECRYPTABLE)

    metrics = cli.ok("metrics").stdout
    assert "multiflexi_runtemplates_unschedulable 1.0" in metrics
    [line] = [x for x in metrics.splitlines() if x.startswith("multiflexi_runtemplate_schedule_e")]
    assert f'runtemplate_id="{rt}"' in line and line.endswith(" 1.0")

    # Deactivated, it is no longer a problem of the schedule.
    cli.ok(f"runtemplate:update {rt} --active false")
    assert cli.json("status")["problems"]["unschedulable"] == 0
    assert cli.ok("status").stdout.rstrip().endswith("Problems:\nnone")


def test_zabbix_gets_the_list_when_it_changes_and_now_and_then(sqlite_db: Database) -> None:
    rows: list[dict[str, Any]] = [
        {
            "runtemplate_id": 7,
            "runtemplate": "nightly",
            "company": "acme",
            "app": "Importer",
            "app_code": "IMP",
            "error": "unknown executor 'Nowhere'",
            "since": datetime(2026, 11, 28, 10, tzinfo=UTC),
        }
    ]
    with TrapperServer() as trapper:
        report = ScheduleErrorReport(ZabbixTarget("127.0.0.1", trapper.port, "mf-host"))
        assert report.tick(lambda: rows, clock=0.0)
        assert not report.tick(lambda: rows, clock=1.0)  # not looked again yet
        assert not report.tick(lambda: rows, clock=40.0)  # unchanged
        assert report.tick(lambda: [], clock=80.0)  # changed
        assert report.tick(lambda: [], clock=80.0 + report.EVERY + 1)  # unchanged, but due
        first, second, _ = trapper.wait_for(3)
    [item] = first.items()
    assert item["host"] == "mf-host" and item["key"] == SCHEDULE_ERRORS_KEY
    value = json.loads(str(item["value"]))
    assert value["count"] == 1 and value["templates"][0]["error"] == "unknown executor 'Nowhere'"
    assert json.loads(str(second.items()[0]["value"])) == {"count": 0, "templates": []}
