"""The scheduler step on real databases: ticks become jobs once, across DST, catch-up,
concurrent schedulers and ten thousand templates; and the daemon as a process."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, insert, select, update

from multiflexi.config import Settings
from multiflexi.scheduling import scheduler as scheduler_module
from multiflexi.scheduling.scheduler import Scheduler
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    Configuration,
    Job,
    RunTemplate,
    ScheduledTick,
    ScheduleEntry,
)
from tests.daemons.helpers import SCHEDULER, daemon_env, daemons, wait_until
from tests.factories import make_setup

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
PRAGUE = ZoneInfo("Europe/Prague")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def in_zone(db: Database, tz: str) -> Settings:
    return dataclasses.replace(db.settings, timezone=tz)


def template(db: Database, **options: object) -> int:
    options.setdefault("created", LONG_AGO)
    return make_setup(db, executable="/bin/true", **options)[2]


def jobs_of(db: Database, rt_id: int) -> list[Job]:
    with db.read() as session:
        return list(
            session.scalars(select(Job).where(Job.runtemplate_id == rt_id).order_by(Job.id))
        )


def run_waiting_jobs(db: Database) -> None:
    """What an executor would do, instantly: every waiting job succeeds."""
    with db.session() as session:
        session.execute(delete(ScheduleEntry))
        session.execute(
            update(Job).where(Job.status.in_(["loaded", "scheduled"])).values(status="success")
        )


def test_a_due_tick_queues_one_job_with_its_tick_and_type(any_db: Database) -> None:
    rt = template(any_db, interv="h")
    scheduler = Scheduler(any_db, any_db.settings, job_hooks=[])
    result = scheduler.step(utc(2026, 11, 28, 10, 0, 5))
    assert len(result.created) == 1 and result.next_tick == utc(2026, 11, 28, 11)
    assert scheduler.step(utc(2026, 11, 28, 10, 30)).created == []
    (job,) = jobs_of(any_db, rt)
    assert job.status == "scheduled" and job.schedule_type == "hourly"
    assert job.schedule == utc(2026, 11, 28, 10)
    with any_db.read() as session:
        tick = session.scalar(select(ScheduledTick))
        rt_row = session.get_one(RunTemplate, rt)
        entry = session.scalar(select(ScheduleEntry))
    assert tick is not None and (tick.runtemplate_id, tick.tick, tick.job_id) == (
        rt,
        utc(2026, 11, 28, 10),
        job.id,
    )
    assert entry is not None and entry.job == job.id and entry.after == job.schedule
    assert rt_row.last_schedule == utc(2026, 11, 28, 10)
    assert rt_row.next_schedule == utc(2026, 11, 28, 11)


def test_missed_ticks_are_caught_up_once_with_the_latest(sqlite_db: Database) -> None:
    rt = template(sqlite_db, interv="h", last_schedule=utc(2026, 11, 28, 5))
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    assert len(scheduler.step(utc(2026, 11, 28, 10, 30)).created) == 1
    run_waiting_jobs(sqlite_db)
    assert scheduler.step(utc(2026, 11, 28, 10, 59)).created == []
    assert [j.schedule for j in jobs_of(sqlite_db, rt)] == [utc(2026, 11, 28, 10)]


def test_ticks_before_a_template_existed_or_changed_do_not_fire(sqlite_db: Database) -> None:
    fresh = template(sqlite_db, interv="d", created=utc(2026, 11, 28, 15))
    edited = template(sqlite_db, interv="d", saved=utc(2026, 11, 28, 15))
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    assert scheduler.step(utc(2026, 11, 28, 16)).created == []
    with sqlite_db.read() as session:
        assert session.get_one(RunTemplate, fresh).next_schedule == utc(2026, 11, 29)
    assert len(scheduler.step(utc(2026, 11, 29, 0, 0, 1)).created) == 2
    assert len(jobs_of(sqlite_db, fresh)) == len(jobs_of(sqlite_db, edited)) == 1


def test_no_new_job_while_the_previous_scheduled_one_still_waits(sqlite_db: Database) -> None:
    rt = template(sqlite_db, interv="h")
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    scheduler.step(utc(2026, 11, 28, 10, 0, 1))
    blocked = scheduler.step(utc(2026, 11, 28, 12, 0, 1))
    assert blocked.created == [] and blocked.waiting == [rt]
    run_waiting_jobs(sqlite_db)
    scheduler.step(utc(2026, 11, 28, 12, 30))
    ticks = [j.schedule for j in jobs_of(sqlite_db, rt)]
    assert ticks == [utc(2026, 11, 28, 10), utc(2026, 11, 28, 12)]


def test_an_adhoc_job_waiting_does_not_hold_the_schedule(sqlite_db: Database) -> None:
    from multiflexi.jobs.service import create_job

    rt = template(sqlite_db, interv="h")
    create_job(sqlite_db, sqlite_db.settings, runtemplate_id=rt, at=utc(2027, 1, 1))
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    assert len(scheduler.step(utc(2026, 11, 28, 10, 0, 1)).created) == 1


def test_an_invalid_cron_in_the_database_is_logged_once_and_skipped(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    bad = template(sqlite_db, interv="c", cron="99 * * * *")
    good = template(sqlite_db, interv="i")
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    with caplog.at_level(logging.WARNING, "multiflexi.scheduler"):
        first = scheduler.step(utc(2026, 11, 28, 10, 0, 1))
        scheduler.step(utc(2026, 11, 28, 10, 1, 1))
    assert first.invalid == [bad] and len(first.created) == 1
    assert len(jobs_of(sqlite_db, good)) == 1 and jobs_of(sqlite_db, bad) == []
    warnings = [r for r in caplog.records if f"runtemplate_id={bad}" in r.getMessage()]
    assert len(warnings) == 1


def test_a_template_whose_secret_does_not_open_skips_only_itself(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from multiflexi.secrets import Vault

    other_key = Vault("another master key").seal("s3cret")
    broken = template(
        sqlite_db, interv="i", config={"TOKEN": "x"}, fields={"TOKEN": {"type": "password"}}
    )
    with sqlite_db.session() as session:
        session.execute(update(Configuration).values(value=other_key, encrypted=True))
    good = template(sqlite_db, interv="i")
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    with caplog.at_level(logging.WARNING, "multiflexi.scheduler"):
        scheduler.step(utc(2026, 11, 28, 10, 0, 1))
        run_waiting_jobs(sqlite_db)
        scheduler.step(utc(2026, 11, 28, 10, 1, 1))
    assert jobs_of(sqlite_db, broken) == [] and len(jobs_of(sqlite_db, good)) == 2
    warnings = [
        r.getMessage() for r in caplog.records if f"runtemplate_id={broken}" in r.getMessage()
    ]
    assert len(warnings) == 1 and "cannot be decrypted" in warnings[0]


@pytest.mark.parametrize(
    ("start", "days"),
    [(datetime(2026, 3, 28, 12, tzinfo=PRAGUE), 2), (datetime(2026, 10, 24, 12, tzinfo=PRAGUE), 2)],
    ids=["spring-forward", "fall-back"],
)
def test_daylight_saving_changes_neither_skip_nor_double_a_run(
    sqlite_db: Database, start: datetime, days: int
) -> None:
    moment, end = start.astimezone(UTC), (start + timedelta(days=days)).astimezone(UTC)
    ran = {"last_schedule": moment}  # everything up to the start has run
    midnight = template(sqlite_db, interv="d", **ran)
    half_past_two = template(sqlite_db, interv="c", cron="30 2 * * *", **ran)
    hourly = template(sqlite_db, interv="h", **ran)
    scheduler = Scheduler(sqlite_db, in_zone(sqlite_db, "Europe/Prague"), job_hooks=[])
    while moment <= end:
        scheduler.step(moment)
        run_waiting_jobs(sqlite_db)
        moment += timedelta(minutes=10)

    def local_days(rt: int) -> Counter[str]:
        return Counter(f"{j.schedule.astimezone(PRAGUE):%m-%d}" for j in jobs_of(sqlite_db, rt))  # type: ignore[union-attr]

    expected_days = {f"{start + timedelta(days=d):%m-%d}": 1 for d in range(1, days + 1)}
    assert local_days(midnight) == expected_days
    assert local_days(half_past_two) == expected_days
    hours = [j.schedule for j in jobs_of(sqlite_db, hourly)]
    assert len(hours) == len(set(hours))
    assert {b - a for a, b in itertools.pairwise(hours)} == {timedelta(hours=1)}  # type: ignore[operator]
    real_hours = (end - start.astimezone(UTC)) // timedelta(hours=1)
    assert hours[0] == start.astimezone(UTC) + timedelta(hours=1) and len(hours) == real_hours


@pytest.mark.parametrize("batch", [1000, 16], ids=["one-batch", "many-batches"])
def test_two_schedulers_at_once_create_one_job_per_tick(
    any_db: Database, tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many batches, each scheduler also runs two (PostgreSQL) or three (MariaDB) of its
    batches at once: batches overlap within and between schedulers."""
    monkeypatch.setattr(scheduler_module, "BATCH", batch)
    templates = [template(any_db, interv="i") for _ in range(5)]
    with any_db.session() as session:
        rt = session.get_one(RunTemplate, templates[0])
        session.execute(
            insert(RunTemplate),
            [
                {
                    "app_id": rt.app_id,
                    "company_id": rt.company_id,
                    "interv": "i",
                    "created": LONG_AGO,
                }
                for _ in range(195)
            ],
        )
    second_db = Database(any_db.settings)
    schedulers = [
        Scheduler(any_db, any_db.settings, job_hooks=[]),
        Scheduler(second_db, any_db.settings, job_hooks=[]),
    ]
    errors: list[BaseException] = []
    try:
        for minute in range(3):
            now = utc(2026, 11, 28, 10, minute, 1)
            barrier = threading.Barrier(2)

            def step(
                scheduler: Scheduler, now: datetime = now, barrier: threading.Barrier = barrier
            ) -> None:
                try:
                    barrier.wait(10)
                    scheduler.step(now)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=step, args=(s,)) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            run_waiting_jobs(any_db)
    finally:
        second_db.dispose()
    with any_db.read() as session:
        pairs = Counter(
            (rt, at) for rt, at in session.execute(select(Job.runtemplate_id, Job.schedule))
        )
        ticks = session.scalar(select(func.count()).select_from(ScheduledTick))
    assert len(pairs) == 200 * 3 and set(pairs.values()) == {1}
    assert ticks == 600


def test_batches_queue_each_due_template_once_and_announce_every_job(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "BATCH", 7)
    first = template(any_db, interv="i")
    with any_db.session() as session:
        rt = session.get_one(RunTemplate, first)
        more = [
            RunTemplate(
                app_id=rt.app_id,
                company_id=rt.company_id,
                name=f"rt {i}",
                interv="i",
                created=LONG_AGO,
            )
            for i in range(29)
        ]
        session.add_all(more)
        session.flush()
        templates = [first, *(m.id for m in more)]

    class Recorder:
        def __init__(self) -> None:
            self.created: list[int] = []

        def job_created(self, event: Any) -> None:
            self.created.append(event.job_id)

    recorder = Recorder()
    result = Scheduler(any_db, any_db.settings, job_hooks=[recorder]).step(
        utc(2026, 11, 28, 10, 0, 1)
    )
    assert len(result.created) == 30 and recorder.created == result.created
    with any_db.read() as session:
        by_template = Counter(session.scalars(select(Job.runtemplate_id)))
        entries = session.scalar(select(func.count()).select_from(ScheduleEntry))
        ticks = Counter(session.scalars(select(ScheduledTick.runtemplate_id)))
    assert by_template == ticks == Counter(templates) and entries == 30


def test_ten_thousand_templates_due_together_are_queued_quickly(sqlite_db: Database) -> None:
    rt = template(sqlite_db, interv="h")
    with sqlite_db.session() as session:
        first = session.get_one(RunTemplate, rt)
        session.execute(
            insert(RunTemplate),
            [
                {
                    "app_id": first.app_id,
                    "company_id": first.company_id,
                    "name": f"rt {i}",
                    "interv": "h",
                    "created": LONG_AGO,
                }
                for i in range(9_999)
            ],
        )
    scheduler = Scheduler(sqlite_db, sqlite_db.settings, job_hooks=[])
    began = time.monotonic()
    result = scheduler.step(utc(2026, 11, 28, 10, 0, 1))
    elapsed = time.monotonic() - began
    print(f"\n10,000 templates queued in {elapsed:.2f} s")
    assert len(result.created) == 10_000
    assert elapsed < 10
    with sqlite_db.read() as session:
        assert session.scalar(select(func.count()).select_from(ScheduleEntry)) == 10_000
        assert session.scalar(select(func.count()).select_from(ScheduledTick)) == 10_000


def test_the_scheduler_daemon_queues_due_jobs_and_stops_on_sigterm(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt = template(sqlite_db, interv="i")
    once = subprocess.run(
        [SCHEDULER, "--once"], env=daemon_env(sqlite_db), capture_output=True, timeout=60
    )
    assert once.returncode == 0, once.stderr
    assert len(jobs_of(sqlite_db, rt)) == 1
    run_waiting_jobs(sqlite_db)
    with daemons(sqlite_db, tmp_path, [[SCHEDULER]]) as (sch,):
        sch.wait_for_log("action=start")
        sch.signal(signal.SIGTERM)
        assert sch.wait(30) == 0
    assert "action=stop" in sch.log()


def test_the_scheduler_daemon_fires_the_next_tick_on_time(
    sqlite_db: Database, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    # A minutely rule delayed so that its next tick comes soon after the daemon started.
    delay = (now.second + 8) % 60
    rt = template(sqlite_db, interv="i", delay=delay, created=now)
    with daemons(sqlite_db, tmp_path, [[SCHEDULER]]) as (sch,):
        sch.wait_for_log("action=start")
        assert jobs_of(sqlite_db, rt) == [], "the daemon started too slowly for this test"
        (job,) = wait_until(lambda: jobs_of(sqlite_db, rt), 30, "the next tick's job")
        sch.signal(signal.SIGTERM)
        assert sch.wait(30) == 0
    assert job.schedule is not None and job.schedule.second == delay
    assert timedelta(0) <= job.created - job.schedule < timedelta(seconds=1)


def test_bulk_created_jobs_have_the_rows_create_job_writes(any_db: Database) -> None:
    from multiflexi.jobs.environment import load_env
    from multiflexi.jobs.service import create_job
    from multiflexi.scheduling.scheduler import JobRequest, bulk_create_jobs
    from multiflexi.secrets import Vault
    from multiflexi.storage.models import (
        CreData,
        Credential,
        CredentialType,
        CrTypeField,
        RunTplCred,
    )

    vault = Vault.from_settings(any_db.settings, any_db)
    _, company, rt = make_setup(
        any_db,
        executable="/bin/echo",
        cmdparams="{GREETING} --token {TOKEN} {RESULT_FILE}",
        fields={
            "GREETING": {"defval": "hello"},
            "TOKEN": {"type": "password"},
            "RESULT_FILE": {"defval": "out.json"},
        },
        config={"TOKEN": "s3cret"},
        company_env={"REGION": "eu"},
    )
    with any_db.session() as session:
        ct = CredentialType(uuid="ct-bulk", code="Bulk", name="Bulk")
        session.add(ct)
        session.flush()
        session.add(CrTypeField(credential_type_id=ct.id, keyname="API_KEY", secret=True))
        cred = Credential(name="bulk", company_id=company, credential_type_id=ct.id)
        session.add(cred)
        session.flush()
        session.add(
            CreData(
                credential_id=cred.id, name="API_KEY", value=vault.seal("k3y"), is_encrypted=True
            )
        )
        session.add(RunTplCred(runtemplate_id=rt, credential_id=cred.id))
    at = utc(2026, 11, 28, 10)
    single = create_job(any_db, any_db.settings, runtemplate_id=rt, at=at, schedule_type="daily")
    with any_db.session() as session:
        (made,) = bulk_create_jobs(
            session, any_db.settings, [JobRequest(session.get_one(RunTemplate, rt), at, "daily")]
        )

    def record(job_id: int) -> dict[str, object]:
        with any_db.read() as session:
            job = session.get_one(Job, job_id)
            entry = session.scalar(select(ScheduleEntry).where(ScheduleEntry.job == job_id))
        assert entry is not None

        def norm(text: str) -> str:
            return text.replace(f"/jobs/{job_id}", "/jobs/<id>")

        env = [
            (v.name, "<id>" if v.name == "MULTIFLEXI_JOB_ID" else norm(v.value), v.source, v.secret)
            for v in load_env(job.env, vault).values()
        ]
        return {
            "env": env,
            "argv": [norm(a) for a in job.argv],
            "command": norm(job.command),
            "workdir": norm(job.workdir),
            "entry": (entry.after, entry.priority),
            **{
                k: getattr(job, k)
                for k in (
                    "status",
                    "schedule",
                    "schedule_type",
                    "executor",
                    "app_version",
                    "launched_by",
                    "attempt",
                    "retry_of",
                    "overrides",
                    "company_id",
                    "app_id",
                )
            },
        }

    expected = record(single.id)
    assert record(made.id) == expected
    # Ids taken in advance (a sequence, or after the largest) leave the usual insert working.
    after = create_job(any_db, any_db.settings, runtemplate_id=rt, at=at)
    assert after.id > made.id > single.id
    names = {name for name, *_ in expected["env"]}  # type: ignore[attr-defined]
    assert {"GREETING", "TOKEN", "API_KEY", "REGION", "MULTIFLEXI_JOB_ID"} <= names
