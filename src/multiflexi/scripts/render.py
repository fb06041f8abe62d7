"""Rendering a job as a launcher script (job2script) or an environment file (job2env). Pure.

**The script** runs the job's command again the way the job ran it: in a directory of its
own (fresh from ``mktemp -d``, or a given one), with exactly the job's environment and
nothing of the caller's (``env -i``), ``MULTIFLEXI_TMP`` and every value that named the
job's directory (``RESULT_FILE``...) pointed at the new one, and the command's exit code
as its own (``exec``). Every value and word is single-quoted for bash, which carries any
text without NUL; a variable name a shell cannot use (``BANKA+``) is an ``env`` argument
like any other.

**The environment file** has four formats, for four readers:

- ``shell`` (the default): ``NAME='value'`` lines for bash, read with ``set -a; source
  FILE; set +a``. Single quotes carry any text without NUL, so no value is refused. A
  name a shell cannot set is a comment line with the ``env`` argument that passes it. Where
  python-dotenv (the version installed here) would read a line differently, a comment
  line above it says so: use ``--format dotenv`` for such a reader.
- ``dotenv``: for python-dotenv (``dotenv_values``, ``load_dotenv``; interpolation on, its
  default): double quotes with ``\\\\``, ``\\"``, ``\\n``, ``\\r`` escapes, and every ``${``
  written ``${__MULTIFLEXI_UNSET__:-$}{`` so that nothing is interpolated (this relies on
  nobody setting ``__MULTIFLEXI_UNSET__``). Each line is read back with python-dotenv
  before it is written; one it would not read exactly becomes a comment saying so.
- ``systemd``: for ``EnvironmentFile=``: single-quoted values (systemd keeps their text
  literally, line breaks included; a ``'`` is written ``'"'"'``). systemd accepts only
  names a shell could use: others become a comment line.
- ``json``: one object, name -> value: every name, every value.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Iterable, Sequence

from multiflexi.env.names import is_shell_name, name_problem
from multiflexi.errors import Invalid

FORMATS = ("shell", "dotenv", "systemd", "json")
#: A variable expected to be unset wherever a ``dotenv`` file is read.
UNSET = "__MULTIFLEXI_UNSET__"
#: A literal ``$`` that python-dotenv does not interpolate.
LITERAL_DOLLAR = "${" + UNSET + ":-$}"
_DOTENV_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
#: What python-dotenv reads as a key without quotes.
_DOTENV_KEY = re.compile(r"[^=#\s']+")


def _check(name: str, value: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise Invalid(f"{name!r} is not a variable name: it {problem}")
    if "\0" in value:
        raise Invalid(f"the value of {name} contains a NUL byte, which no environment can carry")


def _comment(lines: Iterable[str]) -> list[str]:
    # splitlines() also breaks on \r and other line ends, which a reader might take for a
    # new line and then parse as an assignment.
    return [f"# {part}".rstrip() for line in lines for part in (line.splitlines() or [""])]


def ansi_c(text: str) -> str:
    """``text`` as one bash ``$'...'`` word that fits on one line (for comments)."""
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f" or (not ch.isprintable() and ord(ch) < 0x10000):
            out.append(f"\\u{ord(ch):04x}")
        elif not ch.isprintable():
            out.append(f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


# -- the environment file --------------------------------------------------------------


def _dotenv_reads(line: str) -> tuple[str | None, str | None] | None:
    """(name, value) as python-dotenv reads ``line`` as a whole file (interpolation on),
    or None when it does not read exactly one assignment from it."""
    from dotenv.main import resolve_variables
    from dotenv.parser import parse_stream

    # A file opened in text mode (as python-dotenv opens one) has universal newlines.
    text = line.replace("\r\n", "\n").replace("\r", "\n")
    bindings = list(parse_stream(io.StringIO(text)))
    found = [b for b in bindings if b.key is not None]
    if any(b.error for b in bindings) or len(found) != 1:
        return None
    key, value = found[0].key, found[0].value
    if value is not None and "${" in value:
        # Interpolation looks at the process environment too; any variable it finds makes
        # the value differ, so one not set here is as good as any.
        value = resolve_variables([(str(key), value)], override=True)[str(key)]
    return key, value


def shell_line(name: str, value: str) -> list[str]:
    """The lines of one variable in the ``shell`` format."""
    if not is_shell_name(name):
        return _comment(
            [f"not a name a shell can set; to pass it: env {ansi_c(f'{name}={value}')} COMMAND"]
        )
    line = f"{name}={shlex.quote(value)}"
    if _dotenv_reads(line) != (name, value):
        return [
            *_comment([f"python-dotenv reads {name} differently: use --format dotenv for it"]),
            line,
        ]
    return [line]


def dotenv_line(name: str, value: str) -> list[str]:
    """The lines of one variable in the ``dotenv`` format."""
    if _DOTENV_KEY.fullmatch(name) and not name.startswith("export"):
        key = name
    elif "'" not in name and "\n" not in name and "\r" not in name:
        key = f"'{name}'"
    else:
        key = None
    quoted = '"' + "".join(_DOTENV_ESCAPES.get(ch, ch) for ch in value) + '"'
    quoted = quoted.replace("${", LITERAL_DOLLAR + "{")
    line = f"{key}={quoted}" if key is not None else ""
    if key is None or _dotenv_reads(line) != (name, value):
        return _comment(
            [f"python-dotenv cannot read this variable exactly: {ansi_c(f'{name}={value}')}"]
        )
    return [line]


def systemd_line(name: str, value: str) -> list[str]:
    """The lines of one variable in the ``systemd`` (``EnvironmentFile=``) format."""
    if not is_shell_name(name):
        return _comment(
            [f"systemd takes only names a shell could use; not set: {ansi_c(f'{name}={value}')}"]
        )
    return [f"{name}='" + value.replace("'", "'\"'\"'") + "'"]


_LINES = {"shell": shell_line, "dotenv": dotenv_line, "systemd": systemd_line}


def render_env_file(
    variables: Sequence[tuple[str, str]], header: Sequence[str] = (), fmt: str = "shell"
) -> str:
    """An environment file of ``variables`` (name, value), in the given order, in format
    ``fmt`` (see the module documentation). ``header`` lines become comments (not in
    ``json``). No value is refused; a name with ``=`` or a NUL anywhere is
    :class:`~multiflexi.errors.Invalid` (no environment holds one)."""
    for name, value in variables:
        _check(name, value)
    if fmt == "json":
        return json.dumps(dict(variables), ensure_ascii=False, indent=2) + "\n"
    if fmt not in _LINES:
        raise Invalid(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    body = [line for name, value in variables for line in _LINES[fmt](name, value)]
    lines = _comment(header)
    if fmt == "dotenv" and any(LITERAL_DOLLAR in line for line in body):
        lines += _comment([f"{LITERAL_DOLLAR} is a literal $ that python-dotenv keeps as it is"])
    if lines:
        lines.append("")
    return "\n".join([*lines, *body]) + "\n"


# -- the launcher script ----------------------------------------------------------------


def _rebased(text: str, old_dir: str | None) -> str:
    """``text`` as one bash word, with each occurrence of the job's directory ``old_dir``
    (as a whole path: followed by ``/`` or nothing path-like) replaced by ``$workdir``."""
    if not old_dir:
        return shlex.quote(text)
    parts = re.split(re.escape(old_dir) + r"(?![^/\s:;,'\"])", text)
    if len(parts) == 1:
        return shlex.quote(text)
    return '"$workdir"'.join(shlex.quote(p) if p else "" for p in parts)


def render_script(
    variables: Sequence[tuple[str, str, str]],
    argv: Sequence[str],
    header: Sequence[str] = (),
    *,
    job_id: int | str = "",
    job_dir: str | None = None,
    workdir: str | None = None,
) -> str:
    """A bash script that runs ``argv`` as the job ran it (see the module documentation).

    ``variables``: (name, value, source) of the job's environment; ``job_dir``: the
    directory the job ran in, whose every occurrence in a value or an argument becomes the
    script's directory; ``workdir``: an absolute directory to use (created if missing)
    instead of a fresh one. Raises :class:`~multiflexi.errors.Invalid` for an empty
    ``argv``, a name no environment can hold, or a NUL.
    """
    if not argv:
        raise Invalid("the command line is empty")
    for word in argv:
        if "\0" in word:
            raise Invalid("an argument contains a NUL byte, which no command line can carry")
    lines = ["#!/usr/bin/env bash"]
    if header:
        lines += _comment(header)
    lines += ["set -euo pipefail", ""]
    ran_in = f"The job ran in {job_dir}; " if job_dir else ""
    if workdir is None:
        lines += _comment([f"{ran_in}this run gets a fresh directory of its own."])
        label = f"multiflexi-job-{job_id}." if job_id != "" else "multiflexi-job."
        lines.append(f'workdir=$(mktemp -d "${{TMPDIR:-/tmp}}/"{shlex.quote(label)}XXXXXX)')
    else:
        lines += _comment([f"{ran_in}this run uses {workdir}."])
        lines += [f"workdir={shlex.quote(workdir)}", 'mkdir -p -- "$workdir"']
    lines += [
        'cd -- "$workdir"',
        f"printf 'multiflexi: job %s runs in %s\\n' {shlex.quote(str(job_id))} \"$workdir\" >&2",
        "",
    ]
    lines += _comment(["Exactly the job's environment, nothing of this shell's (env -i)."])
    lines.append("job_env=(")
    for name, value, source in variables:
        _check(name, value)
        lines += ["  " + c for c in _comment([f"source: {' '.join(source.splitlines())}"])]
        if name == "MULTIFLEXI_TMP":
            lines.append("  " + shlex.quote(f"{name}=") + '"$workdir"')
        else:
            lines.append("  " + _rebased(f"{name}={value}", job_dir))
    lines += [")", ""]
    command = " ".join(_rebased(word, job_dir) for word in argv)
    lines.append(f'exec env -i -- "${{job_env[@]}}" {command}')
    return "\n".join(lines) + "\n"
