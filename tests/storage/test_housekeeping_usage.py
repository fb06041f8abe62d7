"""Storage usage and space reclaim, on every backend."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from multiflexi.housekeeping.prune import apply_prune, plan_prune
from multiflexi.housekeeping.service import reclaim_space
from multiflexi.housekeeping.usage import storage_usage
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact
from tests.factories import make_setup
from tests.storage.test_housekeeping import (
    NOW,
    Seed,
    small_world,
)

# -- usage ------------------------------------------------------------------------------


def test_storage_usage_adds_up_per_company_app_template_month_and_day(
    any_db: Database,
) -> None:
    a, b = small_world(any_db)
    with any_db.session() as s:
        s.execute(
            update(Artifact)
            .where(Artifact.job_id == 11)
            .values(state="pruned", content=None, created=NOW - timedelta(days=40))
        )
    report = storage_usage(any_db, top=3, days=30, now=NOW)
    totals = report["totals"]
    # 14 jobs with output (64 + 16 bytes), two big files of 768; job 11's output pruned.
    assert totals["output_bytes"] == 13 * 80
    assert totals["files_bytes"] == 2 * 768
    assert totals["total_bytes"] == 13 * 80 + 2 * 768
    assert totals["pruned_bytes"] == 80
    assert totals["artifacts"] == 14 * 2 + 2 and totals["jobs"] == 14
    by_company = {r["company_id"]: r for r in report["by_company"]}
    assert by_company[a[1]]["total_bytes"] == 8 * 80 + 2 * 768
    assert by_company[b[1]]["total_bytes"] == 5 * 80
    assert {r["app_id"] for r in report["by_app"]} == {a[0], b[0]}
    assert {r["runtemplate_id"]: r["jobs"] for r in report["by_runtemplate"]} == {
        a[2]: 9,
        b[2]: 5,
    }
    assert sum(r["total_bytes"] for r in report["by_month"]) == totals["total_bytes"]
    assert [x["size"] for x in report["largest"]] == [768, 768, 64]
    growth = report["growth"]
    assert len(growth["per_day"]) == 30 and growth["bytes"] == totals["total_bytes"]
    yesterday = (NOW - timedelta(days=1)).strftime("%Y-%m-%d")
    assert [d["day"] for d in growth["per_day"] if d["bytes"]] == [yesterday]
    only_b = storage_usage(any_db, company=str(b[1]), now=NOW)
    assert only_b["totals"]["total_bytes"] == 5 * 80 and len(only_b["by_company"]) == 1


# -- space ------------------------------------------------------------------------------


def test_space_is_reclaimed_incrementally_only_where_sqlite_allows_it(
    sqlite_db: Database,
) -> None:
    # A file made before incremental mode existed: only an explicit VACUUM converts it.
    raw = sqlite_db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA auto_vacuum=NONE")
        cur.execute("VACUUM")
    finally:
        raw.close()
    info = reclaim_space(sqlite_db)
    assert info["auto_vacuum"] == "none" and info["action"] == "none" and "--vacuum" in info["note"]
    full = reclaim_space(sqlite_db, full=True)
    assert full["action"] == "vacuum" and full["auto_vacuum"] == "incremental"
    rt = make_setup(sqlite_db)
    seed = Seed()
    for job_id in range(1, 301):
        seed.job(job_id, rt, "success", 400, output=4000)
    seed.insert(sqlite_db)
    apply_prune(sqlite_db, plan_prune(sqlite_db, sqlite_db.settings, now=NOW))
    info = reclaim_space(sqlite_db)
    assert info["action"] == "incremental_vacuum" and info["reclaimed_bytes"] > 300 * 4000
    assert info["free_bytes_after"] == 0


def test_an_explicit_vacuum_runs_on_every_backend(any_db: Database) -> None:
    small_world(any_db)
    info = reclaim_space(any_db, full=True)
    assert info["action"] in {"vacuum", "vacuum_full", "optimize_table"}
    assert reclaim_space(any_db)["action"] in {"none", "incremental_vacuum"}
