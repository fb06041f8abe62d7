"""The command overview: commands grouped by the noun before their first ``:``.

Groups come from the command names in :data:`multiflexi.cli.commands.INDEX`, so a command
added under a new noun (``user:create``) gets a section of its own without a change here.
Reads only the index: no command module is imported.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Section title and the nouns (the part of a name before the first ``:``) it collects,
#: in the order they are shown. Nouns not named here get a section titled after them.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Jobs", ("job",)),
    ("Queue", ("queue",)),
    ("Artifacts", ("artifact",)),
    ("Run templates", ("run-template",)),
    ("Companies", ("company", "company-app")),
    ("Global job environment", ("global",)),
    ("Applications", ("application",)),
    ("Credentials", ("credential", "credential-type")),
    ("Actions", ("action",)),
    ("Daemons and monitoring", ("status", "metrics")),
    ("Housekeeping", ("housekeeping", "prune", "storage")),
    ("Database", ("db",)),
)

#: Shown under the daemons' section: they are programs of their own, not subcommands.
DAEMON_NOTE = (
    "The daemons are programs of their own: multiflexi-executor runs due jobs,"
    " multiflexi-scheduler queues them (see docs/daemons.md)."
)


def noun(name: str) -> str:
    """``run-template:action:list`` -> ``run-template``; ``status`` -> ``status``."""
    return name.partition(":")[0]


def grouped(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """``[(title, [command, ...]), ...]`` in display order; empty sections left out."""
    by_noun: dict[str, list[str]] = {}
    for name in sorted(names):
        by_noun.setdefault(noun(name), []).append(name)
    out: list[tuple[str, list[str]]] = []
    for title, nouns in SECTIONS:
        members = [n for k in nouns for n in by_noun.pop(k, [])]
        if members:
            out.append((title, members))
    for key in sorted(by_noun):  # nouns added after this table was written
        out.append((key.replace("-", " ").capitalize(), by_noun[key]))
    return out


def with_prefix(names: Iterable[str], prefix: str) -> list[str]:
    """The commands under ``prefix`` (``job`` -> ``job:*``, ``company:env`` -> ...)."""
    return sorted(n for n in names if n.startswith(prefix + ":"))


def table_lines(rows: list[tuple[str, str]], width: int | None = None) -> list[str]:
    """``  name  help`` lines, each help cut to the terminal's width (at most 100)."""
    import shutil

    total = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    first = max(len(name) for name, _ in rows)
    room = max(total - first - 4, 20)
    lines = []
    for name, text in rows:
        if len(text) > room:
            text = text[: room - 1].rstrip(" .,;(") + "…"
        lines.append(f"  {name.ljust(first)}  {text}".rstrip())
    return lines
