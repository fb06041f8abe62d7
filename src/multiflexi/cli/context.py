"""What ``cli/main.py`` needs before a command runs: the per-invocation context, and the
registry that command modules fill as they are imported.

Kept apart from :mod:`multiflexi.cli.base` so that ``--help`` imports neither it nor
``dataclasses``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

Registered = tuple["click.Command", tuple[str, ...]]

#: name -> (command, aliases) of the command modules imported so far; filled by @command.
_REGISTERED: dict[str, Registered] = {}


def load_command(module: str, name: str) -> click.Command:
    """The command ``name`` of ``multiflexi.cli.commands.<module>``, importing only that."""
    import importlib

    importlib.import_module(f"multiflexi.cli.commands.{module}")
    return _REGISTERED[name][0]


def normalize_token(token: str) -> str:
    """Option names compare with ``_`` read as ``-``: ``--company_id`` is ``--company-id``.

    Click applies it to the names an option declares and to the ones typed, so every
    option of every command works in both spellings without declaring both.
    """
    return token.replace("_", "-")


class _AllCommands(Mapping[str, Registered]):
    """name -> (command, aliases) of every command. Reading it imports every command module;
    the CLI itself imports only the module of the command it runs."""

    _loaded = False

    def _all(self) -> dict[str, Registered]:
        if not self._loaded:
            import importlib
            import pkgutil

            from multiflexi.cli import commands

            for info in pkgutil.iter_modules(commands.__path__):
                importlib.import_module(f"{commands.__name__}.{info.name}")
            self._loaded = True
        return _REGISTERED

    def __getitem__(self, name: str) -> Registered:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


REGISTRY: Mapping[str, Registered] = _AllCommands()


class CliContext:
    """Per-invocation state: where the configuration comes from, and the output format."""

    def __init__(
        self,
        env_file: str | None = None,
        fmt: str = "text",
        debug: bool = False,
        _db: Database | None = None,
    ) -> None:
        self.env_file = env_file
        self.fmt = fmt
        self.debug = debug
        self._db = _db

    def __repr__(self) -> str:
        return f"CliContext(env_file={self.env_file!r}, fmt={self.fmt!r}, debug={self.debug!r})"

    @cached_property
    def settings(self) -> Settings:
        from multiflexi.config import load_settings

        return load_settings(self.env_file)

    @property
    def db(self) -> Database:
        if self._db is None:
            from multiflexi.audit import Actor, set_actor
            from multiflexi.storage.database import Database
            from multiflexi.users import unix_login

            # Changes made by this command are audited as the Unix account's.
            set_actor(Actor(source="cli", login=unix_login()))
            self._db = Database(self.settings)
        return self._db

    def require_database(self) -> None:
        """A command that only reads refuses a SQLite file named by DB_DATABASE that is
        not there (a typo), instead of creating an empty database and answering from it
        ("No jobs found."). The default file in the data directory is created and
        migrated by whichever command comes first: zero configuration."""
        settings = self.settings
        if (
            settings.db_connection == "sqlite"
            and settings.db_database
            and not settings.sqlite_path.exists()
        ):
            from multiflexi.errors import NotFound

            raise NotFound(
                f"database {settings.sqlite_path} does not exist (from DB_DATABASE);"
                " check -e/DB_DATABASE, or create it with `multiflexi-cli db:migrate`"
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            from multiflexi.audit import set_actor

            set_actor(None)  # the command is over: later changes in this thread are not its
