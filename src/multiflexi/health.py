"""What a process needs to do its work, checked before it starts and shown by ``status``.

* the master key against the identity the database records (:mod:`multiflexi.secrets`);
* a job root that exists or can be made, and that this process can write into;
* free space on it, at least ``MULTIFLEXI_MIN_FREE_MB``.

The database and its schema are checked when it is opened (:class:`Database`). Each
check costs a query or a few system calls: daemons run them at every start. A failed
check is one line that says what is wrong and what to set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiflexi.errors import ConfigError, KeyMismatch, SecretError

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database


@dataclass(frozen=True)
class KeyState:
    """This process's master key against the database's key identity."""

    ok: bool
    #: ``match``, ``mismatch``, ``missing`` (no key here), ``unrecorded`` (no secret
    #: yet), ``unreadable`` (a key file this process cannot read)
    state: str
    fingerprint: str | None
    source: str
    recorded: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "state": self.state,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "database": self.recorded,
            "message": self.message,
        }


def key_state(db: Database, settings: Settings) -> KeyState:
    """Compare this process's key with the database's; never creates a key. A database
    whose secrets predate the recorded identity is checked against one of its secrets
    (and the identity recorded when the key opens it)."""
    from multiflexi.secrets import Vault, mismatch

    vault = Vault.from_settings(settings, db)
    try:
        local = vault.local_key()
    except SecretError as exc:  # a key file that exists but cannot be read
        return KeyState(False, "unreadable", None, "", db.keys.recorded(), exc.message)
    ours, source = local.fingerprint, local.source
    recorded = db.keys.recorded()
    if recorded is None:
        sample = db.keys.find_sealed(jobs=False)
        if sample is None:
            text = "the database holds no secret yet" + (
                f"; this process has {local.describe()}"
                if ours
                else ": a key is made when the first one is stored"
            )
            return KeyState(True, "unrecorded", ours, source, None, text)
        try:
            vault.open(sample)
        except KeyMismatch as exc:
            state = "missing" if ours is None else "mismatch"
            return KeyState(False, state, ours, source, None, exc.message)
        recorded = db.keys.recorded()
    if ours == recorded:
        return KeyState(
            True, "match", ours, source, recorded, f"{local.describe()}, the database's"
        )
    problem = mismatch(recorded, local)
    return KeyState(
        False, "mismatch" if ours else "missing", ours, source, recorded, problem.message
    )


def check_key(db: Database, settings: Settings) -> KeyState:
    """:func:`key_state`, raising :class:`KeyMismatch` with its line when it is wrong."""
    state = key_state(db, settings)
    if not state.ok:
        raise (
            KeyMismatch(state.message)
            if state.state != "unreadable"
            else SecretError(state.message)
        )
    return state


def job_root_problem(settings: Settings, *, create: bool = True) -> str | None:
    """Why jobs cannot get a directory under the job root, or None when they can.
    ``create``: make the root and a directory in it (an executor); else only look, so
    that a ``status`` run by another user (root) makes nothing the executor's user then
    cannot write into."""
    root = settings.job_root
    hint = ""
    if not settings.get("MULTIFLEXI_JOBS_DIR") and not settings.get("MULTIFLEXI_DATA_DIR"):
        hint = " (set MULTIFLEXI_DATA_DIR or MULTIFLEXI_JOBS_DIR)"
    try:
        if create:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = root / f".probe-{os.getpid()}"
            os.mkdir(probe, 0o700)
            os.rmdir(probe)
        else:
            _writable_or_makeable(root)
    except OSError as exc:
        return f"job root {root} is not writable: {exc.strerror or exc}{hint}"
    free_mb = free_megabytes(root if root.exists() else _existing_ancestor(root))
    need = settings.min_free_mb
    if free_mb is not None and free_mb < need:
        return f"job root {root} has {free_mb} MB free, less than MULTIFLEXI_MIN_FREE_MB={need}"
    return None


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_or_makeable(root: Path) -> None:
    """Raise the OSError that making a directory in ``root`` (or ``root`` itself) would
    meet, without making anything."""
    import errno

    place = _existing_ancestor(root)
    if not place.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    if not os.access(place, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))


def free_megabytes(path: os.PathLike[str] | str) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // 1_000_000


def check_job_root(settings: Settings) -> None:
    problem = job_root_problem(settings)
    if problem is not None:
        raise ConfigError(problem)
