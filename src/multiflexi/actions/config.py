"""Configuration of actions: validation, global defaults, per-template overrides.

An option's value comes from, later winning:

1. the option's own default (its schema);
2. ``modconfig`` rows (``module`` = action name, ``cfg`` = option): database-wide defaults;
3. ``MULTIFLEXI_ACTION_<ACTION>_<OPTION>`` in the configuration file or the process
   environment (``MULTIFLEXI_ACTION_WEBHOOK_URI``, ``MULTIFLEXI_ACTION_GITHUB_TOKEN``);
4. ``actionconfig`` rows of the run template and mode (``run-template:action:set``).

In ``actionconfig`` an attached action is one marker row with an empty ``keyname`` (its
``position`` orders the actions) plus one row per option; secret options are sealed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from multiflexi.actions.base import MODES, Action
from multiflexi.errors import Invalid, NotFound
from multiflexi.secrets import REDACTED, is_sealed
from multiflexi.storage.models import ActionConfig, ModConfig

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.secrets import Vault
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.actions")

ENV_PREFIX = "MULTIFLEXI_ACTION_"


def setting_key(action: str, option: str) -> str:
    """``MULTIFLEXI_ACTION_WEBHOOK_URI`` for option ``uri`` of ``WebHook``."""
    return f"{ENV_PREFIX}{action.upper()}_{option.upper()}"


def check_mode(mode: str) -> str:
    low = mode.strip().lower()
    if low not in MODES:
        raise Invalid(f"mode must be success or fail, got {mode!r}")
    return low


def global_defaults(
    cls: type[Action], settings: Settings, session: Session | None, vault: Vault | None
) -> dict[str, str]:
    """Raw option values from ``modconfig`` and the configuration file, for ``cls``."""
    out: dict[str, str] = {}
    if session is not None:
        rows = session.scalars(select(ModConfig).where(ModConfig.module == cls.name))
        for row in rows:
            if cls.option(row.cfg) is None:
                log.warning("action=modconfig_ignored module=%s cfg=%s", cls.name, row.cfg)
                continue
            out[row.cfg] = vault.open(row.value) if vault is not None else row.value
    for opt in cls.all_options():
        value = settings.raw.get(setting_key(cls.name, opt.name))
        if value is not None and value.strip() != "":
            out[opt.name] = value
    return out


def resolve(cls: type[Action], *layers: Mapping[str, str]) -> dict[str, Any]:
    """Typed values of every option of ``cls`` from raw layers (later wins).

    Raises :class:`Invalid` for a value of the wrong type or a missing required option.
    Unknown names in the layers are ignored here (see :func:`check_names`).
    """
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    values: dict[str, Any] = {}
    for opt in cls.all_options():
        raw = merged.get(opt.name)
        if raw is None or raw.strip() == "":
            if opt.required:
                raise Invalid(
                    f"action {cls.name} needs option {opt.name} "
                    f"(give {opt.name}=VALUE or set {setting_key(cls.name, opt.name)})"
                )
            values[opt.name] = opt.default
            continue
        values[opt.name] = opt.parse(raw, cls.name)
    return values


def check_names(cls: type[Action], names: Mapping[str, str]) -> None:
    valid = [o.name for o in cls.all_options()]
    for name in names:
        if name not in valid:
            raise Invalid(
                f"unknown option {name!r} for action {cls.name}; valid: {', '.join(valid)}"
            )


@dataclass(frozen=True)
class ConfiguredAction:
    """An action attached to a run template for one mode, with its stored options."""

    runtemplate_id: int
    mode: str
    name: str
    position: int
    #: Raw stored values; secret ones still sealed.
    values: Mapping[str, str]

    def opened(self, cls: type[Action], vault: Vault) -> dict[str, str]:
        """Stored values with secret options (and sealed URLs) decrypted."""
        out = {}
        for key, value in self.values.items():
            opt = cls.option(key)
            sealed = opt is not None and (opt.secret or is_sealed(value))
            out[key] = vault.open(value) if sealed else value
        return out


def configured(session: Session, rt_id: int, mode: str | None = None) -> list[ConfiguredAction]:
    """The actions of a run template (one mode, or both), in order."""
    stmt = select(ActionConfig).where(ActionConfig.runtemplate_id == rt_id)
    if mode is not None:
        stmt = stmt.where(ActionConfig.mode == mode)
    rows = session.scalars(stmt.order_by(ActionConfig.id)).all()
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault((row.mode, row.module), {"position": None, "values": {}})
        if row.keyname == "":
            group["position"] = row.position
        else:
            group["values"][row.keyname] = row.value
    out = [
        ConfiguredAction(rt_id, m, name, g["position"], g["values"])
        for (m, name), g in groups.items()
        if g["position"] is not None
    ]
    return sorted(out, key=lambda a: (MODES.index(a.mode), a.position, a.name))


def set_action(
    db: Database,
    settings: Settings,
    *,
    rt_id: int,
    mode: str,
    name: str,
    assignments: Mapping[str, str],
) -> dict[str, Any]:
    """Attach (or update) an action; options merge with the stored ones, ``KEY=`` clears.

    Everything is validated before anything is stored: unknown option, wrong type, bad
    URL, missing required option (counting global defaults) and the action's own checks.
    """
    from multiflexi.actions.registry import get_action
    from multiflexi.runtemplates.service import get_runtemplate
    from multiflexi.secrets import Vault

    cls = get_action(name)
    mode = check_mode(mode)
    if mode not in cls.modes:
        raise Invalid(f"action {cls.name} runs only on {' or '.join(cls.modes)}, not on {mode}")
    check_names(cls, assignments)
    vault = Vault.from_settings(settings, db)

    def write(session: Session) -> dict[str, Any]:
        rt = get_runtemplate(session, rt_id)
        existing = next((a for a in configured(session, rt.id, mode) if a.name == cls.name), None)
        stored = existing.opened(cls, vault) if existing else {}
        merged = {**stored, **assignments}
        merged = {k: v for k, v in merged.items() if v.strip() != ""}
        values = resolve(cls, global_defaults(cls, settings, session, vault), merged)
        cls.check(values, session, rt, settings)
        session.execute(
            delete(ActionConfig).where(
                ActionConfig.runtemplate_id == rt.id,
                ActionConfig.mode == mode,
                ActionConfig.module == cls.name,
            )
        )
        if existing is not None:
            position = existing.position
        else:
            top = session.scalar(
                select(func.max(ActionConfig.position)).where(
                    ActionConfig.runtemplate_id == rt.id, ActionConfig.mode == mode
                )
            )
            position = (top or 0) + 1
        session.add(
            ActionConfig(runtemplate_id=rt.id, mode=mode, module=cls.name, position=position)
        )
        for key, value in merged.items():
            opt = cls.option(key)
            secret = opt is not None and opt.holds_secret(value)
            session.add(
                ActionConfig(
                    runtemplate_id=rt.id,
                    mode=mode,
                    module=cls.name,
                    keyname=key,
                    value=vault.seal(value) if secret else value,
                    position=position,
                )
            )
        return action_record(cls, ConfiguredAction(rt.id, mode, cls.name, position, merged))

    return db.run(write)


def unset_action(db: Database, *, rt_id: int, mode: str, name: str) -> None:
    """Detach an action from a run template's mode."""
    from multiflexi.actions.registry import get_action
    from multiflexi.runtemplates.service import get_runtemplate

    mode = check_mode(mode)
    try:
        module = get_action(name).name
    except NotFound:
        module = name  # an action whose plugin is gone can still be removed

    def write(session: Session) -> None:
        get_runtemplate(session, rt_id)
        done = session.execute(
            delete(ActionConfig).where(
                ActionConfig.runtemplate_id == rt_id,
                ActionConfig.mode == mode,
                func.lower(ActionConfig.module) == module.lower(),
            )
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"run template {rt_id} has no {module} action on {mode}")

    db.run(write)


def action_record(
    cls: type[Action] | None, action: ConfiguredAction, vault: Vault | None = None
) -> dict[str, Any]:
    """A configured action for display: secret option values redacted, a URL's
    credentials too (``vault`` opens a sealed URL to show where it goes)."""
    options = {}
    for key, value in sorted(action.values.items()):
        opt = cls.option(key) if cls is not None else None
        if is_sealed(value) and (opt is None or not opt.secret):
            options[key] = _shown_sealed(opt, value, vault)
        elif opt is not None:
            options[key] = opt.shown(value)
        else:
            options[key] = value
    return {
        "runtemplate_id": action.runtemplate_id,
        "mode": action.mode,
        "action": action.name,
        "position": action.position,
        "options": options,
    }


def _shown_sealed(opt: Any, value: str, vault: Vault | None) -> str:
    if opt is None or vault is None:
        return REDACTED
    try:
        return str(opt.shown(vault.open(value)))
    except Exception:  # another master key: where it goes stays unknown, not the token
        return REDACTED


def template_actions(
    session: Session, rt_id: int, vault: Vault | None = None
) -> list[dict[str, Any]]:
    """Every action of a run template, for ``run-template:action:list``."""
    from multiflexi.actions.registry import get_action
    from multiflexi.runtemplates.service import get_runtemplate

    get_runtemplate(session, rt_id)
    out = []
    for action in configured(session, rt_id):
        try:
            cls: type[Action] | None = get_action(action.name)
        except NotFound:
            cls = None
        out.append(action_record(cls, action, vault))
    return out


def describe_actions() -> list[dict[str, Any]]:
    """Every available action with its options, for ``action:list``."""
    from multiflexi.actions.registry import available

    return [
        {
            "name": name,
            "aliases": list(cls.aliases),
            "modes": list(cls.modes),
            "description": cls.description,
            "options": [o.record() for o in cls.all_options()],
        }
        for name, cls in available().items()
    ]
