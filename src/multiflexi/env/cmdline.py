"""From an application's command-line template to an argv list.

Upstream pasted values into a string and ran it with ``sh -c``, escaping only spaces
(reference §5.4), so a value with a quote, ``;`` or ``$(...)`` changed the command. Here
the *template* is split into words first, with POSIX shell rules, and macros are expanded
inside each word afterwards: whatever a value contains, it stays inside the word it was
written in, and no shell ever sees it. A shell line is produced only for display
(:func:`display`) and script export, always with every word quoted.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from multiflexi.env.macros import MACRO, expand
from multiflexi.errors import Invalid

#: What :func:`redact_argv` puts in place of a secret.
REDACTED = "••••••••"


def build_argv(executable: str, cmdparams: str, values: Mapping[str, str]) -> list[str]:
    """The argv of a job: ``executable`` then the words of ``cmdparams``, macros expanded.

    - ``cmdparams`` is split like a POSIX shell would (quotes group words, a backslash
      escapes), *then* ``{VAR}``/``${VAR}`` are replaced inside each word, so a value with
      spaces, quotes, ``$``, backticks, ``;`` or newlines arrives as one argument, intact.
    - A word that is nothing but one macro whose value is empty or undefined is dropped,
      so an optional parameter leaves no empty argument behind. Inside a longer word an
      undefined macro stays as written.
    - ``executable`` is expanded too; if it ends up empty, that is an error.

    Raises :class:`~multiflexi.errors.Invalid` for a template with an unterminated quote
    or a trailing backslash, or an empty executable.

    >>> build_argv("app", "--name {NAME} {OPT} -x", {"NAME": "a b; rm -rf /", "OPT": ""})
    ['app', '--name', 'a b; rm -rf /', '-x']
    """
    program = expand(executable, values)
    if not program:
        raise Invalid(f"the executable {executable!r} is empty once macros are expanded")
    try:
        # comments=False (the default) keeps `#` literal: it is an ordinary character in
        # an argument such as a URL fragment or a colour.
        words = shlex.split(cmdparams, posix=True)
    except ValueError as exc:
        raise Invalid(f"command-line template {cmdparams!r} cannot be split: {exc}") from None
    argv = [program]
    for word in words:
        whole = MACRO.fullmatch(word)
        if whole is not None and not values.get(whole.group(1)):
            continue
        argv.append(expand(word, values))
    return argv


def display(argv: Sequence[str]) -> str:
    """A shell-quoted rendering of ``argv``, for people and logs; never executed."""
    return shlex.join(argv)


def redact_argv(argv: Sequence[str], secrets: Iterable[str], mask: str = REDACTED) -> list[str]:
    """``argv`` with every occurrence of each non-empty secret replaced by ``mask``.

    Longer secrets are replaced first, so a secret that contains a shorter one is hidden
    whole rather than leaving its remainder visible.
    """
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not ordered:
        return list(argv)
    redacted = []
    for arg in argv:
        for secret in ordered:
            arg = arg.replace(secret, mask)
        redacted.append(arg)
    return redacted


def resolve_executable(
    executable: str, path_env: str | None, *, cwd: Path | None = None
) -> str | None:
    """Where ``executable`` is, as the job will find it, or None.

    A name with a ``/`` is a path (relative to ``cwd`` when given): it must be an
    executable file. A bare name is searched in ``path_env``, the job's own ``PATH``; a
    job without ``PATH`` gets the system default (``os.defpath``), as ``execvp`` does.
    """
    if not executable:
        return None
    if "/" in executable:
        path = Path(executable)
        if cwd is not None and not path.is_absolute():
            path = cwd / path
        if path.is_file() and os.access(path, os.X_OK):
            return executable
        return None
    return shutil.which(executable, path=os.defpath if path_env is None else path_env)
