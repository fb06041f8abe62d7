"""Jobs created in bulk (by the scheduler) store exactly what ``create_job`` stores, one job
at a time: every column of the job and of its queue entry, on every backend.

The same applications, companies and run templates are set up twice, in two empty
databases (ids start at 1 in both), so that a job created one by one and its bulk twin
get the same id and can be compared column by column. The templates are chosen to
defeat shortcuts: macros that refer to the job's id, directory and template, in values,
secrets, ``RESULT_FILE`` and the command line; template names that are themselves
macros or need quoting; own configuration; a command line that cannot be split.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multiflexi.config import settings_from_values
from multiflexi.env.layers import EnvVar
from multiflexi.jobs import environment
from multiflexi.jobs.service import create_job
from multiflexi.scheduling.bulk import JobRequest, bulk_create_jobs
from multiflexi.secrets import Vault
from multiflexi.storage import scratch
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Company,
    CompanyApp,
    CompanyEnv,
    ConfField,
    Configuration,
    Job,
    RunTemplate,
    ScheduleEntry,
)
from tests.conftest import ServerDatabases, make_settings

AT = datetime(2026, 11, 28, 10, tzinfo=UTC)
#: Set when the row is written, so different between any two runs.
_MOMENTS = {"created", "scheduled_at"}

#: name -> (executable, cmdparams, {field: (default, type)})
APPS: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "plain": ("/bin/true", "", {}),
    "tricky": (
        "/bin/echo",
        "{GREETING} --job {MULTIFLEXI_JOB_ID} --name '{MULTIFLEXI_RUNTEMPLATE_NAME}' "
        "--out {RESULT_FILE} --token={TOKEN} {EMPTY} {STATIC}",
        {
            "GREETING": ("hello {MULTIFLEXI_RUNTEMPLATE_ID}", "string"),
            "RESULT_FILE": ("{MULTIFLEXI_JOB_ID}.json", "string"),
            "TOKEN": ("tok-{MULTIFLEXI_JOB_ID}", "password"),
            "STATIC": ("s3cret", "password"),
            "LOG": ("${MULTIFLEXI_TMP}/log", "string"),
            "CHAIN": ("{GREETING}", "string"),
            "EMPTY": ("", "string"),
        },
    ),
    "fixed": ("/bin/cat", "{RESULT_FILE} {STATIC}", {"RESULT_FILE": ("/tmp/out.json", "string")}),
    "secret-name": (
        "/bin/echo",
        "{MULTIFLEXI_RUNTEMPLATE_NAME}",
        {
            "MULTIFLEXI_RUNTEMPLATE_NAME": ("ignored", "password"),
            "RESULT_FILE": ("./out//result.json", "string"),
        },
    ),
    "unsplittable": ("/bin/echo", "it's {MULTIFLEXI_JOB_ID}", {}),
}
COMPANIES = {"plain": {"REGION": "eu"}, "tricky": {"API_PASSWORD": "pw-{MULTIFLEXI_JOB_ID}"}}
NAMES = ["first", "{GREETING}", "it's a name", "ünïcode ✓", "${MULTIFLEXI_JOB_ID}"]


def build(db: Database) -> list[int]:
    """The applications, companies and templates; the same ids on every fresh database."""
    vault = Vault.from_settings(db.settings, db)
    ids = []
    with db.session() as s:
        companies = []
        for slug, env in COMPANIES.items():
            company = Company(name=f"Company {slug}", slug=slug)
            s.add(company)
            s.flush()
            s.add_all(CompanyEnv(company_id=company.id, keyword=k, value=v) for k, v in env.items())
            companies.append(company)
        for number, (code, (exe, params, fields)) in enumerate(APPS.items()):
            app = App(
                name=f"app {code}",
                executable=exe,
                cmdparams=params,
                uuid=f"00000000-0000-0000-0000-{number:012d}",
                code=code[:6].upper(),
                version="1.0",
            )
            for position, (key, (default, kind)) in enumerate(fields.items()):
                app.fields.append(
                    ConfField(keyname=key, position=position, type=kind, defval=default)
                )
            s.add(app)
            s.flush()
            for company in companies:
                s.add(CompanyApp(company_id=company.id, app_id=app.id))
                for name in NAMES:
                    rt = RunTemplate(app_id=app.id, company_id=company.id, name=name, interv="i")
                    s.add(rt)
                    s.flush()
                    ids.append(rt.id)
                    if code == "tricky" and name == "first":  # a template of its own shape
                        s.add(
                            Configuration(
                                runtemplate_id=rt.id,
                                app_id=app.id,
                                company_id=company.id,
                                name="TOKEN",
                                value=vault.seal("cfg-{MULTIFLEXI_RUNTEMPLATE_ID}"),
                                config_type="password",
                                encrypted=True,
                            )
                        )
    return ids


def stored(db: Database) -> list[dict[str, Any]]:
    """Every job column but the moments of writing, secrets opened; and the queue entry."""
    vault = Vault.from_settings(db.settings, db)
    out = []
    with db.read() as s:
        entries = {e.job: e for e in s.scalars(select(ScheduleEntry))}
        for job in s.scalars(select(Job).order_by(Job.id)):
            row = {c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs}
            for moment in _MOMENTS:
                row.pop(moment)
            row["env"] = [
                (v.name, v.value, v.source, v.secret)
                for v in environment.load_env(job.env, vault).values()
            ]
            entry = entries[job.id]
            row["queue"] = (entry.after, entry.priority)
            out.append(row)
    return out


@contextmanager
def twin(db: Database, tmp_path: Path, servers: ServerDatabases) -> Iterator[Database]:
    """A second empty database like ``db``, with the same data directory and master key."""
    if db.dialect == "sqlite":
        settings = settings_from_values(
            {**db.settings.raw, "DB_DATABASE": str(tmp_path / "twin.sqlite")}
        )
        other = Database(settings)
    else:
        scratch.empty(db)
        other = Database(make_settings(db.dialect, tmp_path, servers))
    try:
        yield other
    finally:
        other.dispose()


def one_by_one(db: Database, rt_ids: list[int]) -> None:
    for rt_id in rt_ids:
        create_job(db, db.settings, runtemplate_id=rt_id, at=AT, schedule_type="minutely")


def in_bulk(db: Database, rt_ids: list[int]) -> None:
    with db.session() as s:
        requests = [JobRequest(s.get_one(RunTemplate, rt_id), AT, "minutely") for rt_id in rt_ids]
        assert len(bulk_create_jobs(s, db.settings, requests)) == len(rt_ids)


def compare(
    db: Database,
    tmp_path: Path,
    servers: ServerDatabases,
    pick: Callable[[list[int]], list[int]] = lambda ids: ids,
) -> list[dict[str, Any]]:
    """The jobs of the templates ``pick`` chooses, one by one and in bulk: equal."""
    rt_ids = pick(build(db))
    one_by_one(db, rt_ids)
    expected = stored(db)
    with twin(db, tmp_path, servers) as other:
        assert pick(build(other)) == rt_ids
        in_bulk(other, rt_ids)
        assert stored(other) == expected
    return expected


def test_bulk_jobs_equal_jobs_created_one_by_one(
    any_db: Database, tmp_path: Path, server_databases: ServerDatabases
) -> None:
    expected = compare(any_db, tmp_path, server_databases)
    assert len(expected) == len(APPS) * len(COMPANIES) * len(NAMES)
    by_name = {(r["app_id"], r["runtemplate_id"]): r for r in expected}
    tricky = next(r for r in by_name.values() if "--job" in r["command"])
    # The cases are what they claim: the job's own values reached argv, redacted.
    assert str(tricky["id"]) in tricky["argv"] and "••••••••" in tricky["command"]


def test_bulk_jobs_of_one_template_several_times_equal_jobs_created_one_by_one(
    any_db: Database, tmp_path: Path, server_databases: ServerDatabases
) -> None:
    """As the benchmarks queue jobs; on MariaDB the ids then come from inserting first."""
    expected = compare(any_db, tmp_path, server_databases, lambda ids: [ids[7]] * 3 + [ids[0]])
    assert [r["runtemplate_id"] for r in expected][:3] == [expected[0]["runtemplate_id"]] * 3


def test_bulk_stays_exact_when_the_injected_layer_takes_more_of_the_job(
    sqlite_db: Database,
    tmp_path: Path,
    server_databases: ServerDatabases,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the injected layer ever takes something new from the job, bulk creation notices
    and builds every environment the long way rather than copy a stale value."""
    original: Callable[..., list[Any]] = environment.injected_layer

    def more(**kwargs: Any) -> list[Any]:
        layer = original(**kwargs)
        job = kwargs["job"]
        return [*layer, EnvVar("MULTIFLEXI_JOB_TWICE", str(job.id * 2), "multiflexi")]

    monkeypatch.setattr(environment, "injected_layer", more)
    expected = compare(sqlite_db, tmp_path, server_databases)
    twice = [dict((n, v) for n, v, *_ in r["env"])["MULTIFLEXI_JOB_TWICE"] for r in expected]
    assert twice == [str(r["id"] * 2) for r in expected]


@pytest.mark.parametrize(
    "ids",
    [[3, 4, 5, 6], [6, 4, 5, 3], [3, 5, 9], [4, 4, 5], [7], list(range(2, 1203, 2))],
    ids=["range", "unordered-range", "gaps", "duplicate", "one", "many"],
)
def test_among_selects_exactly_the_ids_given(any_db: Database, ids: list[int]) -> None:
    from multiflexi.scheduling.rows import among

    with any_db.session() as s:
        company = Company(name="Among", slug="among")
        s.add(company)
        s.flush()
        s.add_all(CompanyEnv(company_id=company.id, keyword=f"K{i}", value="") for i in range(1300))
    with any_db.read() as s:
        found = s.scalars(select(CompanyEnv.id).where(among(s, CompanyEnv.id, ids)))
        assert sorted(found) == sorted(set(ids))


def test_a_row_that_breaks_a_constraint_fails_as_a_sqlalchemy_error(any_db: Database) -> None:
    """Also through PostgreSQL's COPY: the scheduler retries on this very exception."""
    from sqlalchemy import Table
    from sqlalchemy.exc import IntegrityError

    from multiflexi.scheduling.rows import JSONText, insert_rows

    app_id, company_id, rt_id = build_one(any_db)
    job = {
        "id": 41,
        "app_id": app_id,
        "company_id": company_id,
        "runtemplate_id": rt_id,
        "created": AT,
        "env": JSONText('[{"name": "A", "value": "\\u00fc\\t", "source": "s", "secret": false}]'),
        "overrides": {},
        "argv": ["/bin/true"],
    }
    table = Job.__table__
    assert isinstance(table, Table)
    with pytest.raises(IntegrityError), any_db.session() as s:
        insert_rows(s, table, [job, job])
    with any_db.session() as s:  # the connection is usable again
        insert_rows(s, table, [job])
    with any_db.read() as s:
        stored = s.get_one(Job, 41)
        assert stored.env == [{"name": "A", "value": "\u00fc\t", "source": "s", "secret": False}]
        assert (stored.reason, stored.host, stored.status) == ("", "", "loaded")


def build_one(db: Database) -> tuple[int, int, int]:
    """An application, a company and a template of both: their ids."""
    with db.session() as s:
        company = Company(name="One", slug="one")
        app = App(name="one", executable="/bin/true", uuid="one", code="ONE")
        s.add_all([company, app])
        s.flush()
        rt = RunTemplate(app_id=app.id, company_id=company.id, name="one", interv="i")
        s.add(rt)
        s.flush()
        return app.id, company.id, rt.id


def test_a_connection_lost_during_copy_is_reported_as_lost(any_db: Database) -> None:
    """PostgreSQL writes jobs with COPY, outside SQLAlchemy's execute: a dropped
    connection must still end as a transient error (the transaction is retried) and leave
    no broken connection behind."""
    if any_db.dialect != "pgsql":
        pytest.skip("COPY is PostgreSQL's")
    from sqlalchemy import Table, text

    from multiflexi.errors import DatabaseError
    from multiflexi.scheduling.rows import insert_rows

    app_id, company_id, rt_id = build_one(any_db)
    job = {
        "app_id": app_id,
        "company_id": company_id,
        "runtemplate_id": rt_id,
        "created": AT,
        "env": [],
        "overrides": {},
        "argv": [],
    }
    table = Job.__table__
    assert isinstance(table, Table)
    with (
        pytest.raises(DatabaseError) as caught,
        any_db.engine.connect() as killer,
        any_db.session() as s,
    ):
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        insert_rows(s, table, [job])
    assert getattr(caught.value, "transient", False)
    with any_db.session() as s:  # the pool hands out a working connection again
        insert_rows(s, table, [job])


def test_many_large_rows_with_quotes_and_percent_signs_are_stored_exactly(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On MariaDB a value shared by every row is quoted once into the statement, and the
    rows go as multi-row INSERTs no longer than PyMySQL's limit (made small here, so
    that they take several): nothing is lost or changed on the way, on any backend."""
    from sqlalchemy import Table, event

    from multiflexi.scheduling.rows import JSONText, insert_rows

    app_id, company_id, rt_id = build_one(any_db)
    shared = "50% of 'it' \\ %s %(command)s done \u00fc"
    rows = []
    for job_id in range(100, 160):
        value = f"{job_id} %s %(env)s %% 'q' \"d\" \\ \u00fc\n" + "x" * 2000
        env = [{"name": "A", "value": value, "source": "s", "secret": False}]
        rows.append(
            {
                "id": job_id,
                "app_id": app_id,
                "company_id": company_id,
                "runtemplate_id": rt_id,
                "created": AT,
                "env": JSONText(json.dumps(env)),
                "overrides": {},
                "argv": ["/bin/true", str(job_id)],
                "command": shared,
            }
        )
    if any_db.dialect == "mysql":
        import pymysql.cursors

        monkeypatch.setattr(pymysql.cursors.Cursor, "max_stmt_length", 10_000)
    inserts: list[str] = []
    event.listen(
        any_db.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: inserts.append(statement),
    )
    table = Job.__table__
    assert isinstance(table, Table)
    with any_db.session() as s:
        insert_rows(s, table, rows)
    with any_db.read() as s:
        found = s.scalars(select(Job).where(Job.id >= 100).order_by(Job.id)).all()
        assert [(j.id, j.env, j.argv, j.command, j.status) for j in found] == [
            (r["id"], json.loads(r["env"].text), r["argv"], shared, "loaded") for r in rows
        ]
    if any_db.dialect == "mysql":
        job_inserts = [sql for sql in inserts if sql.startswith("INSERT INTO job")]
        assert len(job_inserts) >= 12  # 60 rows of 2 KB, 10 KB a statement
        assert all(len(sql.encode()) <= 10_000 for sql in job_inserts)
        # The shared value is in the statement once per row, its % sign as it is.
        assert all("50% of" in sql and "50%% of" not in sql for sql in job_inserts)
