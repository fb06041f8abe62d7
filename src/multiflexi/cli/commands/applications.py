"""application:* — import, validate and export definition files; list, get, create, update,
delete applications."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from multiflexi.cli.base import cli_context, command, id_argument, parse_int
from multiflexi.cli.output import emit, render_record, render_table

F = TypeVar("F", bound=Callable[..., Any])

#: Column options shared by create and update: (option names, dest, help).
FIELD_OPTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--name",), "name", "Application name (unique)."),
    (("--executable",), "executable", "Program to run."),
    (("--description",), "description", "Description."),
    (("--cmdparams",), "cmdparams", "Command-line template with {VAR} placeholders."),
    (("--version", "--appversion"), "version", "Application version."),
    (("--homepage",), "homepage", "Homepage URL."),
    (("--tags", "--topics"), "tags", "Comma-separated tags."),
    (("--ociimage",), "ociimage", "OCI image reference."),
    (("--requirements",), "requirements", "Comma-separated credential requirements."),
    (("--setup",), "setup", "Setup command."),
    (("--deploy",), "deploy", "Deploy command."),
    (("--resultfile",), "resultfile", "Result file name."),
    (("--code",), "code", "Short unique code (derived from the name when omitted)."),
)


def field_options(fn: F) -> F:
    """The column options of create and update, and ``--enabled [BOOL]``."""
    fn = click.option(
        "--enabled",
        type=click.BOOL,
        is_flag=False,
        flag_value=True,
        default=None,
        metavar="[BOOL]",
        help="Enable (default when given alone) or disable the application.",
    )(fn)
    for names, dest, help_ in reversed(FIELD_OPTIONS):
        fn = click.option(*names, dest, default=None, help=help_)(fn)
    return fn


def _selector(pos_id: str | None, opt_id: str | None, **others: str | None) -> dict[str, Any]:
    raw = opt_id if opt_id is not None else pos_id
    selector: dict[str, Any] = {k: v for k, v in others.items() if v is not None}
    if raw is not None:
        selector["id"] = parse_int(raw, "id")
    if not selector:
        from multiflexi.errors import UsageError

        others_text = "".join(f" or --{k}" for k in others)
        raise UsageError(f"missing application: give its id (or --id){others_text}")
    return selector


def _warning_lines(warnings: list[Any]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@command("application:import-json")
@click.option("--file", "file", required=True, metavar="PATH", help="Definition file.")
@click.option("--strict", is_flag=True, help="Refuse files that are not valid against the schema.")
def import_json(file: str, strict: bool) -> None:
    """Create or update an application from a *.multiflexi.app.json file."""
    import os
    from pathlib import Path

    from multiflexi.apps import appjson, service

    ctx = cli_context()
    document = appjson.read_document(file)
    with ctx.db.session() as session:
        result = service.import_document(
            session,
            document,
            strict=strict,
            deffile=os.path.realpath(file),
            file_name=Path(file).name,
        )
        app = result.app
        data = {
            "status": "created" if result.created else "updated",
            "file": file,
            "id": app.id,
            "uuid": app.uuid,
            "code": app.code,
            "name": app.name,
            "warnings": [w.as_dict() for w in result.warnings],
        }
    if ctx.fmt != "json":
        _warning_lines(result.warnings)
    text = f"Application #{data['id']} {data['name']!r} {data['status']} from {file} (code {data['code']})"
    emit(data, ctx.fmt, text=text)


@command("application:validate-json")
@click.option("--file", "file", required=True, metavar="PATH", help="Definition file.")
def validate_json(file: str) -> int:
    """Check a definition file against the schema; exit 1 when it is invalid."""
    from multiflexi.apps import service

    ctx = cli_context()
    violations = service.validate_file(file)
    data = {"valid": not violations, "file": file, "violations": [v.as_dict() for v in violations]}
    if violations:
        lines = [f"{file}: invalid, {len(violations)} violation(s):"]  # noqa: RUF100
        from multiflexi.cli.main import _error_line

        lines += [f"  {_error_line(str(v))}" for v in violations]
        text = "\n".join(lines)
    else:
        text = f"{file}: valid"
    emit(data, ctx.fmt, text=text)
    if violations:
        # The report is the output; the error line says why the exit code is 1.
        click.echo(f"error: {file} is invalid: {len(violations)} violation(s)", err=True)
        return 1
    return 0


@command("application:export-json")
@id_argument()
@click.option("--uuid", default=None, help="Application uuid.")
@click.option("--file", "file", default="-", metavar="PATH", help="Output file; - is stdout.")
def export_json(pos_id: str | None, opt_id: str | None, uuid: str | None, file: str) -> None:
    """Write an application's definition file; importing it gives the same application."""
    from multiflexi.apps import appjson, service

    ctx = cli_context()
    selector = _selector(pos_id, opt_id, uuid=uuid)
    with ctx.db.read() as session:
        app = service.get_app(session, **selector)
        text = appjson.dumps(service.export_document(app))
        app_id, name = app.id, app.name
    if file == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    _write_file(file, text)
    data = {"exported": True, "id": app_id, "file": file}
    emit(data, ctx.fmt, text=f"Application #{app_id} {name!r} exported to {file}")


def _write_file(path: str, text: str) -> None:
    """Write whole or not at all: a failed export never leaves half a file."""
    import os
    import tempfile

    from multiflexi.errors import Invalid

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".export-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise Invalid(f"cannot write {path}: {exc.strerror}") from None


LIST_COLUMNS = ("id", "code", "name", "version", "enabled", "uuid", "executable")


@command("application:list")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many.")
def list_applications(limit: int | None, offset: int) -> None:
    """List applications, ordered by id."""
    from multiflexi.apps import service

    ctx = cli_context()
    with ctx.db.read() as session:
        rows = [
            service.app_record(a) for a in service.list_apps(session, limit=limit, offset=offset)
        ]
    emit(rows, ctx.fmt, columns=LIST_COLUMNS)


@command("application:get")
@id_argument()
@click.option("--uuid", default=None, help="Application uuid.")
@click.option("--name", default=None, help="Application name.")
def get_application(
    pos_id: str | None, opt_id: str | None, uuid: str | None, name: str | None
) -> None:
    """Show an application with its environment, artifacts and exit codes."""
    from multiflexi.apps import service

    ctx = cli_context()
    selector = _selector(pos_id, opt_id, uuid=uuid, name=name)
    with ctx.db.read() as session:
        record = service.app_record(service.get_app(session, **selector), detail=True)
    emit(record, ctx.fmt, text=_detail_text(record))


def _detail_text(record: dict[str, Any]) -> str:
    summary = {
        k: v
        for k, v in record.items()
        if k not in ("environment", "artifacts", "exitCodes", "translations", "extra")
        and not (k == "image" and len(str(v)) > 80)
    }
    parts = [render_record(summary)]
    env = [
        {
            "variable": k,
            "type": v["type"],
            "required": v["required"],
            "default": v["defval"],
            "category": v["category"],
            "description": v["description"],
        }
        for k, v in record["environment"].items()
    ]
    parts.append(f"\nEnvironment ({len(env)}):\n" + render_table(env))
    if record["artifacts"]:
        arts = [
            {k: a[k] for k in ("name", "path", "type", "description")} for a in record["artifacts"]
        ]
        parts.append(f"\nArtifacts ({len(arts)}):\n" + render_table(arts))
    if record["exitCodes"]:
        codes = [
            {
                "code": code,
                "severity": e["severity"],
                "retry": e["retry"],
                "description": e["description"],
            }
            for code, e in record["exitCodes"].items()
        ]
        parts.append(f"\nExit codes ({len(codes)}):\n" + render_table(codes))
    return "\n".join(parts)


def _changes(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@command("application:create")
@field_options
@click.option("--uuid", default=None, help="Application uuid (generated when omitted).")
def create_application(**values: Any) -> None:
    """Create an application from options (--name and --executable are required)."""
    from multiflexi.apps import service

    ctx = cli_context()
    with ctx.db.session() as session:
        record = service.app_record(service.create_app(session, _changes(values)))
    text = f"Application created: #{record['id']} {record['name']!r} (code {record['code']}, uuid {record['uuid']})"
    emit(record, ctx.fmt, text=text)


@command("application:update")
@id_argument()
@click.option("--uuid", "select_uuid", default=None, help="Select the application by uuid.")
@field_options
def update_application(
    pos_id: str | None, opt_id: str | None, select_uuid: str | None, **values: Any
) -> None:
    """Change fields of an application selected by id or --uuid."""
    from multiflexi.apps import service
    from multiflexi.errors import UsageError

    ctx = cli_context()
    selector = _selector(pos_id, opt_id, uuid=select_uuid)
    changes = _changes(values)
    if not changes:
        raise UsageError("nothing to update: give at least one field to change (see --help)")
    from multiflexi.cli.changes import describe, holds_note
    from multiflexi.jobs.holds import waiting_counts

    with ctx.db.session() as session:
        app = service.get_app(session, **selector)
        before = service.app_record(app)
        record = service.app_record(service.update_app(session, app, changes))
        held, free = waiting_counts(session, app_id=app.id)
    changed = [k for k in record if k != "updated" and before.get(k) != record.get(k)]
    text = f"Application #{record['id']} {record['name']!r} updated"
    if changed:
        text += f": {describe(before, record, changed)}"
    else:
        text += ": no changes"
    if "enabled" in changed:
        text += holds_note("application", bool(record["enabled"]), held, free)
    emit(record, ctx.fmt, text=text)


@command("application:delete")
@id_argument()
@click.option("--uuid", default=None, help="Application uuid.")
def delete_application(pos_id: str | None, opt_id: str | None, uuid: str | None) -> None:
    """Delete an application; refused while run templates or jobs use it."""
    from multiflexi.apps import service

    ctx = cli_context()
    selector = _selector(pos_id, opt_id, uuid=uuid)
    with ctx.db.session() as session:
        app = service.get_app(session, **selector)
        data = {"deleted": True, "id": app.id, "name": app.name}
        service.delete_app(session, app)
    emit(data, ctx.fmt, text=f"Application #{data['id']} {data['name']!r} deleted")
