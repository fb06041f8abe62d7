"""What a variable name may be.

A process environment is a list of ``NAME=value`` strings: any name without ``=`` and
NUL reaches the process intact, and published applications use such names (``BANKA+``,
``BANKA-``). Names with control characters are refused too: nobody can read or type them,
and shown on a terminal they could rewrite it. A shell can set and read only ``[A-Za-z_][A-Za-z0-9_]*``, and so can a
``{VAR}`` macro: other names are accepted everywhere and passed to the process as they
are, and whatever writes a script or a ``.env`` file for a shell carries them another way
(``env 'BANKA+=…' command``).
"""

from __future__ import annotations

import re

from multiflexi.errors import Invalid

#: C0 and C1 control characters and DEL: a name with one could rewrite a terminal that
#: shows it (an escape sequence), and no application declares one.
_CONTROL = re.compile(r"[\x01-\x1f\x7f-\x9f]")
#: A name a POSIX shell can assign and expand.
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_shell_name(name: str) -> bool:
    """Whether a shell can set and read ``name``."""
    return SHELL_NAME.fullmatch(name) is not None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a variable of a process environment, or None."""
    if not name:
        return "is empty"
    if "=" in name:
        return "contains '=', which ends a variable's name in an environment"
    if "\x00" in name:
        return "contains a NUL byte, which no environment can carry"
    if _CONTROL.search(name):
        return "contains a control character, which no one could read or type"
    return None


def check_name(name: str, what: str = "variable name") -> str:
    """``name`` if a process environment can carry it, else :class:`Invalid`."""
    problem = name_problem(name)
    if problem is not None:
        raise Invalid(f"invalid {what} {name!r}: it {problem}")
    return name
