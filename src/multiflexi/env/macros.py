"""``{VAR}`` and ``${VAR}`` macros, expanded in one pass.

A macro names a variable (``[A-Za-z_][A-Za-z0-9_]*``) in braces, with or without a leading
``$``. Expansion replaces each macro by the variable's value exactly once: text that came
from a value is never scanned again, so a value that itself contains ``{OTHER}`` arrives
literally, chains do not resolve, and cycles cannot exist. A macro whose variable is not
defined stays as written, so a typo is visible in the result instead of vanishing.

Upstream expanded ``{KEY}`` in field order, so a chain resolved only when the referenced
field happened to come first (reference §5.4); one pass against the unexpanded values
gives the same answer whatever the order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from multiflexi.env.layers import Env

#: ``{NAME}`` or ``${NAME}``; group 1 is the name.
MACRO = re.compile(r"\$?\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``{VAR}`` and ``${VAR}`` in ``template`` by ``values[VAR]``, once.

    >>> expand("{A}-${B}-{C}", {"A": "x", "B": "{A}"})
    'x-{A}-{C}'
    """

    def substitute(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None else value

    return MACRO.sub(substitute, template)


def expand_env(env: Env) -> Env:
    """Expand the macros in every value of ``env`` against the *unexpanded* values.

    One pass: ``A={B}`` and ``B={C}`` give ``A`` the literal text ``{C}``, so the result
    does not depend on the order of the variables and no cycle can loop. Each variable
    keeps its provenance, secrecy and description.
    """
    raw = env.as_dict()
    changed = {
        name: expanded
        for name, value in raw.items()
        if "{" in value and (expanded := expand(value, raw)) != value
    }
    return env.with_values(changed) if changed else env


def placeholders(template: str) -> list[str]:
    """The variable names that ``template`` refers to, in order of first use, without
    duplicates.

    >>> placeholders("--from {A} --to ${B} --again {A}")
    ['A', 'B']
    """
    return list(dict.fromkeys(MACRO.findall(template)))
