"""Validation of run-template values. Pure code: no database.

Configuration values are checked against the type each application declares for its keys
(``conffield.type``); the settings of a run template itself (interval, retries, overlap ...)
are checked by :func:`check_settings`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from multiflexi.env.layers import EnvVar
from multiflexi.errors import Invalid
from multiflexi.secrets import PREFIX, redact

#: Field types an application may declare.
TYPES = frozenset(
    {
        "string",
        "text",
        "integer",
        "float",
        "bool",
        "email",
        "url",
        "set",
        "file-path",
        "password",
        "secret",
    }
)

#: Older spellings, as upstream's ``Conffield::fixType`` maps them.
LEGACY_TYPES = {
    "directory": "file-path",
    "checkbox": "bool",
    "boolean": "bool",
    "switch": "bool",
    "number": "integer",
    "select": "set",
}

SECRET_TYPES = frozenset({"password", "secret"})
TRUE_WORDS = frozenset({"true", "1", "yes", "on", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", "n"})

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: Settings of a run template besides its configuration values.
SETTINGS = frozenset(
    ("name", "interv", "cron", "delay", "executor", "active", "timeout", "max_attempts",
     "retry_backoff", "retry_min_gap", "overlap", "mask_secrets", "keep_workdir", "note",
     "keep_success_days", "keep_failed_days", "keep_last", "on_interrupt", "memory_limit",
     "cpu_time_limit", "cpus", "max_processes", "max_open_files", "output_limit")
)  # fmt: skip
RETRY_BACKOFFS = ("none", "fixed", "linear", "exponential")
OVERLAPS = ("forbid", "allow", "skip")
#: What becomes of a job the platform interrupted (see jobs.lifecycle.interruption_retry).
ON_INTERRUPT = ("requeue", "fail")


@dataclass(frozen=True)
class FieldSpec:
    """What an application declares about one of its keys."""

    keyname: str
    type: str = "string"
    required: bool = False
    secret: bool = False
    options: Any = None
    defval: str | None = None

    @property
    def kind(self) -> str:
        return canonical_type(self.type)

    @property
    def is_secret(self) -> bool:
        return self.secret or self.kind in SECRET_TYPES


def canonical_type(declared: str | None) -> str:
    """The type a declaration means: legacy names mapped, unknown types as ``string``."""
    name = (declared or "string").strip().lower()
    name = LEGACY_TYPES.get(name, name)
    return name if name in TYPES else "string"


def option_values(options: Any) -> list[str]:
    """Allowed values of a ``set`` field: a list of values, or the keys of a
    value -> label mapping. Items of a list may themselves be ``{"value": ...}``."""
    if isinstance(options, Mapping):
        return [str(k) for k in options]
    if isinstance(options, list | tuple):
        out = []
        for item in options:
            if isinstance(item, Mapping) and "value" in item:
                out.append(str(item["value"]))
            else:
                out.append(str(item))
        return out
    return []


def validate_env_name(name: str, what: str = "variable name") -> str:
    """``name`` if a process environment can carry it (no ``=``, no NUL, not empty):
    names a shell cannot use (``BANKA+``) are passed to the process as they are."""
    from multiflexi.env.names import check_name

    return check_name(name, what)


def normalize_value(spec: FieldSpec, value: str) -> str:
    """The value to store for ``spec``, or :class:`Invalid` naming the key and the type.

    Booleans become ``true``/``false``; integers lose leading zeros and ``+``. The
    message never repeats the value of a secret key.
    """
    kind = spec.kind
    shown = "(hidden)" if spec.is_secret else repr(value)

    def wrong(expected: str) -> Invalid:
        return Invalid(f"configuration key {spec.keyname}: expected {expected}, got {shown}")

    if "\x00" in value:
        raise wrong("text without NUL characters")
    if kind in ("string", "text", "password", "secret"):
        return value
    stripped = value.strip()
    if kind == "integer":
        if not _INTEGER.match(stripped):
            raise wrong("an integer")
        return str(int(stripped))
    if kind == "float":
        try:
            number = float(stripped)
        except ValueError:
            raise wrong("a number") from None
        if not math.isfinite(number):
            raise wrong("a finite number")
        return stripped
    if kind == "bool":
        low = stripped.lower()
        if low in TRUE_WORDS:
            return "true"
        if low in FALSE_WORDS:
            return "false"
        raise wrong("a boolean (true/false)")
    if kind == "email":
        if not _EMAIL.match(stripped):
            raise wrong("an e-mail address")
        return stripped
    if kind == "url":
        parts = urlsplit(stripped)
        if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
            raise wrong("a URL such as https://host/path")
        return stripped
    if kind == "set":
        allowed = option_values(spec.options)
        if allowed and value not in allowed:
            raise wrong("one of " + ", ".join(allowed))
        return value
    if kind == "file-path":
        if not stripped:
            raise wrong("a file path")
        return value
    return value  # pragma: no cover - canonical_type returns only the types above


def validate_config(
    fields: Iterable[FieldSpec], values: Mapping[str, str], *, force: bool = False
) -> dict[str, str]:
    """Check and normalise ``values`` against the declared ``fields``.

    A key the application does not declare is refused unless ``force``; it is then kept
    as a plain string. An empty value is kept as it is: it means "remove" to callers.
    Values of secret keys may not look sealed (they would be taken as ciphertext).
    """
    declared = {f.keyname: f for f in fields}
    out: dict[str, str] = {}
    unknown = []
    for key, value in values.items():
        validate_env_name(key, "configuration key")
        spec = declared.get(key)
        if spec is None:
            unknown.append(key)
            out[key] = value
        elif value == "":
            out[key] = value
        else:
            if spec.is_secret and value.startswith(PREFIX):
                raise Invalid(
                    f"configuration key {key}: values starting with {PREFIX!r} are reserved"
                )
            out[key] = normalize_value(spec, value)
    if unknown and not force:
        names = ", ".join(sorted(unknown))
        known = ", ".join(declared) or "none"
        raise Invalid(
            f"unknown configuration key {names} (the application declares: {known}); "
            "use --force to store it anyway"
        )
    return out


def describe_value(
    name: str,
    spec: FieldSpec | None,
    effective: EnvVar | None,
    encrypted: bool = False,
    stored_type: str = "string",
) -> dict[str, Any]:
    """How one key of a run template is shown: the value a job gets (secrets redacted)
    and the layer it comes from (``runtemplate:5``, ``credential:3 (FioBank)``,
    ``company:2``, ``app:1 default``, ``global``; None when nothing sets it), the values
    it shadows, the application's default, and flags. ``effective``: the variable as the
    layers assemble it; ``spec`` is None for a stored key the application does not
    declare; ``encrypted``: its stored value is sealed."""
    default = spec.defval if spec is not None and spec.defval not in (None, "") else None
    value = effective.value if effective is not None and effective.value else None
    secret = (
        encrypted
        or (spec is not None and spec.is_secret)
        or (effective is not None and effective.secret)
    )
    required = spec is not None and spec.required

    def shown(text: str | None) -> str | None:
        return redact(text) if secret and text is not None else text

    return {
        "name": name,
        "type": spec.kind if spec is not None else stored_type,
        "value": shown(value),
        "source": effective.source if value is not None and effective is not None else None,
        "shadowed": [
            {"source": s.source, "value": shown(s.value)}
            for s in (effective.shadowed if effective is not None else ())
        ],
        "default": shown(default),
        "secret": secret,
        "required": required,
        "missing": required and value is None,
        "declared": spec is not None,
    }


def missing_required(fields: Iterable[FieldSpec], values: Mapping[str, str]) -> list[str]:
    """Required keys that have neither a value nor a default."""
    return [
        f.keyname
        for f in fields
        if f.required and not values.get(f.keyname) and f.defval in (None, "")
    ]


def resolve_schedule(
    current: tuple[str, str | None], interv: str | None, cron: str | None
) -> tuple[str, str | None]:
    """The (interv, cron) pair after a change of ``current``: a cron expression implies
    interval ``c``; another interval clears the cron expression."""
    new_interv, new_cron = current
    if cron is not None:
        if interv is not None and interv != "c":
            raise Invalid(f"--cron needs interval c (custom), not {interv!r}")
        new_interv, new_cron = "c", cron
    elif interv is not None:
        new_interv = interv
        if interv != "c":
            new_cron = None
    if new_interv == "c" and not new_cron:
        raise Invalid("interval c (custom) needs a cron expression: give --cron")
    return new_interv, new_cron


def check_settings(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the settings of a run template given as ``changes`` (keys of
    :data:`SETTINGS`; None values are dropped). ``timeout`` 0 means no limit. Returns
    the normalised mapping."""
    from multiflexi.scheduling.calendar import validate_cron, validate_interval

    unknown = set(changes) - SETTINGS
    if unknown:
        raise Invalid(f"unknown run template setting {', '.join(sorted(unknown))}")
    out = {k: v for k, v in changes.items() if v is not None}
    if "name" in out:
        out["name"] = str(out["name"]).strip()
        if not out["name"]:
            raise Invalid("name must not be empty")
        if len(out["name"]) > 250:
            raise Invalid("name is longer than 250 characters")
    if out.get("interv") is not None:
        out["interv"] = validate_interval(str(out["interv"]).strip().lower())
    if out.get("cron") is not None:
        out["cron"] = validate_cron(out["cron"])
    if out.get("timeout") == 0:
        out["timeout"] = None  # 0 means "no limit"
    _check_limits(out)
    bounds = (
        ("delay", 0), ("timeout", 1), ("max_attempts", 1), ("retry_min_gap", 0),
        ("keep_success_days", 0), ("keep_failed_days", 0), ("keep_last", 0),
    )  # fmt: skip
    for key, low in bounds:
        if out.get(key) is not None and int(out[key]) < low:
            raise Invalid(f"{key} must be at least {low}, got {out[key]}")
    if "executor" in out:
        executor = str(out["executor"]).strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", executor):
            raise Invalid(f"invalid executor name {out['executor']!r}")
        from multiflexi.executors.registry import get_executor

        out["executor"] = get_executor(executor).name
    for key, allowed in (
        ("retry_backoff", RETRY_BACKOFFS),
        ("overlap", OVERLAPS),
        ("on_interrupt", ON_INTERRUPT),
    ):
        if key in out:
            value = str(out[key]).strip().lower()
            if value not in allowed:
                raise Invalid(f"{key} must be one of {', '.join(allowed)}, got {out[key]!r}")
            out[key] = value
    return out


def _check_limits(out: dict[str, Any]) -> None:
    """Resource limits in place: ``default`` -> None (the application's or the global
    default applies), ``0`` -> no limit, else bytes / seconds / cores / counts."""
    from multiflexi.executors.limits import NAMES, LimitError, parse_limit

    for key in NAMES:
        if key not in out:
            continue
        raw = out[key]
        if isinstance(raw, str) and raw.strip().lower() == "default":
            out[key] = None
            continue
        try:
            out[key] = parse_limit(key, raw)
        except LimitError as exc:
            raise Invalid(str(exc)) from None
