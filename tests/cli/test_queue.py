"""queue:* and status through the real CLI entry point, as text and as JSON."""

from __future__ import annotations

from datetime import timedelta

from multiflexi import workers
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job
from multiflexi.storage.database import Database
from multiflexi.storage.migrations import HEAD
from multiflexi.storage.models import Company, Job
from multiflexi.storage.types import utcnow
from tests.conftest import Cli
from tests.factories import make_setup


def setup_queue(db: Database) -> dict[str, int]:
    """Two companies; three due jobs, one for later, one running."""
    _, acme, rt_a = make_setup(db, cmdparams="-c 'print(1)'", overlap="allow", slug="acme")
    _, beta, rt_b = make_setup(db, cmdparams="-c 'print(2)'", slug="beta")
    s = db.settings
    ids = {
        "a1": create_job(db, s, runtemplate_id=rt_a).id,
        "a2": create_job(db, s, runtemplate_id=rt_a).id,
        "b1": create_job(db, s, runtemplate_id=rt_b).id,
        "later": create_job(db, s, runtemplate_id=rt_b, at=utcnow() + timedelta(hours=2)).id,
        "run": create_job(db, s, runtemplate_id=rt_a).id,
    }
    claim_job(db, ids["run"], "exec@test", 60)
    return {**ids, "rt_a": rt_a, "rt_b": rt_b, "acme": acme, "beta": beta}


def test_queue_status_counts_due_oldest_running_and_companies(
    cli: Cli, sqlite_db: Database
) -> None:
    ids = setup_queue(sqlite_db)
    data = cli.json("queue:status")
    assert data["statuses"]["scheduled"] == 4 and data["statuses"]["running"] == 1
    assert data["waiting"] == 4 and data["due_now"] == 3
    assert data["oldest_due"]["job_id"] == ids["a1"]
    (running,) = data["running"]
    assert running["job_id"] == ids["run"] and running["worker"] == "exec@test"
    per = {c["company_id"]: c for c in data["companies"]}
    assert (per[ids["acme"]]["due_now"], per[ids["acme"]]["running"]) == (2, 1)
    assert (per[ids["beta"]]["waiting"], per[ids["beta"]]["due_now"]) == (2, 1)
    text = cli.ok("queue:overview").stdout
    assert "due now" in text and "exec@test" in text and "Per company" in text


def test_queue_list_shows_waiting_jobs_in_run_order(cli: Cli, sqlite_db: Database) -> None:
    ids = setup_queue(sqlite_db)
    rows = cli.json("queue:list")
    assert [r["job_id"] for r in rows] == [ids["a1"], ids["a2"], ids["b1"], ids["later"]]
    assert {"not_before", "runtemplate", "app", "company"} <= set(rows[0])
    assert [r["job_id"] for r in cli.json("queue:list", "--limit", "1", "--offset", "3")] == [
        ids["later"]
    ]
    assert "not_before" in cli.ok("queue:list").stdout
    cli.ok("queue:clear", "--yes")
    assert cli.ok("queue:list").stdout.strip() == "The queue is empty."


def test_queue_clear_asks_first_and_refuses_without_a_terminal(
    cli: Cli, sqlite_db: Database
) -> None:
    setup_queue(sqlite_db)
    res = cli("queue:clear")
    assert res.exit_code == 1 and "add --yes" in res.stderr
    assert cli.json("queue:status")["waiting"] == 4


def test_queue_clear_cancels_matching_waiting_jobs_with_a_reason(
    cli: Cli, sqlite_db: Database
) -> None:
    ids = setup_queue(sqlite_db)
    with sqlite_db.read() as session:
        slug = session.get_one(Company, ids["beta"]).slug
    data = cli.json("queue:truncate", "--company", slug, "--yes")
    assert sorted(data["jobs"]) == sorted([ids["b1"], ids["later"]])
    data = cli.json("queue:clear", "--runtemplate", ids["rt_a"], "--yes")
    assert sorted(data["jobs"]) == sorted([ids["a1"], ids["a2"]])
    with sqlite_db.read() as session:
        cancelled = session.get_one(Job, ids["a1"])
        running = session.get_one(Job, ids["run"])
    assert cancelled.status == "cancelled"
    assert cancelled.reason.startswith("cancelled: queue cleared by ")
    assert running.status == "running"  # a running job is not in the queue
    assert "No waiting job(s) to clear." in cli.ok("queue:clear", "--yes").stdout


def test_queue_clear_failed_cancels_only_queued_retries(cli: Cli, sqlite_db: Database) -> None:
    ids = setup_queue(sqlite_db)
    retry = create_job(
        sqlite_db, sqlite_db.settings, runtemplate_id=ids["rt_b"], retry_of=ids["b1"], attempt=2
    ).id
    data = cli.json("queue:clear", "--failed", "--yes")
    assert data == {"cancelled": 1, "jobs": [retry]}
    with sqlite_db.read() as session:
        assert session.get_one(Job, retry).reason.startswith("cancelled: retries cleared by ")
    assert cli.json("queue:status")["waiting"] == 4


def test_queue_process_runs_the_due_jobs_in_the_foreground(cli: Cli, sqlite_db: Database) -> None:
    ids = setup_queue(sqlite_db)
    first = cli.json("queue:process", "--limit", "1")
    assert first["processed"] == 1 and first["results"] == {"success": 1}
    rest = cli.ok("queue:process", "--concurrency", "2").stdout
    assert rest.startswith("Processed 2 job(s) (") and rest.endswith("): 2 success.\n")
    with sqlite_db.read() as session:
        assert session.get_one(Job, ids["later"]).status == "scheduled"
    assert cli.json("queue:status")["due_now"] == 0
    refused = cli("queue:process", "--concurrency", "0")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == "error: --concurrency must be at least 1, got 0"


def test_status_tells_the_installation_and_its_live_daemons(cli: Cli, sqlite_db: Database) -> None:
    setup_queue(sqlite_db)
    workers.register(sqlite_db, "executor@here:1:abc", "executor")
    workers.register(sqlite_db, "scheduler@here:2:def", "scheduler")
    workers.mark_stopped(sqlite_db, "scheduler@here:2:def")
    data = cli.json("status")
    assert data["database"]["driver"] == "sqlite" and data["database"]["up_to_date"]
    assert data["counts"]["companies"] == 2 and data["counts"]["queue"] == 4
    assert data["counts"]["jobs"]["running"] == 1
    alive = {d["id"]: d["alive"] for d in data["daemons"]}
    assert alive == {"executor@here:1:abc": True, "scheduler@here:2:def": False}
    assert data["timezone"] == "UTC" and data["encryption"]["ok"] and data["job_root"]["ok"]
    text = cli.ok("status").stdout
    assert f"revision {HEAD}, up to date" in text and "executor@here:1:abc" in text
