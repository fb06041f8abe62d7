"""Rendering a job as a ``.env`` file (job2env) or a bash launcher (job2script). Pure.

The ``.env`` file must read back to exactly the same values with python-dotenv
(``dotenv_values``) and with a POSIX shell (``set -a; . ./job.env; set +a``). The two
disagree about quoting, so each value gets the form both read identically:

- ``KEY='value'`` when the value has no ``'``, no ``\\`` and nothing python-dotenv would
  interpolate (``${...}``): inside single quotes the shell takes everything literally,
  and so does python-dotenv apart from ``\\\\``, ``\\'`` and ``${...}``.
- ``KEY="value"`` otherwise, with ``\\`` written ``\\\\`` and ``"`` written ``\\"`` (both
  decode those), and each ``$`` written ``${__MULTIFLEXI_UNSET__:-$}``: the shell would
  expand a bare ``$``, python-dotenv keeps the backslash of ``\\$``, but both expand an
  unset variable with a default, and the result is not scanned again. This relies on
  nobody setting ``__MULTIFLEXI_UNSET__``.

No form is read identically by both for a carriage return (python-dotenv opens the file
in universal-newline mode and reads it as a line break) or for a backtick in a value that
needs double quotes (python-dotenv keeps the backslash of ``\\```): such values raise
:class:`~multiflexi.errors.Invalid` instead of producing a file that lies. So does a NUL.

The launcher script needs no such care: only bash reads it, and every value and word is
quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

from multiflexi.errors import Invalid

#: A name both bash and the process environment accept.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: What python-dotenv interpolates (its ``variables._posix_variable``), in any quoting.
_DOTENV_VARIABLE = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
#: A variable expected to be unset wherever the file is read.
UNSET = "__MULTIFLEXI_UNSET__"
#: A literal ``$`` inside double quotes, read the same by bash and python-dotenv.
LITERAL_DOLLAR = "${" + UNSET + ":-$}"
_DOUBLE_QUOTED = {"\\": "\\\\", '"': '\\"', "$": LITERAL_DOLLAR}


def _check(name: str, value: str) -> None:
    if not NAME.fullmatch(name):
        raise Invalid(f"{name!r} is not a valid variable name (letters, digits, _)")
    if name == UNSET:
        raise Invalid(f"{UNSET} is reserved for .env quoting")
    if "\0" in value:
        raise Invalid(f"the value of {name} contains a NUL byte, which no environment can carry")


def _comment(lines: Iterable[str]) -> list[str]:
    # splitlines() also breaks on \r, which python-dotenv would read as a new line and
    # might then parse as an assignment.
    return [f"# {part}".rstrip() for line in lines for part in (line.splitlines() or [""])]


def quote_env_value(name: str, value: str) -> str:
    """``value`` quoted for a ``.env`` line that bash and python-dotenv read the same.

    Raises :class:`~multiflexi.errors.Invalid` for a value that no quoting can carry to
    both (a NUL, a carriage return, or a backtick where double quotes are needed).
    """
    _check(name, value)
    if "\r" in value:
        raise Invalid(
            f"the value of {name} contains a carriage return, which python-dotenv reads as "
            "a line break: it cannot be written to a .env file"
        )
    if "'" not in value and "\\" not in value and not _DOTENV_VARIABLE.search(value):
        return f"'{value}'"
    if "`" in value:
        raise Invalid(
            f"the value of {name} contains a backtick and a quote, backslash or ${{...}}: "
            "no .env quoting is read the same by bash and python-dotenv"
        )
    return '"' + "".join(_DOUBLE_QUOTED.get(ch, ch) for ch in value) + '"'


def render_env_file(variables: Sequence[tuple[str, str]], header: Sequence[str] = ()) -> str:
    """A ``.env`` file of ``variables`` (name, value), in the given order.

    ``header`` lines become ``#`` comments. The file reads back to exactly ``variables``
    with ``dotenv_values`` and with ``set -a; . ./file; set +a`` in bash or sh. Raises
    :class:`~multiflexi.errors.Invalid` for an invalid name or a value no quoting can
    carry (see the module documentation).
    """
    body = [f"{name}={quote_env_value(name, value)}" for name, value in variables]
    lines = _comment(header)
    if any(LITERAL_DOLLAR in line for line in body):
        lines += _comment([f"{LITERAL_DOLLAR} is a literal $ (bash and python-dotenv agree)"])
    if lines:
        lines.append("")
    return "\n".join([*lines, *body]) + "\n"


def render_script(
    variables: Sequence[tuple[str, str, str]],
    argv: Sequence[str],
    header: Sequence[str] = (),
) -> str:
    """A bash script that exports ``variables`` (name, value, source) and execs ``argv``.

    Every value and every word of ``argv`` is quoted with :func:`shlex.quote`, so the
    program receives exactly these arguments and values, whatever they contain. Raises
    :class:`~multiflexi.errors.Invalid` for an empty ``argv``, an invalid name or a NUL.
    """
    if not argv:
        raise Invalid("the command line is empty")
    for word in argv:
        if "\0" in word:
            raise Invalid("an argument contains a NUL byte, which no command line can carry")
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", ""]
    if header:
        lines += [*_comment(header), ""]
    for name, value, source in variables:
        _check(name, value)
        lines += _comment([f"source: {' '.join(source.splitlines())}"])
        lines.append(f"export {name}={shlex.quote(value)}")
    if variables:
        lines.append("")
    lines.append(f"exec {shlex.join(argv)}")
    return "\n".join(lines) + "\n"
