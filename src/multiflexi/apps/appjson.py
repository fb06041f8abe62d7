"""Application definition files (``*.multiflexi.app.json``): read, validate, export.

Pure code, no database. The flow of an import is::

    read_document(path)  ->  Document (parsed, refused with a line and column if broken)
    validate(data)       ->  every schema violation, each with its JSON path
    normalize(data)      ->  AppSpec + warnings          (see :mod:`multiflexi.apps.normalize`)
    to_document(spec)    ->  the export document, which normalizes back to the same spec

The schema is the bundled ``application.schema.json``; its ``$schema``/``$id`` URLs are
never fetched.
"""

from __future__ import annotations

import json
import re
import uuid as uuid_mod
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from multiflexi.apps.spec import (
    SECRET_TYPES,
    AppSpec,
    ArtifactSpec,
    Document,
    ExitCodeSpec,
    FieldSpec,
    Violation,
    json_path,
    type_name,
)
from multiflexi.errors import AppDefinitionError, Invalid, NotFound

SCHEMA_URL = (
    "https://raw.githubusercontent.com/VitexSoftware/php-vitexsoftware-multiflexi-core"
    "/refs/heads/main/multiflexi.app.schema.json"
)
MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64


# -- reading ----------------------------------------------------------------------------


class _Pairs(dict[str, Any]):
    """An object as parsed, remembering keys that occurred more than once."""

    duplicates: tuple[str, ...] = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _Pairs()
    dups: list[str] = []
    for key, value in pairs:
        if key in obj and key not in dups:
            dups.append(key)
        obj.setdefault(key, value)
    if dups:
        obj.duplicates = tuple(dups)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    line, col = exc.lineno, exc.colno
    before = text[: exc.pos].rstrip()
    here = text[exc.pos : exc.pos + 1]
    if before.endswith(",") and here in ("}", "]"):
        c_line, c_col = _line_col(text, len(before) - 1)
        return (
            f"line {c_line} column {c_col}: trailing comma before {here!r} "
            f"at line {line} column {col}"
        )
    message = exc.msg.removesuffix(" at")  # "Invalid control character at"
    return f"line {line} column {col}: {message}"


def _structure_problems(data: Any) -> Iterator[Violation]:
    """Duplicate keys and nesting deeper than MAX_DEPTH, walked without recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH and isinstance(node, dict | list) and node:
            yield Violation(json_path(path), f"nested deeper than {MAX_DEPTH} levels")
            continue
        if isinstance(node, _Pairs):
            for key in node.duplicates:
                yield Violation(json_path(path), f"duplicate key {key!r}")
            stack.extend((v, (*path, k)) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(node))))


def _plain(node: Any) -> Any:
    """The parsed tree with ordinary dicts (``_Pairs`` must not leak into JSON columns)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def parse_document(raw: bytes, source: str = "<input>") -> Document:
    """Parse the bytes of a definition file; broken input is refused with its location."""

    def refuse(message: str) -> AppDefinitionError:
        return AppDefinitionError(f"{source}: {message}", [str(Violation("$", message))])

    if len(raw) > MAX_BYTES:
        raise refuse(f"file is {len(raw)} bytes, larger than the limit of {MAX_BYTES}")
    warnings: list[Violation] = []
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        warnings.append(Violation("$", "UTF-8 byte order mark ignored"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", "replace")
        line, col = _line_col(prefix, len(prefix))
        raise refuse(
            f"line {line} column {col}: not UTF-8 (byte 0x{raw[exc.start]:02X} "
            f"at offset {exc.start})"
        ) from None
    try:
        data = json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise refuse(_syntax_message(text, exc)) from None
    except ValueError as exc:  # NaN / Infinity
        raise refuse(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise refuse(f"nested deeper than {MAX_DEPTH} levels") from None
    problems = list(_structure_problems(data))
    if problems:
        raise AppDefinitionError(
            f"{source}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            [str(p) for p in problems],
        )
    if not isinstance(data, dict):
        raise refuse(f"the top level must be an object, not {type_name(data)}")
    return Document(_plain(data), source, tuple(warnings))


def read_document(path: str | Path) -> Document:
    """Read and parse a definition file, refusing files over MAX_BYTES before reading them."""
    p = Path(path)
    try:
        if not p.exists():
            raise NotFound(f"file not found: {p}")
        if not p.is_file():
            raise Invalid(f"not a regular file: {p}")
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise AppDefinitionError(
                f"{p}: $: file is {size} bytes, larger than the limit of {MAX_BYTES}",
                [f"$: file is {size} bytes, larger than the limit of {MAX_BYTES}"],
            )
        with p.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise Invalid(f"cannot read {p}: {exc.strerror}") from None
    return parse_document(raw, str(p))


# -- schema validation ------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    """The bundled application schema."""
    text = resources.files("multiflexi.apps").joinpath("application.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> Any:
    from jsonschema import Draft7Validator, FormatChecker

    # Only formats we can check without optional packages, so that validity does not depend
    # on what happens to be installed.
    checker = FormatChecker(formats=())

    @checker.checks("uuid")
    def _is_uuid(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            uuid_mod.UUID(value)
        except ValueError:
            return False
        return len(value) == 36

    @checker.checks("uri")
    def _is_uri(value: object) -> bool:
        return (
            not isinstance(value, str)
            or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:\S+$", value) is not None
        )

    return Draft7Validator(schema(), format_checker=checker)


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def validate(data: Any) -> list[Violation]:
    """Every violation of the schema, ordered by path; empty when the document is valid."""
    found: list[tuple[tuple[str, ...], Violation]] = []
    for error in _validator().iter_errors(data):
        path = list(error.absolute_path)
        message = error.message
        if error.validator in ("oneOf", "anyOf") and error.context:
            # "... is not valid under any of the given schemas" hides the useful part.
            best = min(
                error.context,
                key=lambda e: (-len(e.absolute_path), e.validator == "type", e.message),
            )
            path = list(best.absolute_path)
            message = best.message
        v = Violation(json_path(path), _shorten(message))
        found.append((tuple(str(p) for p in path), v))
    found.sort(key=lambda item: (item[0], item[1].message))
    unique: list[Violation] = []
    for _, v in found:
        if v not in unique:
            unique.append(v)
    return unique


# -- export -----------------------------------------------------------------------------


def localized(base: str, translations: dict[str, str] | None) -> str | dict[str, str]:
    """The base value, or the translations with the base language set to it."""
    if not translations:
        return base
    out = dict(translations)
    out["en" if "en" in out else next(iter(out))] = base
    return out


def typed_defval(field_type: str, value: str) -> Any:
    """A default as the JSON type its field declares, when it has the canonical form."""
    if field_type == "bool" and value in ("true", "false"):
        return value == "true"
    if field_type == "integer" and re.fullmatch(r"-?(0|[1-9][0-9]*)", value):
        return int(value)
    if field_type == "float":
        try:
            number = float(value)
        except ValueError:
            return value
        if repr(number) == value:
            return number
    return value


def _field_document(f: FieldSpec) -> dict[str, Any]:
    tr = f.extra.get("translations", {})
    doc: dict[str, Any] = {"type": f.type}
    if f.name:
        doc["name"] = localized(f.name, tr.get("name"))
    doc["description"] = localized(f.description, tr.get("description"))
    if f.hint:
        doc["hint"] = localized(f.hint, tr.get("hint"))
    if f.note:
        doc["note"] = localized(f.note, tr.get("note"))
    if f.defval is not None:
        doc["defval"] = typed_defval(f.type, f.defval)
    doc["required"] = f.required
    if f.category:
        doc["category"] = f.category
    if f.options is not None:
        doc["options"] = f.options
    if f.secret and f.type not in SECRET_TYPES:
        doc["secret"] = True
    if f.multiline:
        doc["multiline"] = True
    if f.expiring:
        doc["expiring"] = True
    for key, value in f.extra.get("attributes", {}).items():
        doc.setdefault(key, value)
    return doc


def _artifact_document(a: ArtifactSpec) -> dict[str, Any]:
    tr = a.extra.get("translations", {})
    doc: dict[str, Any] = {
        "name": localized(a.name, tr.get("name")),
        "path": a.path,
        "type": a.type,
    }
    if a.description:
        doc["description"] = localized(a.description, tr.get("description"))
    for key, value in a.extra.get("attributes", {}).items():
        doc.setdefault(key, value)
    return doc


def _exit_code_document(e: ExitCodeSpec) -> dict[str, Any]:
    tr = e.extra.get("translations", {})
    doc: dict[str, Any] = {
        "description": localized(e.description, tr.get("description")),
        "severity": e.severity,
        "retry": e.retry,
    }
    for key, value in e.extra.get("attributes", {}).items():
        doc.setdefault(key, value)
    return doc


def to_document(spec: AppSpec) -> dict[str, Any]:
    """The definition document of an application; :func:`normalize` gives ``spec`` back."""
    tr = spec.extra.get("translations", {})
    doc: dict[str, Any] = {
        "$schema": SCHEMA_URL,
        "name": localized(spec.name, tr.get("name")),
        "description": localized(spec.description, tr.get("description")),
    }
    optional = {
        "uuid": spec.uuid,
        "code": spec.code,
        "version": spec.version,
        "executable": spec.executable,
        "cmdparams": spec.cmdparams,
        "setup": spec.setup,
        "deploy": spec.deploy,
        "homepage": spec.homepage,
        "image": spec.image,
        "ociimage": spec.ociimage,
        "resultfile": spec.resultfile,
    }
    doc.update({k: v for k, v in optional.items() if v or k == "executable"})
    if spec.tags:
        doc["tags"] = list(spec.tags)
    if spec.requirements:
        doc["requirements"] = list(spec.requirements)
    doc["environment"] = {f.keyname: _field_document(f) for f in spec.fields}
    if spec.artifacts:
        doc["artifacts"] = [_artifact_document(a) for a in spec.artifacts]
    if spec.exit_codes:
        doc["exitCodes"] = {str(e.code): _exit_code_document(e) for e in spec.exit_codes}
    for key, value in spec.extra.get("keys", {}).items():
        doc.setdefault(key, value)
    return doc


def dumps(doc: dict[str, Any]) -> str:
    """The text of an exported definition file."""
    return json.dumps(doc, indent=4, ensure_ascii=False) + "\n"


# -- application codes ------------------------------------------------------------------


def code_stem(name: str, length: int = 8) -> str:
    """A short upper-case code for ``name``: the whole name when it fits, else the initials
    of its leading words (acronyms whole) and its last word: ``AbraFlexi Digest daily`` ->
    ``AFDDAILY``. ASCII letters and digits only (accents dropped); ``APP`` for none."""
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words: list[str] = re.findall(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]+|[A-Z]|[0-9]+", ascii_name)
    joined = "".join(words).upper()
    if len(joined) <= length:
        return joined or "APP"
    head = "".join(w if w.isupper() or w.isdigit() else w[0] for w in words[:-1])
    return (head + words[-1]).upper()[:length]


def code_candidates(name: str, length: int = 8) -> Iterator[str]:
    """Codes to try for a new application, in order: the stem, then the stem with a number."""
    stem = code_stem(name, length)
    yield stem
    n = 2
    while True:
        suffix = str(n)
        yield stem[: max(1, length - len(suffix))] + suffix
        n += 1
