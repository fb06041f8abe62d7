"""One housekeeping run: orphan repair, then the retention policy, then space reclaim.

:func:`run_housekeeping` is what the executor daemon calls every
``MULTIFLEXI_HOUSEKEEPING_INTERVAL`` seconds and what ``multiflexi-cli housekeeping`` runs.
It holds the cluster-wide lock row ``housekeeping`` (table ``mf_lock``) while it works, so
two hosts never run it at once. The lock has an expiry: a host that dies while holding it
blocks the others only until then, and a long run renews it as it goes.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi.housekeeping.orphans import fix_orphans
from multiflexi.housekeeping.prune import PruneResult, apply_prune, plan_prune, preview
from multiflexi.queue import new_worker_id
from multiflexi.storage.models import Artifact, ArtifactChunk, Job, JobAction, Lock
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

LOCK_NAME = "housekeeping"
LOCK_TTL = timedelta(minutes=30)
SKIPPED = "another instance holds the lock"

#: Tables that pruning empties, biggest first: what an explicit ``--vacuum`` compacts.
PRUNED_TABLES = (
    ArtifactChunk.__tablename__,
    Artifact.__tablename__,
    JobAction.__tablename__,
    Job.__tablename__,
)
#: Pages returned to the file system per incremental-vacuum step (short write locks).
VACUUM_STEP_PAGES = 2048


# -- the lock ---------------------------------------------------------------------------


def acquire_lock(
    db: Database, holder: str, *, name: str = LOCK_NAME, ttl: timedelta = LOCK_TTL
) -> bool:
    """Take the named lock: insert it, or take it over once expired. False: someone has it."""
    until = utcnow() + ttl
    try:
        with db.session() as session:
            session.add(Lock(name=name, holder=holder, until=until))
            session.flush()
        return True
    except IntegrityError:
        pass  # the row exists: take it only if it has expired (or is already ours)

    def take_over(session: Session) -> bool:
        now = utcnow()
        result = session.execute(
            update(Lock)
            .where(Lock.name == name, (Lock.until < now) | (Lock.holder == holder))
            .values(holder=holder, until=now + ttl)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    return db.run(take_over)


def renew_lock(
    db: Database, holder: str, *, name: str = LOCK_NAME, ttl: timedelta = LOCK_TTL
) -> bool:
    """Push the expiry of a lock we hold; False means we no longer hold it."""

    def renew(session: Session) -> bool:
        result = session.execute(
            update(Lock)
            .where(Lock.name == name, Lock.holder == holder)
            .values(until=utcnow() + ttl)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    return db.run(renew)


def release_lock(db: Database, holder: str, *, name: str = LOCK_NAME) -> None:
    """Give the lock back (only if it is still ours)."""

    def release(session: Session) -> None:
        session.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder))

    db.run(release)


def lock_holder(db: Database, name: str = LOCK_NAME) -> tuple[str, datetime] | None:
    """Who holds the lock and until when, if anyone has it."""
    with db.read() as session:
        row = session.execute(select(Lock.holder, Lock.until).where(Lock.name == name)).first()
    return (row[0], row[1]) if row else None


# -- space ------------------------------------------------------------------------------


def _sqlite_space(db: Database, full: bool) -> dict[str, Any]:
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()

        def pragma(name: str) -> int:
            return int(cur.execute(f"PRAGMA {name}").fetchone()[0])

        page = pragma("page_size")
        modes = {0: "none", 1: "full", 2: "incremental"}
        mode = modes.get(pragma("auto_vacuum"), "?")
        free_before = pragma("freelist_count") * page
        file_before = db.settings.sqlite_path.stat().st_size
        info: dict[str, Any] = {"backend": "sqlite", "auto_vacuum": mode}
        if full:
            # Switching to incremental mode takes effect with this VACUUM, so that every
            # later prune can give space back without another full VACUUM.
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            cur.execute("VACUUM")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            info.update(action="vacuum", auto_vacuum=modes.get(pragma("auto_vacuum"), "?"))
        elif mode == "incremental":
            while pragma("freelist_count"):
                before = pragma("freelist_count")
                # Each step is its own short write: the executor waits milliseconds at most.
                cur.execute(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})").fetchall()
                if pragma("freelist_count") >= before:
                    break
            cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            info["action"] = "incremental_vacuum"
        else:
            info["action"] = "none"
            info["note"] = (
                "auto_vacuum is not INCREMENTAL: freed pages are reused for new data but the "
                "file does not shrink; `multiflexi-cli prune --vacuum` compacts it once and "
                "switches it to incremental mode"
                if mode == "none"
                else "auto_vacuum=FULL gives pages back at every commit"
            )
        free_after = pragma("freelist_count") * page
        file_after = db.settings.sqlite_path.stat().st_size
        info.update(
            free_bytes_before=free_before,
            free_bytes_after=free_after,
            file_bytes_before=file_before,
            file_bytes_after=file_after,
            reclaimed_bytes=max(0, file_before - file_after)
            if full
            else max(0, free_before - free_after),
        )
        return info
    finally:
        raw.close()


def reclaim_space(db: Database, *, full: bool = False) -> dict[str, Any]:
    """Give freed space back where the backend allows it without blocking writers.

    ``full`` (``prune --vacuum``) compacts explicitly: SQLite ``VACUUM``, PostgreSQL
    ``VACUUM FULL``, MariaDB ``OPTIMIZE TABLE``. These lock the tables while they run.
    """
    if db.dialect == "sqlite":
        return _sqlite_space(db, full)
    tables = ", ".join(PRUNED_TABLES)
    if not full:
        note = (
            "autovacuum makes freed space reusable; --vacuum runs VACUUM FULL (locks tables)"
            if db.dialect == "pgsql"
            else "InnoDB reuses freed pages; --vacuum runs OPTIMIZE TABLE"
        )
        return {"backend": db.dialect, "action": "none", "note": note}
    started = time.monotonic()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if db.dialect == "pgsql":
            conn.execute(text(f"VACUUM (FULL, ANALYZE) {tables}"))
            action = "vacuum_full"
        else:
            conn.execute(text(f"OPTIMIZE TABLE {tables}")).fetchall()
            action = "optimize_table"
    return {"backend": db.dialect, "action": action, "seconds": time.monotonic() - started}


# -- the run ----------------------------------------------------------------------------


def run_housekeeping(
    db: Database,
    settings: Settings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    holder: str | None = None,
) -> dict[str, Any]:
    """Orphans, then the configured retention policy, then space; once across the cluster.

    Returns the report of each part, or ``{"skipped": ...}`` when another instance holds
    the lock (a normal outcome, not an error). A dry run changes nothing and takes no lock.
    """
    started = time.monotonic()
    me = holder or new_worker_id("housekeeping")
    if not dry_run and not acquire_lock(db, me):
        current = lock_holder(db)
        return {
            "skipped": SKIPPED,
            "holder": current[0] if current else None,
            "until": current[1] if current else None,
        }
    try:
        orphans = fix_orphans(db, settings, now=now, dry_run=dry_run)
        plan = plan_prune(db, settings, now=now)
        if dry_run:
            pruned: PruneResult = preview(plan)
            space: dict[str, Any] = {"backend": db.dialect, "action": "none"}
        else:
            renewed = [time.monotonic()]

            def keep_lock(_progress: PruneResult) -> bool:
                if time.monotonic() - renewed[0] < LOCK_TTL.total_seconds() / 3:
                    return True
                renewed[0] = time.monotonic()
                return renew_lock(db, me)

            pruned = apply_prune(db, plan, on_batch=keep_lock)
            space = reclaim_space(db)
    finally:
        if not dry_run:
            release_lock(db, me)
    return {
        "dry_run": dry_run,
        "orphans": orphans.as_dict(),
        "prune": pruned.as_dict(),
        "space": space,
        "seconds": round(time.monotonic() - started, 3),
    }
