"""Credential type definitions in JSON: validation against the bundled upstream schemas.

Both upstream shapes are accepted: ``credential-type.json`` (1.1.0, localized names, select
options as strings) and ``credential-prototype.json`` (0.2.0, ``default_value``, options as
``{value, label}``), both bundled next to this module. A document is accepted when it is
valid under either; otherwise every violation of the schema it declares (``$schema``), or
else of the closer one, is reported with its JSON path.

A field typed ``string`` whose keyword names a secret (``FIO_TOKEN``, ``API_KEY``) is
imported as secret unless the definition says ``"secret": false``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from multiflexi.credentials.types import FieldSpec, TypeSpec, looks_secret, spec_violations
from multiflexi.errors import Invalid, NotFound

SCHEMAS = {
    "credential-type": "credential-type.json",
    "credential-prototype": "credential-prototype.json",
}


class DefinitionError(Invalid):
    """The credential type definition is invalid."""

    def __init__(self, message: str, violations: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.violations = list(violations)


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The bundled upstream schema ``credential-type`` or ``credential-prototype``."""
    text = resources.files("multiflexi.credentials").joinpath(SCHEMAS[kind]).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_violations(data: Any, kind: str) -> list[str]:
    """Every violation of the ``kind`` schema, as ``$.json.path: message``."""
    from jsonschema import Draft7Validator

    validator = Draft7Validator(load_schema(kind))
    errors = sorted(validator.iter_errors(data), key=lambda e: (e.json_path, e.message))
    return [f"{e.json_path}: {_short(e.message, e.instance)}" for e in errors]


def _short(message: str, instance: Any, limit: int = 160) -> str:
    """One line; a long offending value is named by its JSON kind instead of quoted."""
    shown = repr(instance)
    if len(shown) > 40 and message.startswith(shown):
        kinds: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
        message = kinds.get(type(instance), "the value") + message[len(shown) :]
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _declared_kind(data: dict[str, Any]) -> str | None:
    declared = str(data.get("$schema") or "")
    for kind in ("credential-prototype", "credential-type"):
        if kind in declared:
            return kind
    return None


def _text(value: Any) -> str:
    """A localized string (``{"en": ..., "cs": ...}``) reduced to English or its first value."""
    if isinstance(value, dict):
        return str(value.get("en") or next(iter(value.values()), "") or "")
    return "" if value is None else str(value)


def _default(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value)


def _options(raw: Any) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in raw or ():
        if isinstance(item, dict):
            value = str(item.get("value", ""))
            pairs.append((value, str(item.get("label", value))))
        else:
            pairs.append((str(item), str(item)))
    return tuple(pairs)


def _field(raw: dict[str, Any]) -> FieldSpec:
    description = _text(raw.get("description")) or _text(raw.get("name"))
    default = raw["default_value"] if "default_value" in raw else raw.get("default")
    return FieldSpec(
        keyword=str(raw["keyword"]),
        type=str(raw.get("type") or "string").lower(),
        description=description,
        hint=_text(raw.get("hint")),
        default=_default(default),
        required=bool(raw.get("required", False)),
        secret=raw["secret"] is True if "secret" in raw else looks_secret(str(raw["keyword"])),
        options=_options(raw.get("options")),
    )


def parse_document(data: Any, source: str = "definition") -> TypeSpec:
    """Validate a credential type or prototype JSON document and turn it into a spec.

    The document is accepted when it is valid under either bundled schema; otherwise the
    violations of the schema it declares (``$schema``), or else of the closer one, are
    reported in a :class:`DefinitionError`.
    """
    if not isinstance(data, dict):
        raise DefinitionError(
            f"{source}: a credential type must be a JSON object", ["$: not an object"]
        )
    declared = _declared_kind(data)
    order = [declared] if declared else []
    order += [kind for kind in SCHEMAS if kind != declared]
    results = {kind: schema_violations(data, kind) for kind in order}
    if all(results[kind] for kind in order):
        kind = declared or min(order, key=lambda k: len(results[k]))
        _raise(source, kind, results[kind])
    spec = TypeSpec(
        code=str(data["code"]),
        uuid=str(data["uuid"]),
        name=_text(data.get("name")),
        description=_text(data.get("description")),
        version=str(data.get("version") or "1.0"),
        url=str(data.get("url") or data.get("homepage") or ""),
        logo=str(data.get("logo") or ""),
        fields=tuple(_field(raw) for raw in data.get("fields") or ()),
    )
    problems = spec_violations(spec)
    if problems:
        _raise(source, "credential type", problems)
    return spec


def _raise(source: str, kind: str, violations: list[str]) -> None:
    count = f"{len(violations)} violation{'s' if len(violations) != 1 else ''}"
    raise DefinitionError(
        f"{source} is not a valid {kind} ({count}): {'; '.join(violations)}", violations
    )


def read_document(path: str) -> TypeSpec:
    """Read and parse a JSON definition file."""
    from pathlib import Path

    file = Path(path)
    try:
        raw = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    return parse_document(data, source=str(path))
