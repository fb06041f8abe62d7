"""The values an application definition is read into, and how problems are located.

Frozen dataclasses shaped like our tables (``apps``, ``conffield``, ``app_artifacts``,
``app_exit_codes``); anything without a column travels in ``extra``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Field types whose values are secret whatever the declaration says.
SECRET_TYPES = frozenset({"password", "secret"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Violation:
    """One problem in a definition: where (a JSON path such as ``$.environment.X``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass(frozen=True)
class FieldSpec:
    """A declared environment variable, normalised."""

    keyname: str
    type: str = "string"
    name: str = ""
    description: str = ""
    defval: str | None = None
    required: bool = False
    hint: str = ""
    note: str = ""
    secret: bool = False
    multiline: bool = False
    expiring: bool = False
    category: str = ""
    options: Any = None
    #: ``translations`` ({attribute: {lang: text}}) and ``attributes`` (anything else).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactSpec:
    """A declared result file: a regular expression on paths in the job directory."""

    path: str
    name: str = ""
    type: str = "file"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExitCodeSpec:
    code: int
    description: str = ""
    severity: str = "error"
    retry: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AppSpec:
    """Everything an application definition says, in the shape of our tables."""

    name: str
    executable: str
    description: str = ""
    uuid: str | None = None
    code: str | None = None
    version: str = ""
    cmdparams: str = ""
    setup: str = ""
    deploy: str = ""
    homepage: str = ""
    image: str = ""
    ociimage: str = ""
    resultfile: str = ""
    tags: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    artifacts: tuple[ArtifactSpec, ...] = ()
    exit_codes: tuple[ExitCodeSpec, ...] = ()
    #: ``translations`` ({"name"|"description": {lang: text}}) and ``keys`` (top-level keys
    #: we have no column for: produces, consumes, events, kubernetes, unknown ones ...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """A parsed definition file."""

    data: dict[str, Any]
    source: str
    warnings: tuple[Violation, ...] = ()


def json_path(parts: Sequence[str | int]) -> str:
    """``["environment", "A-B", 0]`` -> ``$.environment['A-B'][0]``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}"
        else:
            out += "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
