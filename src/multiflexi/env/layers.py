"""Environment layers with provenance.

Layers are applied in order, later ones winning, so the most specific value wins: global
job environment -> app defaults -> company environment -> credentials -> run template
configuration -> injected ``MULTIFLEXI_*`` -> one-off overrides (the order itself is
:func:`multiflexi.jobs.environment.gather_layers`'s). Every value remembers which layer
set it, and what it shadowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class EnvVar:
    """One environment variable and where its value came from.

    ``source`` is a short provenance label such as ``global``, ``app:12 default``,
    ``company:2``, ``credential:3 (FioBank)``, ``runtemplate:5``, ``multiflexi`` or
    ``override``. ``shadowed``: the values of earlier layers this one replaced, the
    nearest first (each without a ``shadowed`` of its own).
    """

    name: str
    value: str
    source: str
    secret: bool = False
    description: str = ""
    shadowed: tuple[EnvVar, ...] = ()


class Env(Mapping[str, EnvVar]):
    """An ordered, immutable set of variables, keyed by name."""

    __slots__ = ("_vars",)

    def __init__(self, variables: Iterable[EnvVar] = ()) -> None:
        self._vars: dict[str, EnvVar] = {}
        for var in variables:
            self._vars[var.name] = var

    def __getitem__(self, name: str) -> EnvVar:
        return self._vars[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __len__(self) -> int:
        return len(self._vars)

    def __repr__(self) -> str:
        return f"Env({list(self._vars.values())!r})"

    def as_dict(self) -> dict[str, str]:
        """Name -> value, as a process environment."""
        return {name: var.value for name, var in self._vars.items()}

    def secret_values(self) -> set[str]:
        """The non-empty values of secret variables (for masking and redaction)."""
        return {var.value for var in self._vars.values() if var.secret and var.value}

    def with_values(self, values: Mapping[str, str]) -> Env:
        """A copy with some values replaced, keeping each variable's provenance."""
        return Env(
            replace(var, value=values[name]) if name in values else var
            for name, var in self._vars.items()
        )


def assemble(layers: Iterable[Iterable[EnvVar]]) -> Env:
    """Merge layers in order; a later layer wins and remembers what it shadowed. A
    variable once declared secret stays secret even when a later layer sets its value."""
    merged: dict[str, EnvVar] = {}
    for layer in layers:
        for var in layer:
            previous = merged.get(var.name)
            if previous is not None:
                var = replace(
                    var,
                    secret=var.secret or previous.secret,
                    description=var.description or previous.description,
                    shadowed=(replace(previous, shadowed=()), *previous.shadowed),
                )
            merged[var.name] = var
    return Env(merged.values())
