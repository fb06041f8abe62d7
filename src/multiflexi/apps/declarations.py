"""Lenient reading of what a definition declares: environment, artifacts, exit codes.

Values are read through a :class:`Reader`, which collects warnings (normalised) and errors
(refused), each with its JSON path.
"""

from __future__ import annotations

import json
import re
from typing import Any

from multiflexi.apps.spec import (
    SECRET_TYPES,
    ArtifactSpec,
    ExitCodeSpec,
    FieldSpec,
    Violation,
    json_path,
    type_name,
)
from multiflexi.env.names import SHELL_NAME, name_problem

FIELD_TYPES = frozenset(
    ["string", "file-path", "email", "url", "integer", "float", "bool", "password", "set", "text"]
)
TYPE_ALIASES = {
    "boolean": "bool",
    "checkbox": "bool",
    "switch": "bool",
    "number": "integer",
    "int": "integer",
    "select": "set",
    "directory": "file-path",
    "file": "file-path",
    "secret": "password",
    "textarea": "text",
}
CATEGORIES = ("API", "Database", "Behavior", "Security", "Other")
SEVERITIES = ("success", "info", "warning", "error", "critical")
#: A name a shell can use; others (``BANKA+``) are imported with a warning.
VARIABLE_NAME = SHELL_NAME
LANGUAGE = re.compile(r"[a-z]{2}([_-][A-Za-z]{2})?")
TRUE = frozenset({"true", "1", "yes", "on", "y"})
FALSE = frozenset({"false", "0", "no", "off", "n"})
FIELD_KEYS = frozenset(
    [
        "type",
        "name",
        "description",
        "defval",
        "required",
        "hint",
        "note",
        "secret",
        "multiline",
        "expiring",
        "category",
        "options",
    ]
)
#: TEXT holds 65,535 bytes on MariaDB.
TEXT_BYTES = 65535


class Reader:
    """Collects warnings and errors, each with its JSON path, while values are read."""

    def __init__(self) -> None:
        self.warnings: list[Violation] = []
        self.errors: list[Violation] = []

    def warn(self, path: tuple[str | int, ...], message: str) -> None:
        self.warnings.append(Violation(json_path(path), message))

    def error(self, path: tuple[str | int, ...], message: str) -> None:
        self.errors.append(Violation(json_path(path), message))

    # -- scalars ----------------------------------------------------------------------

    def text(self, value: Any, path: tuple[str | int, ...], limit: int | None = None) -> str:
        """A string value; numbers and booleans are converted with a warning."""
        if value is None:
            return ""
        if isinstance(value, bool):
            out = "true" if value else "false"
            self.warn(path, f"{type_name(value)} converted to the string {out!r}")
        elif isinstance(value, int | float):
            out = str(value)
            self.warn(path, f"{type_name(value)} converted to the string {out!r}")
        elif isinstance(value, str):
            out = value
        else:
            self.error(path, f"must be a string, not {type_name(value)}")
            return ""
        self.check_size(out, path, limit)
        return out

    def check_size(self, value: str, path: tuple[str | int, ...], limit: int | None) -> None:
        if limit is not None and len(value) > limit:
            self.error(path, f"longer than {limit} characters ({len(value)})")
        elif len(value.encode("utf-8")) > TEXT_BYTES:
            self.error(path, f"longer than {TEXT_BYTES} bytes")

    def flag(self, value: Any, path: tuple[str | int, ...]) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in TRUE or low in FALSE:
            self.warn(path, f"{type_name(value)} {value!r} read as {low in TRUE}")
            return low in TRUE
        self.warn(path, f"{value!r} is not a boolean; read as false")
        return False

    def localized(
        self, value: Any, path: tuple[str | int, ...], limit: int | None = None
    ) -> tuple[str, dict[str, str] | None]:
        """A string or ``{"en": ..., "cs": ...}``: (base value = en, else first; translations)."""
        if not isinstance(value, dict):
            return self.text(value, path, limit), None
        if not value:
            self.warn(path, "empty translation object read as an empty string")
            return "", None
        out = {str(lang): self.text(text, (*path, lang), limit) for lang, text in value.items()}
        return out["en"] if "en" in out else next(iter(out.values())), out

    def string_list(self, value: Any, path: tuple[str | int, ...]) -> list[str]:
        """A list of strings; a comma-separated string is split, with a warning."""
        if value is None:
            return []
        if isinstance(value, str):
            if value.strip():
                self.warn(path, "comma-separated string read as a list")
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            items = [self.text(item, (*path, i)).strip() for i, item in enumerate(value)]
            return [item for item in items if item]
        self.error(path, f"must be a list of strings, not {type_name(value)}")
        return []


# -- environment ----------------------------------------------------------------------


def _canonical_defval(
    r: Reader, field_type: str, value: Any, path: tuple[str | int, ...]
) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        out = json.dumps(value, ensure_ascii=False)
        r.warn(path, f"{type_name(value)} stored as its JSON text")
        return out
    given = value
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = repr(value) if isinstance(value, float) else str(value)
    canonical: str = str(value)
    stripped = canonical.strip()
    if field_type == "bool" and stripped:
        low = stripped.lower()
        if low in TRUE or low in FALSE:
            canonical = "true" if low in TRUE else "false"
        elif "{" not in stripped:
            r.warn(path, f"{given!r} is not a boolean; kept as it is")
    elif field_type == "integer" and stripped:
        whole = re.fullmatch(r"([+-]?\d+)(\.0*)?", stripped)
        if whole:
            canonical = str(int(whole.group(1)))
        elif "{" not in stripped:
            r.warn(path, f"{given!r} is not an integer; kept as it is")
    elif field_type == "float" and stripped:
        try:
            number = float(stripped)
        except ValueError:
            number = None
        if number is not None and number == number and abs(number) != float("inf"):
            canonical = repr(number)
        elif "{" not in stripped:
            r.warn(path, f"{given!r} is not a number; kept as it is")
    is_json_typed = (field_type == "bool" and isinstance(given, bool)) or (
        field_type in ("integer", "float")
        and isinstance(given, int | float)
        and not isinstance(given, bool)
    )
    if isinstance(given, bool | int | float) and not is_json_typed:
        r.warn(path, f"{given!r} stored as the string {canonical!r}")
    elif canonical != given and not is_json_typed:
        r.warn(path, f"{given!r} normalised to {canonical!r}")
    r.check_size(canonical, path, None)
    return canonical


def _field(r: Reader, key: str, decl: Any, path: tuple[str | int, ...]) -> FieldSpec | None:
    if not isinstance(decl, dict):
        r.error(path, f"a declaration must be an object, not {type_name(decl)}")
        return None
    raw_type = decl.get("type")
    ftype = "string"
    if raw_type is not None:
        ftype = r.text(raw_type, (*path, "type"), 32).strip().lower() or "string"
        if ftype in TYPE_ALIASES:
            r.warn((*path, "type"), f"{raw_type!r} read as {TYPE_ALIASES[ftype]!r}")
            ftype = TYPE_ALIASES[ftype]
        elif ftype != raw_type and ftype in FIELD_TYPES:
            r.warn((*path, "type"), f"{raw_type!r} read as {ftype!r}")
        if ftype not in FIELD_TYPES:
            # An unknown type has no defined value check or secrecy: importing it could
            # store a secret as plain text, so even a lenient import refuses it.
            r.error(
                (*path, "type"),
                f"unknown type {raw_type!r} (known: {', '.join(sorted(FIELD_TYPES))})",
            )
    translations: dict[str, dict[str, str]] = {}
    texts: dict[str, str] = {}
    for attr in ("name", "description", "hint", "note"):
        base, tr = r.localized(decl.get(attr), (*path, attr), 255 if attr == "name" else None)
        texts[attr] = base
        if tr is not None:
            translations[attr] = tr
    category = ""
    raw_category = decl.get("category")
    if raw_category not in (None, ""):
        wanted = r.text(raw_category, (*path, "category"))
        matches = [c for c in CATEGORIES if c.lower() == wanted.strip().lower()]
        if matches:
            category = matches[0]
            if category != wanted:
                r.warn((*path, "category"), f"{wanted!r} read as {category!r}")
        else:
            r.warn(
                (*path, "category"),
                f"unknown category {wanted!r} dropped (known: {', '.join(CATEGORIES)})",
            )
    options = decl.get("options")
    if options is not None and not isinstance(options, dict | list):
        r.warn(
            (*path, "options"),
            f"{type_name(options)} kept, but options should be an object or an array",
        )
    attributes = {k: v for k, v in decl.items() if k not in FIELD_KEYS}
    extra: dict[str, Any] = {}
    if translations:
        extra["translations"] = translations
    if attributes:
        extra["attributes"] = attributes
    declared_secret = r.flag(decl.get("secret"), (*path, "secret")) if "secret" in decl else False
    return FieldSpec(
        keyname=key,
        type=ftype,
        name=texts["name"],
        description=texts["description"],
        defval=_canonical_defval(r, ftype, decl.get("defval"), (*path, "defval")),
        required=r.flag(decl.get("required"), (*path, "required")),
        hint=texts["hint"],
        note=texts["note"],
        secret=declared_secret or ftype in SECRET_TYPES,
        multiline=r.flag(decl.get("multiline"), (*path, "multiline")),
        expiring=r.flag(decl.get("expiring"), (*path, "expiring")),
        category=category,
        options=options,
        extra=extra,
    )


def environment(r: Reader, env: Any) -> tuple[FieldSpec, ...]:
    if env is None:
        r.warn(("environment",), "missing; the application declares no environment")
        return ()
    if not isinstance(env, dict):
        r.error(
            ("environment",), f"must be an object of variable declarations, not {type_name(env)}"
        )
        return ()
    fields: list[FieldSpec] = []
    seen: dict[str, str] = {}
    for key, decl in env.items():
        path: tuple[str | int, ...] = ("environment", key)
        problem = name_problem(key)
        if problem is not None:
            r.error(path, f"not a variable name: it {problem}")
            continue
        if not VARIABLE_NAME.fullmatch(key):
            r.warn(
                path,
                "not a name a shell can use (letters, digits and _, not starting with a "
                "digit): passed to the process as it is, but no {VAR} macro can refer to it",
            )
        if len(key) > 64:
            r.error(path, "variable name longer than 64 characters")
            continue
        if key.upper() in seen:
            # MariaDB compares names without case, so these two could not both be stored.
            r.error(path, f"differs only in case from {seen[key.upper()]!r}")
            continue
        seen[key.upper()] = key
        spec = _field(r, key, decl, path)
        if spec is not None:
            fields.append(spec)
    return tuple(fields)


# -- artifacts and exit codes ---------------------------------------------------------


def artifacts(r: Reader, value: Any) -> tuple[ArtifactSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.error(("artifacts",), f"must be an array, not {type_name(value)}")
        return ()
    out: list[ArtifactSpec] = []
    for i, item in enumerate(value):
        path: tuple[str | int, ...] = ("artifacts", i)
        if not isinstance(item, dict):
            r.error(path, f"must be an object, not {type_name(item)}")
            continue
        pattern = r.text(item.get("path"), (*path, "path"), 512)
        if not pattern:
            r.error((*path, "path"), "missing: an artifact needs a path pattern")
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            r.warn((*path, "path"), f"not a valid regular expression here: {exc}")
        name, name_tr = r.localized(item.get("name"), (*path, "name"), 255)
        description, desc_tr = r.localized(item.get("description"), (*path, "description"))
        kind = r.text(item.get("type"), (*path, "type"), 128) or "file"
        if "type" not in item:
            r.warn((*path, "type"), "missing; 'file' assumed")
        extra: dict[str, Any] = {}
        tr = {k: v for k, v in (("name", name_tr), ("description", desc_tr)) if v is not None}
        if tr:
            extra["translations"] = tr
        attributes = {
            k: v for k, v in item.items() if k not in ("name", "path", "type", "description")
        }
        if attributes:
            r.warn(path, f"unknown attributes kept: {', '.join(attributes)}")
            extra["attributes"] = attributes
        out.append(
            ArtifactSpec(path=pattern, name=name, type=kind, description=description, extra=extra)
        )
    return tuple(out)


def _exit_code(r: Reader, code: int, value: Any, path: tuple[str | int, ...]) -> ExitCodeSpec:
    if not isinstance(value, dict) or (
        value and "description" not in value and all(LANGUAGE.fullmatch(k) for k in value)
    ):
        # Legacy shape: the value is the (localized) description itself.
        value = {"description": value}
    description, tr = r.localized(value.get("description"), (*path, "description"))
    severity = "error"
    if value.get("severity") is not None:
        wanted = r.text(value.get("severity"), (*path, "severity")).strip().lower()
        if wanted in SEVERITIES:
            severity = wanted
        else:
            r.warn((*path, "severity"), f"unknown severity {wanted!r}; 'error' assumed")
    extra: dict[str, Any] = {"translations": {"description": tr}} if tr is not None else {}
    attributes = {k: v for k, v in value.items() if k not in ("description", "severity", "retry")}
    if attributes:
        r.warn(path, f"unknown attributes kept: {', '.join(attributes)}")
        extra["attributes"] = attributes
    retry = r.flag(value.get("retry"), (*path, "retry"))
    return ExitCodeSpec(
        code=code, description=description, severity=severity, retry=retry, extra=extra
    )


def exit_codes(r: Reader, data: dict[str, Any]) -> tuple[ExitCodeSpec, ...]:
    found: dict[int, ExitCodeSpec] = {}
    for key in ("exitCodes", "exitcodes", "returnCodes"):
        value = data.get(key)
        if value is None:
            continue
        if key != "exitCodes":
            r.warn(
                (key,),
                f"legacy key read as exitCodes{' (exitCodes wins)' if 'exitCodes' in data else ''}",
            )
        if isinstance(value, list):
            r.warn((key,), "array of exit codes read as an object keyed by code")
            value = {
                str(item.get("code")) if isinstance(item, dict) else "?": item for item in value
            }
        if not isinstance(value, dict):
            r.error((key,), f"must be an object keyed by exit code, not {type_name(value)}")
            continue
        for raw_code, item in value.items():
            path: tuple[str | int, ...] = (key, raw_code)
            if (
                not re.fullmatch(r"\s*-?\d{1,10}\s*", raw_code)
                or not -(2**31) <= int(raw_code) < 2**31
            ):
                r.error(path, "an exit code must be a whole number")
                continue
            code = int(raw_code)
            if code in found:
                r.warn(path, f"exit code {code} is already declared; this one is ignored")
                continue
            found[code] = _exit_code(r, code, item, path)
    return tuple(found[c] for c in sorted(found))
