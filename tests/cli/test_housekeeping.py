"""storage:usage, prune, queue:fix and housekeeping through the real CLI entry point."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from multiflexi.storage.database import Database
from multiflexi.storage.models import Job, Lock
from tests.conftest import Cli
from tests.factories import make_setup
from tests.storage.test_housekeeping import NOW, Seed, count, job_ids, pruned_ids, small_world

PRUNE_KEYS = {
    "dry_run",
    "jobs_deleted",
    "jobs_artifacts_pruned",
    "artifacts_deleted",
    "artifacts_pruned",
    "bytes_freed",
    "chunks_deleted",
    "batches",
    "max_batch_seconds",
    "seconds",
    "stopped",
    "space",
    "scope",
}


@pytest.fixture
def world(sqlite_db: Database) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return small_world(sqlite_db)


def test_storage_usage_reports_bytes_per_company_app_template_month_and_growth(
    cli: Cli, world: tuple[tuple[int, int, int], tuple[int, int, int]]
) -> None:
    data = cli.json("storage:usage", "--top", "2")
    assert set(data) == {
        "backend",
        "company_id",
        "totals",
        "by_company",
        "by_app",
        "by_runtemplate",
        "by_month",
        "largest",
        "growth",
    }
    assert data["totals"]["total_bytes"] == 14 * 80 + 2 * 768
    assert set(data["totals"]) == {
        "files_bytes",
        "output_bytes",
        "total_bytes",
        "pruned_bytes",
        "artifacts",
        "jobs",
    }
    assert len(data["by_company"]) == 2 and len(data["largest"]) == 2
    assert data["largest"][0] == {
        "id": data["largest"][0]["id"],
        "job_id": 13,
        "filename": "big.bin",
        "kind": "file",
        "size": 768,
        "created": data["largest"][0]["created"],
        "company_id": world[0][1],
        "runtemplate_id": world[0][2],
    }
    assert len(data["growth"]["per_day"]) == 30
    text = cli.ok("storage:usage").stdout
    assert "By company:" in text and "Largest artifacts:" in text and "big.bin" in text
    assert "2.6 KiB" in text  # 14 * 80 + 2 * 768 bytes


def test_prune_dry_run_shows_what_would_go_and_changes_nothing(
    cli: Cli, sqlite_db: Database, world: object
) -> None:
    before = job_ids(sqlite_db)
    data = cli.json("prune", "--dry-run", "--keep", "2")
    assert set(data) == PRUNE_KEYS
    assert data["dry_run"] is True and data["jobs_deleted"] == 6 and data["bytes_freed"] == 480
    assert data["space"] is None and data["scope"]["mode"] == "policy"
    assert job_ids(sqlite_db) == before
    text = cli.ok("prune", "--dry-run", "--keep", "2").stdout
    assert text.startswith("Would delete 6 jobs (12 artifacts)")


def test_prune_without_a_terminal_refuses_unless_told_yes(
    cli: Cli, sqlite_db: Database, world: object
) -> None:
    before = job_ids(sqlite_db)
    refused = cli("prune", "--keep", "2")
    assert refused.exit_code == 1
    assert "Refusing without a terminal: add --yes" in refused.stderr
    assert "Delete 6 jobs" in refused.stderr
    assert job_ids(sqlite_db) == before
    data = cli.json("prune", "--keep", "2", "--yes")
    assert set(data) == PRUNE_KEYS
    assert data["dry_run"] is False and data["jobs_deleted"] == 6
    assert data["artifacts_deleted"] == 12 and data["bytes_freed"] == 480
    assert data["space"]["backend"] == "sqlite"
    assert data["space"]["action"] == "incremental_vacuum"  # new files are created so
    assert len(job_ids(sqlite_db)) == len(before) - 6


def test_job_show_says_when_a_jobs_artifacts_were_pruned(
    cli: Cli, sqlite_db: Database, world: object
) -> None:
    cli.env["MULTIFLEXI_RETENTION_ARTIFACT_DAYS"] = "30"
    cli.env["MULTIFLEXI_RETENTION_KEEP_LAST"] = "2"
    cli.ok("prune", "--yes")
    shown = cli.json("job:show", "13")
    assert shown["artifacts_pruned"] is True
    assert {a["state"] for a in shown["artifacts"]} == {"pruned"}
    assert {a["filename"]: a["size"] for a in shown["artifacts"]}["big.bin"] == 768
    text = cli.ok("job:show", "13").stdout
    assert "artifacts_pruned" in text and "pruned" in text


def test_prune_takes_the_upstream_spelling(cli: Cli, sqlite_db: Database, world: object) -> None:
    logs = cli.json("prune", "--logs", "--keep", "3", "--yes")
    assert logs["scope"]["mode"] == "logs" and logs["jobs_deleted"] == 0
    assert pruned_ids(sqlite_db) == {16, 15, 14, 13, 11, 2, 1}
    jobs = cli.json("prune", "--jobs", "--keep", "1", "-y")
    assert jobs["scope"]["mode"] == "jobs"
    assert job_ids(sqlite_db) == {20, 19, 12, 5}


def test_prune_options_scope_and_override_the_policy(
    cli: Cli, sqlite_db: Database, world: tuple[tuple[int, int, int], tuple[int, int, int]]
) -> None:
    _a, b = world
    data = cli.json("prune", "--older-than", "150d", "--keep", "0", "--runtemplate", b[2], "-y")
    assert data["jobs_deleted"] == 5 and data["scope"]["runtemplate_id"] == b[2]
    assert job_ids(sqlite_db) == set(range(11, 21))
    text = cli.ok("prune", "--older-than", "450d", "--keep", "0", "--company", world[0][1], "-y")
    assert text.stdout.startswith("Deleted 1 jobs")
    assert cli("prune", "--older-than", "soon", "--dry-run").exit_code == 1
    missing = cli("prune", "--company", "nobody", "--dry-run")
    assert missing.exit_code == 1 and "company nobody not found" in missing.stderr


def test_prune_vacuum_compacts_the_database(cli: Cli, world: object) -> None:
    data = cli.json("prune", "--keep", "2", "--vacuum", "--yes")
    assert data["space"]["action"] == "vacuum" and data["space"]["auto_vacuum"] == "incremental"
    again = cli.json("prune", "--keep", "0", "--older-than", "0d", "--yes")
    assert again["space"]["action"] == "incremental_vacuum"


def test_queue_fix_reports_what_it_repaired(cli: Cli, sqlite_db: Database) -> None:
    rt = make_setup(sqlite_db)
    seed = Seed()
    seed.job(1, rt, "running", 0)
    seed.job(2, rt, "loaded", 0)
    seed.insert(sqlite_db)
    with sqlite_db.session() as s:
        s.execute(update(Job).where(Job.id == 1).values(lease_until=NOW - timedelta(hours=1)))
        s.execute(update(Job).where(Job.id == 2).values(created=NOW - timedelta(hours=2)))
    aside = sqlite_db.settings.job_root / ".leftover" / "9-20261203T000000.000000Z"
    aside.mkdir(parents=True)
    dry = cli.json("queue:fix", "--dry-run")
    assert dry["dry_run"] is True and dry["fixed"]["lost_jobs"] == 1
    assert set(dry) == {"dry_run", "fixed", "total", "ids", "recovery", "errors", "leftover_dirs"}
    assert dry["leftover_dirs"] == [str(aside)]
    text = cli.ok("queue:fix").stdout
    assert text.startswith("Fixed:") and "lost jobs: 1 (1)" in text
    assert "never queued jobs: 1 (2)" in text
    kept = "Found in a new job's place and kept aside (1; removed after 7 days):"
    assert f"{kept}\n  {aside}" in text
    aside.rmdir()
    assert cli.ok("queue:fix").stdout.strip() == "Nothing to fix."


def test_housekeeping_runs_everything_once_and_respects_the_lock(
    cli: Cli, sqlite_db: Database, world: object
) -> None:
    cli.env["MULTIFLEXI_RETENTION_KEEP_LAST"] = "2"  # the configured policy applies
    refused = cli("housekeeping")
    assert refused.exit_code == 1 and "add --yes" in refused.stderr
    before = job_ids(sqlite_db)
    dry = cli.json("housekeeping", "--dry-run")
    assert dry["dry_run"] is True and set(dry) == {
        "dry_run",
        "orphans",
        "prune",
        "space",
        "seconds",
    }
    assert dry["prune"]["jobs_deleted"] == 6 and job_ids(sqlite_db) == before
    data = cli.json("housekeeping", "--yes")
    assert data["orphans"]["total"] == 0 and data["prune"]["jobs_deleted"] == 6
    assert len(job_ids(sqlite_db)) == len(before) - 6
    assert count(sqlite_db, Lock) == 0
    with sqlite_db.session() as s:
        s.add(Lock(name="housekeeping", holder="other-host", until=NOW + timedelta(hours=1)))
    skipped = cli.json("housekeeping", "--yes")
    assert skipped["skipped"] == "another instance holds the lock"
    assert skipped["holder"] == "other-host"
    assert "Skipped: another instance" in cli.ok("housekeeping", "-y").stdout
