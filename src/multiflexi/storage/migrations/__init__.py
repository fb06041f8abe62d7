"""Alembic migrations, run from code (no alembic.ini needed by users)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: The newest revision; a test checks it against the scripts.
HEAD = "0011"

HERE = Path(__file__).parent


def known_revisions() -> list[str]:
    """The revisions this version has scripts for, oldest first (read from the file
    names: no Alembic import)."""
    return sorted(p.name[:4] for p in (HERE / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def is_newer(revision: str) -> bool:
    """Whether a database at ``revision`` is newer than this version: a revision it has
    no script for (written by a later version)."""
    return revision not in known_revisions()


def alembic_config(engine: Engine | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)
