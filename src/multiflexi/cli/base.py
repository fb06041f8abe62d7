"""What every command shares: the registry, ``-f/--format``, ids, the context object.

Command modules import only this module and click at import time, so that a command
starts fast; services and the database are imported inside command bodies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from multiflexi.cli.context import _REGISTERED, CliContext, normalize_token
from multiflexi.cli.context import REGISTRY as REGISTRY  # every command, all modules imported
from multiflexi.errors import ConfigError, Invalid, Refused, UsageError

F = TypeVar("F", bound=Callable[..., Any])


def cli_context() -> CliContext:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    if obj is None:  # a command invoked on its own (tests of single commands)
        obj = CliContext()
        ctx.obj = obj
    return obj


def _set_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        obj = ctx.find_object(CliContext)
        if obj is not None:
            obj.fmt = value.lower()
    return value


format_option = click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default=None,
    expose_value=False,
    is_eager=True,
    callback=_set_format,
    help="Output format.",
)


def _set_environment(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        obj = ctx.find_object(CliContext)
        if obj is not None:
            obj.env_file = value


#: ``-e/--environment`` after the command too: ``job:list -e prod.env``, as ``-f``.
environment_option = click.option(
    "-e",
    "--environment",
    metavar="PATH",
    default=None,
    expose_value=False,
    is_eager=True,
    callback=_set_environment,
    help="Environment file with DB_* and other settings.",
)


#: Last parts of the names of commands that only read (``job:list``, ``company:env:list``,
#: ``status``): pointed by DB_DATABASE at a SQLite file that does not exist they say so
#: (see :meth:`CliContext.require_database`) rather than create an empty database.
READ_VERBS = frozenset(
    {"list", "ls", "get", "show", "logs", "script", "env-file", "export-json", "status"}
    | {"list-credentials", "usage", "metrics", "save"}
)


class Command(click.Command):
    """A command of ``multiflexi-cli``.

    Every option answers to both spellings, ``_`` and ``-``; a command whose output is raw
    bytes (``raw_output``) refuses ``-f json`` in one line instead of ignoring it; a command
    that only reads (:data:`READ_VERBS`) never creates a database.
    """

    def __init__(self, *args: Any, raw_output: str | None = None, **kwargs: Any) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings.setdefault("token_normalize_func", normalize_token)
        kwargs["context_settings"] = settings
        super().__init__(*args, **kwargs)
        self.raw_output = raw_output

    def invoke(self, ctx: click.Context) -> Any:
        if self.raw_output is not None and cli_context().fmt == "json":
            raise UsageError(f"{self.name} prints {self.raw_output}; -f json is not available")
        if str(self.name).rpartition(":")[2] in READ_VERBS:
            cli_context().require_database()
        return super().invoke(ctx)


def command(
    name: str,
    *aliases: str,
    raw_output: str | None = None,
    own_format: bool = False,
    **kwargs: Any,
) -> Callable[[F], click.Command]:
    """Register a command under ``name`` (e.g. ``job:list``) and its alias spellings.

    ``raw_output`` says what such a command prints instead of records
    (``"the job's output byte-exact"``): ``-f json`` is then refused. ``own_format``: the
    command has a ``-f/--format`` option of its own, with more formats than text and json
    (``job:env-file``).
    """

    def decorate(fn: F) -> click.Command:
        options = environment_option(fn if own_format else format_option(fn))
        cmd: click.Command = click.command(  # type: ignore[no-untyped-call]
            name, cls=Command, raw_output=raw_output, **kwargs
        )(options)
        _REGISTERED[name] = (cmd, aliases)
        return cmd

    return decorate


def _positive_seconds(
    ctx: click.Context, _param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise Invalid(f"--watch must be a number of seconds, got {value!r}") from None
    if not 0 < seconds <= 86400:
        raise Invalid(f"--watch must be more than 0 and at most 86400 seconds, got {value}")
    return seconds


#: ``--watch N``: draw the output anew every N seconds until Ctrl-C (as ``watch`` does).
watch_option = click.option(
    "--watch",
    metavar="SECONDS",
    default=None,
    callback=_positive_seconds,
    help="Draw it anew every SECONDS seconds until Ctrl-C.",
)


def repeat(interval: float | None, draw: Callable[[], None]) -> None:
    """``draw()`` once, or every ``interval`` seconds until interrupted (then exit 0).

    On a terminal the screen is cleared before each drawing; into a pipe or a file each
    drawing follows the last under a line with the time, so that a log of it reads well.
    """
    if interval is None:
        draw()
        return
    import time
    from datetime import datetime

    name = click.get_current_context().info_name
    as_json = cli_context().fmt == "json"  # then a stream of documents, nothing between
    try:
        while True:
            stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
            header = f"Every {interval:g} s: multiflexi-cli {name}   {stamp}"
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            if not as_json:
                sys.stdout.write(header + "\n\n")
            draw()
            sys.stdout.flush()
            time.sleep(interval)
            if not sys.stdout.isatty() and not as_json:
                sys.stdout.write("\n")
    except KeyboardInterrupt:
        return


def id_argument(name: str = "id", help: str = "Numeric id.") -> Callable[[F], F]:
    """A positional id that can also be given as ``--id``: ``job:show 5`` == ``job:show --id 5``."""

    def decorate(fn: F) -> F:
        fn = click.argument("pos_id", required=False, metavar="ID")(fn)
        fn = click.option(f"--{name}", "opt_id", default=None, help=help)(fn)
        return fn

    return decorate


def resolve_id(pos_id: str | None, opt_id: str | None, what: str = "id") -> int:
    raw = opt_id if opt_id is not None else pos_id
    if raw is None:
        raise UsageError(f"missing {what}: give it as an argument or with --id")
    return parse_int(raw, what)


def company_id_of(ref: str) -> int:
    """The id of a company named by id or slug (``--company 3``, ``--company acme_corp``)."""
    from multiflexi.companies.service import resolve_company

    with cli_context().db.read() as session:
        return resolve_company(session, ref).id


def parse_int(raw: str | int, what: str) -> int:
    if isinstance(raw, int):
        return raw
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise Invalid(f"{what} must be a whole number, got {raw!r}") from None
    if value < 0 or value > 2**31 - 1:
        raise Invalid(f"{what} out of range: {value}")
    return value


def parse_assignments(items: Iterable[str], what: str = "KEY=VALUE") -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; a bad item is a UsageError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"expected {what}, got {item!r}")
        out[key.strip()] = value
    return out


def parse_bool(raw: str | bool | None, what: str) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on", "y"}:
        return True
    if low in {"0", "false", "no", "off", "n"}:
        return False
    raise Invalid(f"{what} must be true or false, got {raw!r}")


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, refuse unless ``--yes`` was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{question} Refusing without a terminal: add --yes to confirm")
    if not click.confirm(question, default=False, err=True):
        raise Refused("Aborted.")


def require_config(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
