"""The ``multiflexi-cli`` entry point: global options, command lookup, and error mapping.

Commands are spelled ``noun:verb`` (``job:list``). The legacy spelling ``noun verb`` (``job
list``) and the old noun names (``runtemplate``, ``companyapp``) are accepted too.
Errors are mapped to exit codes here and nowhere else: 1 for errors, 2 for misuse.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from multiflexi import __version__
from multiflexi.cli.commands import INDEX
from multiflexi.cli.context import CliContext, load_command, normalize_token
from multiflexi.errors import MultiFlexiError

#: Old noun spellings -> current ones, for ``runtemplate list`` and ``runtemplate:list``.
NOUN_ALIASES = {
    "runtemplate": "run-template",
    "companyapp": "company-app",
    "app": "application",
    "apps": "application",
    "jobs": "job",
    "artifacts": "artifact",
    "companies": "company",
}


#: Console scripts that run one command (``cli/scripts.py``) -> the command.
STANDALONE = {"multiflexi-job2script": "job:script", "multiflexi-job2env": "job:env-file"}

CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "token_normalize_func": normalize_token,
}


class RootGroup(click.Group):
    """Finds commands by name, alias, legacy noun or ``noun verb`` spelling.

    Commands are known from :data:`multiflexi.cli.commands.INDEX`; the module of a command
    is imported when the command is looked up, so one command imports only its own module.
    A noun alone (``multiflexi-cli job``) lists its commands; ``help COMMAND`` shows one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}
        for name, (_module, aliases, _help) in sorted(INDEX.items()):
            for alias in aliases:
                self.aliases[alias] = name

    def _lookup(self, name: str) -> str | None:
        if name in INDEX:
            return name
        if name in self.aliases:
            return self.aliases[name]
        noun, sep, verb = name.partition(":")
        if sep and noun in NOUN_ALIASES:
            return self._lookup(f"{NOUN_ALIASES[noun]}:{verb}")
        return None

    def _prefix(self, name: str) -> str | None:
        """``job`` (or ``jobs``, ``company:env``) when commands live under it."""
        from multiflexi.cli.overview import with_prefix

        noun, sep, rest = name.partition(":")
        for candidate in (name, f"{NOUN_ALIASES.get(noun, noun)}{sep}{rest}"):
            if with_prefix(INDEX, candidate):
                return candidate
        return None

    def _load(self, name: str) -> click.Command:
        cmd = self.commands.get(name)
        if cmd is None:
            cmd = load_command(INDEX[name][0], name)
            self.add_command(cmd, name)
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(INDEX)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "help":
            return help_command
        found = self._lookup(cmd_name)
        return self._load(found) if found else None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if name in STANDALONE:  # its own console script: usage lines name the script
            return name, self._load(STANDALONE[name]), args[1:]
        if name == "help":
            return name, help_command, args[1:]
        found = self._lookup(name)
        if found is None and ":" not in name and len(args) > 1:
            legacy = self._lookup(f"{name}:{args[1]}")
            if legacy is not None:
                return legacy, self._load(legacy), args[2:]
        if found is None:
            prefix = self._prefix(name)
            if prefix is not None:
                return prefix, _noun_command(prefix), args[1:]
            raise click.UsageError(f"unknown command {name!r}; see `multiflexi-cli help`")
        return found, self._load(found), args[1:]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from multiflexi.cli.overview import DAEMON_NOTE, grouped, table_lines

        shown = [name for name, (_m, _a, short) in INDEX.items() if short is not None]
        for title, names in grouped(shown):
            formatter.write(f"\n{title}:\n")
            rows = [(name, INDEX[name][2] or "") for name in names]
            formatter.write("".join(f"{line}\n" for line in table_lines(rows)))
            if title.startswith("Daemons"):
                formatter.write_text(DAEMON_NOTE)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        formatter.write_text(
            "`multiflexi-cli help COMMAND` (or `COMMAND --help`) shows a command's options;"
            " a noun alone (`multiflexi-cli job`) lists its commands. Options spelled with"
            " `_` work with `-` too. Walk-through: docs/cli.md."
        )


def _print_listing(title: str, names: list[str]) -> None:
    """The commands ``names`` as a table, or as JSON with ``-f json``."""
    from multiflexi.cli.overview import table_lines

    rows = [(name, INDEX[name][2] or "") for name in names]
    if _json_wanted():
        from multiflexi.cli.output import to_json

        click.echo(to_json([{"command": name, "help": text} for name, text in rows]))
        return
    click.echo("\n".join([f"{title}:", *table_lines(rows)]))


def _json_wanted() -> bool:
    obj = click.get_current_context().find_object(CliContext)
    return obj is not None and obj.fmt == "json"


def _noun_command(prefix: str) -> click.Command:
    """``multiflexi-cli job``: the ``job:*`` commands, like ``git stash`` without a verb."""
    from multiflexi.cli.overview import with_prefix

    @click.option("-h", "--help", "_help", is_flag=True, help="The same list.")
    def listing(_help: bool) -> None:
        names = with_prefix(INDEX, prefix)
        _print_listing(f"multiflexi-cli {prefix} commands", names)
        if not _json_wanted():
            click.echo(f"\nSee `multiflexi-cli help {names[0]}` for the options of one.")

    from multiflexi.cli.base import format_option

    return click.command(prefix, context_settings=CONTEXT_SETTINGS, add_help_option=False)(
        format_option(listing)
    )


@click.command("help", context_settings=CONTEXT_SETTINGS)
@click.argument("topic", required=False, metavar="[COMMAND]")
@click.pass_context
def help_command(ctx: click.Context, topic: str | None) -> None:
    """Show the help of a command, or the overview of all commands."""
    root = ctx.parent
    assert root is not None and isinstance(root.command, RootGroup)
    group: RootGroup = root.command
    if topic is None:
        click.echo(root.get_help())
        return
    found = group._lookup(topic)
    if found is None:
        prefix = group._prefix(topic)
        if prefix is None:
            raise click.UsageError(f"unknown command {topic!r}; see `multiflexi-cli help`")
        ctx.invoke(_noun_command(prefix))
        return
    cmd = group._load(found)
    click.echo(cmd.get_help(click.Context(cmd, info_name=found, parent=root)))


@click.group(cls=RootGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option(
    "-e",
    "--environment",
    "env_file",
    metavar="PATH",
    default=None,
    help="Environment file with DB_* and other settings.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    help="Output format for every command.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, "-V", "--version", prog_name="multiflexi-cli")
@click.pass_context
def cli(ctx: click.Context, env_file: str | None, fmt: str, debug: bool) -> None:
    """MultiFlexi: run command-line applications for many companies, and keep a record
    of every run."""
    obj = ctx.ensure_object(CliContext)
    obj.env_file = env_file
    obj.fmt = fmt.lower()
    obj.debug = debug
    ctx.call_on_close(obj.close)
    if ctx.invoked_subcommand is None:  # no command: the overview, as `git` does
        if obj.fmt == "json":
            _print_listing("commands", sorted(n for n, e in INDEX.items() if e[2] is not None))
        else:
            click.echo(ctx.get_help())


def _error_line(message: str) -> str:
    """One printable line: newlines folded, terminal control characters escaped."""
    folded = " ".join(message.split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in folded)


def main(argv: list[str] | None = None, prog_name: str = "multiflexi-cli") -> int:
    """Run the CLI and return the exit code; never raises for user errors."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    obj = CliContext(debug=debug)
    fmt_json = _wants_json(args)
    try:
        result = cli.main(args=args, prog_name=prog_name, standalone_mode=False, obj=obj)
        return int(result) if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"error: {_error_line(exc.format_message())}", err=True)
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except MultiFlexiError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if fmt_json or obj.fmt == "json":
            from multiflexi.cli.output import to_json

            payload: dict[str, object] = {"status": "error", "message": exc.message}
            violations = getattr(exc, "violations", None)
            if violations:
                payload["violations"] = violations
            click.echo(to_json(payload))
        click.echo(f"error: {_error_line(exc.message)}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"error: internal error: {type(exc).__name__}: {_error_line(first)}", err=True)
        return 1


def _wants_json(args: list[str]) -> bool:
    for i, arg in enumerate(args):
        if arg in ("--format=json", "-fjson", "-f=json"):
            return True
        if arg in ("-f", "--format") and i + 1 < len(args) and args[i + 1].lower() == "json":
            return True
    return False


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
