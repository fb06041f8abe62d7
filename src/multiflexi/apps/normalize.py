"""Lenient reading of application definitions: real-world files into an :class:`AppSpec`.

Published definitions drift from the schema in known ways (comma-separated tags, legacy
type names, booleans as strings, ``${VAR}`` placeholders, legacy exit-code keys, ...).
Those are normalised, each with a warning. What cannot be read without guessing is an
error with its JSON path; all errors are collected and raised together, so one run shows
everything to fix. Anything without a column is kept in ``extra`` so that export gives it
back.
"""

from __future__ import annotations

import re
from typing import Any

from multiflexi.apps.appjson import to_document, validate
from multiflexi.apps.declarations import VARIABLE_NAME, Reader, artifacts, environment, exit_codes
from multiflexi.apps.spec import AppSpec, Violation, json_path
from multiflexi.errors import AppDefinitionError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CODE = re.compile(r"[A-Za-z0-9_]{1,32}")

#: Top-level keys that have a column (or are handled here), and those the schema knows
#: without a column: the latter are kept in ``extra`` silently, unknown ones with a warning.
HANDLED = frozenset(
    [
        "$schema",
        "name",
        "description",
        "executable",
        "uuid",
        "code",
        "version",
        "cmdparams",
        "cmdparamsTemplate",
        "setup",
        "deploy",
        "homepage",
        "image",
        "ociimage",
        "resultfile",
        "tags",
        "topics",
        "requirements",
        "environment",
        "artifacts",
        "exitCodes",
        "exitcodes",
        "returnCodes",
    ]
)
SCHEMA_ONLY = frozenset(
    [
        "title",
        "author",
        "license",
        "category",
        "schemaVersion",
        "produces",
        "consumes",
        "events",
        "kubernetes",
        "limits",
    ]
)
#: Column sizes in characters.
LIMITS = {"name": 255, "executable": 255, "setup": 255, "deploy": 255, "homepage": 255,
          "ociimage": 255, "version": 64, "resultfile": 255, "uuid": 36}  # fmt: skip


# -- the document -------------------------------------------------------------------


def _cmdparams(r: Reader, data: dict[str, Any]) -> str:
    plain = r.text(data.get("cmdparams"), ("cmdparams",)).strip()
    template = r.text(data.get("cmdparamsTemplate"), ("cmdparamsTemplate",)).strip()
    chosen, key = (template, "cmdparamsTemplate") if template else (plain, "cmdparams")
    if plain and template and PLACEHOLDER.sub(r"{\1}", plain) != PLACEHOLDER.sub(r"{\1}", template):
        r.warn(("cmdparams",), "differs from cmdparamsTemplate, which is used instead")
    normalized = PLACEHOLDER.sub(r"{\1}", chosen)
    if normalized != chosen:
        r.warn((key,), f"${{VAR}} placeholders stored as {{VAR}}: {normalized!r}")
    return normalized


def _code(r: Reader, value: Any) -> str | None:
    if value in (None, ""):
        return None
    code = r.text(value, ("code",)).strip()
    if not CODE.fullmatch(code):
        r.warn(
            ("code",),
            f"{code!r} is not a code (1-32 letters, digits or _); one is derived from the name",
        )
        return None
    return code


def _fallback_name(r: Reader, data: dict[str, Any], file_name: str | None) -> str:
    """A name for a definition whose name is empty: its title, its file name, its executable."""
    title = r.localized(data.get("title"), ("title",), 255)[0].strip() if "title" in data else ""
    stem = re.sub(r"(\.multiflexi)?(\.app)?\.json$", "", file_name or "").strip()[:255]
    executable = data.get("executable")
    for what, candidate in (("title", title), ("file name", stem), ("executable", executable)):
        if isinstance(candidate, str) and candidate.strip():
            r.warn(("name",), f"empty; named {candidate.strip()!r} after its {what}")
            return candidate.strip()
    r.error(("name",), "empty: an application needs a name")
    return ""


def read(
    data: dict[str, Any], file_name: str | None = None
) -> tuple[AppSpec, list[Violation], list[Violation]]:
    """Read a parsed definition leniently: (spec, warnings, errors). With errors, the spec
    is incomplete and must not be stored. ``file_name`` names an application whose name is
    empty (after its title, else its file name)."""
    r = Reader()
    if "$schema" not in data:
        r.warn(("$schema",), "missing")
    name, name_tr = r.localized(data.get("name"), ("name",), 255)
    name = name.strip()
    if "name" not in data or data["name"] is None:
        r.error(("name",), "missing: an application needs a name")
    elif not name:
        name = _fallback_name(r, data, file_name)
    executable = r.text(data.get("executable"), ("executable",), 255).strip()
    if not executable:
        r.error(("executable",), "missing: an application needs an executable")
    if "description" not in data:
        r.warn(("description",), "missing")
    description, desc_tr = r.localized(data.get("description"), ("description",))
    ociimage = r.text(data.get("ociimage"), ("ociimage",), 255).strip()
    if "ociimage" in data and not ociimage:
        r.warn(("ociimage",), "empty string read as no image")
    tags = r.string_list(data.get("tags"), ("tags",))
    if "topics" in data:
        r.warn(("topics",), "legacy key read as tags")
        tags += [t for t in r.string_list(data.get("topics"), ("topics",)) if t not in tags]
    scalars = {
        k: r.text(data.get(k), (k,), LIMITS[k]).strip()
        for k in ("setup", "deploy", "homepage", "resultfile")
    }
    translations = {k: v for k, v in (("name", name_tr), ("description", desc_tr)) if v is not None}
    keys = {k: v for k, v in data.items() if k not in HANDLED}
    if "limits" in keys:
        _check_limits(r, keys["limits"])
    for key, value in keys.items():
        if key not in SCHEMA_ONLY:
            hint = ""
            if VARIABLE_NAME.fullmatch(key) and key.isupper() and isinstance(value, dict):
                hint = " (it looks like a variable declaration outside environment)"
            r.warn((key,), f"unknown key kept as it is{hint}")
    extra: dict[str, Any] = {}
    if translations:
        extra["translations"] = translations
    if keys:
        extra["keys"] = keys
    spec = AppSpec(
        name=name,
        executable=executable,
        description=description,
        uuid=r.text(data.get("uuid"), ("uuid",), LIMITS["uuid"]).strip() or None,
        code=_code(r, data.get("code")),
        version=r.text(data.get("version"), ("version",), LIMITS["version"]).strip(),
        cmdparams=_cmdparams(r, data),
        image=r.text(data.get("image"), ("image",)),
        ociimage=ociimage,
        tags=tuple(dict.fromkeys(tags)),
        requirements=tuple(
            dict.fromkeys(r.string_list(data.get("requirements"), ("requirements",)))
        ),
        fields=environment(r, data.get("environment")),
        artifacts=artifacts(r, data.get("artifacts")),
        exit_codes=exit_codes(r, data),
        extra=extra,
        **scalars,
    )
    if not r.errors:
        warned = {w.path for w in r.warnings}
        # What normalising could not fix is imported, but the user should know.
        for v in validate(to_document(spec)):
            if v.path not in warned:
                r.warnings.append(
                    Violation(v.path, f"{v.message} (kept; not valid against the schema)")
                )
    return spec, r.warnings, r.errors


def normalize(
    data: dict[str, Any], file_name: str | None = None
) -> tuple[AppSpec, list[Violation]]:
    """Read a parsed definition leniently: (spec, warnings), or AppDefinitionError listing
    every problem that stops the import."""
    spec, warnings, errors = read(data, file_name)
    if errors:
        raise AppDefinitionError(summary(errors), [str(e) for e in errors])
    return spec, warnings


def check(data: dict[str, Any], file_name: str | None = None) -> list[Violation]:
    """Every reason a strict import would refuse ``data``: the schema violations, then the
    problems the schema does not catch (an empty name, an invalid variable name, ...)."""
    violations = validate(data)
    covered: set[str] = set()
    for v in violations:
        covered.add(v.path)
        required = re.fullmatch(r"'(.+)' is a required property", v.message)
        if required:
            covered.add(v.path + json_path([required.group(1)])[1:])

    def is_covered(path: str) -> bool:
        return any(
            path == c or (c != "$" and (path.startswith(c + ".") or path.startswith(c + "[")))
            for c in covered
        )

    _, _, errors = read(data, file_name)
    return violations + [e for e in errors if not is_covered(e.path)]


def summary(problems: list[Violation], limit: int = 10) -> str:
    """Problems on one line: the first ``limit`` of them and how many more."""
    text = "; ".join(str(p) for p in problems[:limit])
    if len(problems) > limit:
        text += f"; and {len(problems) - limit} more"
    return text


def _check_limits(r: Reader, document: Any) -> None:
    """The application's default resource limits (``"limits": {"memory_limit": "256M"}``)."""
    from multiflexi.executors.limits import LimitError, app_defaults, parse_limit

    if not isinstance(document, dict):
        r.error(("limits",), "must be an object of limits (memory_limit, cpus ...)")
        return
    try:
        for name, value in app_defaults(document).items():
            if value is not None:
                parse_limit(name, value)
    except LimitError as exc:
        r.error(("limits",), str(exc))
