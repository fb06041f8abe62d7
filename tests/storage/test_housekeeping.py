"""Pruning by the retention policy on every backend, and the seeding helpers of the
housekeeping tests.

The helpers at the top seed jobs with bulk inserts; the scale test imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from multiflexi.config import Settings, settings_from_values
from multiflexi.errors import NotFound
from multiflexi.housekeeping.policy import Forced
from multiflexi.housekeeping.prune import PruneRequest, apply_prune, plan_prune, preview
from multiflexi.jobs.service import job_record
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    Artifact,
    ArtifactChunk,
    Company,
    Job,
    JobAction,
    RunTemplate,
    ScheduleEntry,
)
from tests.factories import make_setup

NOW = datetime.now(UTC).replace(microsecond=0)
FINAL = {"success", "failed", "lost", "cancelled"}


# -- seeding ----------------------------------------------------------------------------


@dataclass
class Seed:
    """Rows to bulk-insert; ids are given explicitly so tests know them in advance."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def job(
        self,
        job_id: int,
        rt: tuple[int, int, int],
        status: str,
        age_days: float,
        *,
        output: int = 64,
        big_file: bool = False,
        now: datetime = NOW,
    ) -> None:
        """A job of template ``rt`` = (app, company, template) that ended ``age_days`` ago."""
        app_id, company_id, rt_id = rt
        ended = now - timedelta(days=age_days)
        final = status in FINAL
        self.jobs.append(
            {
                "id": job_id,
                "app_id": app_id,
                "company_id": company_id,
                "runtemplate_id": rt_id,
                "status": status,
                "created": ended - timedelta(minutes=5),
                "schedule": now + timedelta(days=1) if status == "scheduled" else None,
                "begin": ended - timedelta(minutes=1) if status in FINAL | {"running"} else None,
                "end": ended if final else None,
                "exitcode": (0 if status == "success" else 1) if final else None,
                "lease_until": now + timedelta(days=1) if status == "running" else None,
                "artifacts_pruned": False,
            }
        )
        if status == "scheduled":
            self.queue.append({"job": job_id, "after": now + timedelta(days=1)})
        if status in ("loaded", "scheduled"):
            return
        base = job_id * 10
        for offset, (kind, name, size) in enumerate(
            (("stdout", "stdout.txt", output), ("stderr", "stderr.txt", output // 4))
        ):
            self.artifacts.append(self._artifact(base + offset, job_id, kind, name, b"o" * size))
        if big_file:
            # Stored in chunk rows, as large content is, to exercise chunked deletion.
            art = self._artifact(base + 2, job_id, "file", "big.bin", None)
            art["size"] = 3 * 256
            self.artifacts.append(art)
            for seq in range(3):
                self.chunks.append({"artifact_id": base + 2, "seq": seq, "data": b"c" * 256})
        if final:
            self.actions.append({"job_id": job_id, "mode": "success", "action": "Noop", "ok": True})

    @staticmethod
    def _artifact(
        art_id: int, job_id: int, kind: str, name: str, content: bytes | None
    ) -> dict[str, Any]:
        return {
            "id": art_id,
            "job_id": job_id,
            "filename": name,
            "kind": kind,
            "content": content,
            "size": len(content or b""),
            "state": "complete",
            "created": NOW - timedelta(days=1),
        }

    def insert(self, db: Database) -> None:
        """Bulk insert through the driver: fast enough to seed 50,000 jobs in seconds."""
        tables: Sequence[tuple[Any, list[dict[str, Any]]]] = (
            (Job, self.jobs),
            (ScheduleEntry, self.queue),
            (Artifact, self.artifacts),
            (ArtifactChunk, self.chunks),
            (JobAction, self.actions),
        )
        with db.engine.begin() as conn:
            for model, rows in tables:
                if rows:
                    _raw_insert(conn, db.dialect, model.__table__, rows)
            if db.dialect == "pgsql":
                # Explicit ids do not move PostgreSQL sequences; later inserts need them to.
                for table in ("job", "schedule", "artifacts", "artifact_chunk", "job_action"):
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                        )
                    )
        if db.dialect == "pgsql":
            # A live database has planner statistics (autovacuum); a fresh bulk load not yet.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))


def _raw_insert(conn: Any, dialect: str, table: Any, rows: list[dict[str, Any]]) -> None:
    """Rows as the driver wants them, column defaults filled in once per table.

    SQLAlchemy's per-row parameter processing costs more than the inserts themselves at
    this size, so the values are converted here: UTC datetimes stored naive (as text in
    SQLite's own format), JSON as text.
    """
    import json

    from multiflexi.storage.types import UTCDateTime

    given = rows[0].keys()
    columns = [c for c in table.columns if c.key in given or c.default is not None]
    fixed: dict[str, Any] = {}
    for col in columns:
        if col.key not in given:
            fixed[col.key] = col.default.arg if col.default.is_scalar else col.default.arg(None)

    def convert(col: Any) -> Any:
        if isinstance(col.type, UTCDateTime):
            fmt = "%Y-%m-%d %H:%M:%S.%f"

            def when(v: datetime | None) -> Any:
                if v is None:
                    return None
                naive = v.astimezone(UTC).replace(tzinfo=None)
                return naive.strftime(fmt) if dialect == "sqlite" else naive

            return when
        if col.type.__class__.__name__ == "JSON":
            return lambda v: json.dumps(v)
        return lambda v: v

    converters = [convert(c) for c in columns]
    values = [
        tuple(
            fn(row[c.key] if c.key in given else fixed[c.key])
            for c, fn in zip(columns, converters, strict=True)
        )
        for row in rows
    ]
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in columns)
    mark = "?" if dialect == "sqlite" else "%s"
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    head = f"INSERT INTO {quote(table.name)} ({names}) VALUES "
    if dialect == "pgsql":
        # COPY: one stream instead of a round trip (and a parse) per row.
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
    else:
        for start in range(0, len(values), 5000):
            conn.exec_driver_sql(head + one, values[start : start + 5000])


def add_templates(db: Database, rt: tuple[int, int, int], count: int, **values: Any) -> list[int]:
    """More run templates of the same app and company as ``rt``."""
    with db.session() as s:
        rows = [
            RunTemplate(app_id=rt[0], company_id=rt[1], name=f"t{i}", **values)
            for i in range(count)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def with_retention(db: Database, **values: str) -> Settings:
    keys = {f"MULTIFLEXI_RETENTION_{k.upper()}": v for k, v in values.items()}
    return settings_from_values({**db.settings.raw, **keys})


def job_ids(db: Database) -> set[int]:
    with db.read() as s:
        return set(s.scalars(select(Job.id)))


def pruned_ids(db: Database) -> set[int]:
    with db.read() as s:
        return set(s.scalars(select(Job.id).where(Job.artifacts_pruned.is_(True))))


def count(db: Database, model: Any, *where: Any) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# -- prune ------------------------------------------------------------------------------


def small_world(db: Database) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two templates of two companies with a spread of old and new jobs."""
    a = make_setup(db, slug="alpha")
    b = make_setup(db, slug="beta")
    seed = Seed()
    # Template a, newest first: ids 20..11.
    for job_id, status, age in [
        (20, "running", 900),
        (19, "success", 1),
        (18, "success", 100),
        (17, "failed", 400),
        (16, "success", 100),
        (15, "cancelled", 400),
        (14, "lost", 400),
        (13, "success", 50),
        (12, "scheduled", 900),
        (11, "success", 500),
    ]:
        seed.job(job_id, a, status, age, big_file=job_id in (18, 13))
    for job_id in range(1, 6):  # template b: five old successes
        seed.job(job_id, b, "success", 200)
    seed.insert(db)
    return a, b


def test_prune_deletes_what_the_policy_says_with_everything_it_owns(any_db: Database) -> None:
    a, _b = small_world(any_db)
    settings = with_retention(
        any_db,
        success_days="90",
        failed_days="365",
        keep_last="2",
        keep_failures="1",
        artifact_days="30",
    )
    plan = plan_prune(any_db, settings, now=NOW)
    # a: 19, 18 are the last two finished, 17 the last failure, 20 and 12 unfinished;
    # b: 5 and 4 are its last two.
    assert sorted(plan.delete) == [1, 2, 3, 11, 14, 15, 16]
    assert plan.prune == [13]
    shown = preview(plan).as_dict()

    result = apply_prune(any_db, plan)

    assert result.jobs_deleted == shown["jobs_deleted"] == 7
    assert result.artifacts_deleted == shown["artifacts_deleted"] == 2 * 7
    assert result.jobs_artifacts_pruned == shown["jobs_artifacts_pruned"] == 1
    assert result.artifacts_pruned == shown["artifacts_pruned"] == 3
    assert result.bytes_freed == shown["bytes_freed"] == 7 * 80 + 80 + 768
    assert result.chunks_deleted == 3
    assert job_ids(any_db) == {4, 5, 12, 13, 17, 18, 19, 20}
    assert pruned_ids(any_db) == {13}
    with any_db.read() as s:
        arts = s.scalars(select(Artifact).where(Artifact.job_id == 13)).all()
        assert {(x.filename, x.state, x.size, x.content) for x in arts} == {
            ("stdout.txt", "pruned", 64, None),
            ("stderr.txt", "pruned", 16, None),
            ("big.bin", "pruned", 768, None),
        }
        record = job_record(s, s.get_one(Job, 13))
        assert record["artifacts_pruned"] is True
        untouched = s.scalars(select(Artifact.state).where(Artifact.job_id == 18)).all()
        assert set(untouched) == {"complete"}
    assert count(any_db, ArtifactChunk) == 3  # job 18's chunks, kept with its job
    assert count(any_db, JobAction, JobAction.job_id.in_([1, 11, 14])) == 0
    assert count(any_db, ScheduleEntry, ScheduleEntry.job == 12) == 1
    assert a[2] > 0
    # A second run finds nothing left to do.
    again = plan_prune(any_db, settings, now=NOW)
    assert again.delete == [] and again.prune == []


def test_prune_scoped_to_a_company_or_a_template_touches_nothing_else(any_db: Database) -> None:
    a, b = small_world(any_db)
    with any_db.read() as s:
        slug_b = s.scalar(select(Company.slug).where(Company.id == b[1]))
    everything = Forced(keep=0, older_than=timedelta(0))
    by_slug = PruneRequest(company=slug_b, forced=everything)
    by_id = PruneRequest(company=str(b[1]), forced=everything)
    by_template = PruneRequest(runtemplate_id=b[2], forced=everything)
    for request in (by_slug, by_id, by_template):
        assert sorted(plan_prune(any_db, any_db.settings, request, now=NOW).delete) == [
            1,
            2,
            3,
            4,
            5,
        ]
    apply_prune(any_db, plan_prune(any_db, any_db.settings, by_template, now=NOW))
    assert job_ids(any_db) == set(range(11, 21))
    with pytest.raises(NotFound):
        plan_prune(any_db, any_db.settings, PruneRequest(company="nobody"))
    with pytest.raises(NotFound):
        plan_prune(any_db, any_db.settings, PruneRequest(runtemplate_id=999_999))
    assert a[2] != b[2]


def test_per_template_overrides_beat_the_global_policy(any_db: Database) -> None:
    a, b = small_world(any_db)
    settings = with_retention(any_db, keep_last="0", keep_failures="0")
    plan = plan_prune(any_db, settings, now=NOW)
    assert sorted(plan.delete) == [1, 2, 3, 4, 5, 11, 14, 15, 16, 17, 18]
    with any_db.session() as s:
        s.execute(update(RunTemplate).where(RunTemplate.id == b[2]).values(keep_success_days=365))
        s.execute(update(RunTemplate).where(RunTemplate.id == a[2]).values(keep_last=20))
    plan = plan_prune(any_db, settings, now=NOW)
    assert plan.delete == [] and plan.prune == []


def test_logs_mode_prunes_only_output_and_keeps_every_record(any_db: Database) -> None:
    a, _b = small_world(any_db)
    forced = Forced(keep=3, count_only=True, logs_only=True)
    plan = plan_prune(any_db, any_db.settings, PruneRequest(forced=forced), now=NOW)
    result = apply_prune(any_db, plan)
    # Finished jobs of a, newest first: 19 18 17 16 15 14 13 11 -> all but 19 18 17.
    assert pruned_ids(any_db) == {16, 15, 14, 13, 11, 2, 1}
    assert result.jobs_deleted == 0 and len(job_ids(any_db)) == 15
    with any_db.read() as s:
        states = dict(
            s.execute(select(Artifact.kind, Artifact.state).where(Artifact.job_id == 13)).all()
        )
    assert states == {"stdout": "pruned", "stderr": "pruned", "file": "complete"}
    assert count(any_db, ArtifactChunk) == 6  # result files keep their content
    assert a[2] > 0


def test_jobs_mode_keeps_the_newest_n_of_every_template(any_db: Database) -> None:
    small_world(any_db)
    plan = plan_prune(
        any_db, any_db.settings, PruneRequest(forced=Forced(keep=1, count_only=True)), now=NOW
    )
    apply_prune(any_db, plan, batch_size=2)
    assert job_ids(any_db) == {20, 19, 12, 5}
