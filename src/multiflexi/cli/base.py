"""What every command shares: the registry, ``-f/--format``, ids, the context object.

Command modules import only this module and click at import time, so that a command
starts fast; services and the database are imported inside command bodies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from multiflexi.cli.context import _REGISTERED, CliContext
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


def command(
    name: str, *aliases: str, own_format: bool = False, **kwargs: Any
) -> Callable[[F], click.Command]:
    """Register a command under ``name`` (e.g. ``job:list``) and its alias spellings.
    ``own_format``: the command has a ``-f/--format`` option of its own, with more
    formats than text and json (``job:env-file``)."""

    def decorate(fn: F) -> click.Command:
        with_format = fn if own_format else format_option(fn)
        cmd: click.Command = click.command(name, **kwargs)(with_format)  # type: ignore[no-untyped-call]
        _REGISTERED[name] = (cmd, aliases)
        return cmd

    return decorate


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
