"""action:list and run-template:action:set|unset|list: post-run actions of run templates."""

from __future__ import annotations

import click

from multiflexi.cli.base import cli_context, command, parse_assignments, parse_int
from multiflexi.cli.output import emit


def _options_text(options: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items())


@command("action:list", "actions:list", "action:ls")
def action_list() -> None:
    """List the available actions with their options."""
    from multiflexi.actions.config import describe_actions

    ctx = cli_context()
    rows = describe_actions()
    if ctx.fmt == "json":
        emit(rows, ctx.fmt)
        return
    parts = []
    for row in rows:
        aliases = f" (alias {', '.join(row['aliases'])})" if row["aliases"] else ""
        modes = "" if len(row["modes"]) == 2 else f" [only on {', '.join(row['modes'])}]"
        lines = [f"{row['name']}{aliases}{modes}: {row['description']}"]
        for opt in row["options"]:
            flags = [opt["type"]]
            if opt["required"]:
                flags.append("required")
            if opt["secret"]:
                flags.append("secret")
            default = opt["default"]
            if default not in (None, "", []):
                shown = ", ".join(default) if isinstance(default, list) else default
                flags.append(f"default {shown}")
            lines.append(f"  {opt['name']} ({', '.join(flags)}): {opt['description']}")
        parts.append("\n".join(lines))
    emit(rows, ctx.fmt, text="\n\n".join(parts))


@command("run-template:action:set", "runtemplate:action:set")
@click.option("--id", "rt_id", required=True, help="Run template id.")
@click.option("--mode", required=True, help="success or fail.")
@click.option("--action", "action", required=True, help="Action name (see action:list).")
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
def action_set(rt_id: str, mode: str, action: str, assignments: tuple[str, ...]) -> None:
    """Attach an action to a run template (or change its options; KEY= clears one)."""
    from multiflexi.actions.config import set_action

    ctx = cli_context()
    record = set_action(
        ctx.db,
        ctx.settings,
        rt_id=parse_int(rt_id, "--id"),
        mode=mode,
        name=action,
        assignments=parse_assignments(assignments, "KEY=VALUE"),
    )
    text = (
        f"Action {record['action']} set on {record['mode']} of run template "
        f"{record['runtemplate_id']}"
    )
    if record["options"]:
        text += f": {_options_text(record['options'])}"
    emit(record, ctx.fmt, text=text)


@command("run-template:action:unset", "runtemplate:action:unset")
@click.option("--id", "rt_id", required=True, help="Run template id.")
@click.option("--mode", required=True, help="success or fail.")
@click.option("--action", "action", required=True, help="Action name.")
def action_unset(rt_id: str, mode: str, action: str) -> None:
    """Detach an action from a run template."""
    from multiflexi.actions.config import unset_action

    ctx = cli_context()
    template = parse_int(rt_id, "--id")
    unset_action(ctx.db, rt_id=template, mode=mode, name=action)
    data = {"runtemplate_id": template, "mode": mode.lower(), "action": action, "removed": True}
    emit(data, ctx.fmt, text=f"Action {action} removed from {mode} of run template {template}.")


@command("run-template:action:list", "runtemplate:action:list")
@click.option("--id", "rt_id", required=True, help="Run template id.")
def action_template_list(rt_id: str) -> None:
    """List the actions of a run template (secret options redacted)."""
    from multiflexi.actions.config import template_actions

    ctx = cli_context()
    template = parse_int(rt_id, "--id")
    from multiflexi.secrets import Vault

    with ctx.db.read() as session:
        rows = template_actions(session, template, Vault.from_settings(ctx.settings, ctx.db))
    if ctx.fmt != "json" and not rows:
        emit(rows, ctx.fmt, text=f"Run template {template} has no actions.")
        return
    shown = [{**r, "options": _options_text(r["options"])} for r in rows]
    emit(
        rows if ctx.fmt == "json" else shown,
        ctx.fmt,
        columns=["mode", "position", "action", "options"],
    )
