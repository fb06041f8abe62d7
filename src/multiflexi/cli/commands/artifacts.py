"""artifact:* commands: list, show, and get (byte-exact, streaming)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from multiflexi.cli.base import cli_context, command, id_argument, parse_int, resolve_id
from multiflexi.cli.output import emit

TEXT_PREVIEW_LIMIT = 1024 * 1024


@command("artifact:list", "artifact:ls")
@click.option("--job", "--job_id", "--job-id", "job", required=True, help="Job id.")
def artifact_list(job: str) -> None:
    """List the artifacts of a job."""
    from multiflexi.artifacts.service import artifact_record, list_artifacts

    ctx = cli_context()
    with ctx.db.read() as s:
        rows = [artifact_record(a) for a in list_artifacts(s, parse_int(job, "--job"))]
    if ctx.fmt != "json" and not rows:
        emit(rows, ctx.fmt, text="No artifacts found.")
        return
    columns = ["id", "filename", "content_type", "size", "state", "note"]
    emit(rows, ctx.fmt, columns=columns, tz=ctx.settings.timezone)


@command("artifact:show")
@id_argument()
def artifact_show(pos_id: str | None, opt_id: str | None) -> None:
    """Show an artifact's metadata."""
    from multiflexi.artifacts.service import artifact_record, get_artifact

    ctx = cli_context()
    with ctx.db.read() as s:
        record = artifact_record(get_artifact(s, resolve_id(pos_id, opt_id, "artifact id")))
    emit(record, ctx.fmt, tz=ctx.settings.timezone)


def _write_to(path: str, artifact_id: int) -> int:
    """Stream an artifact to a file (``-`` = stdout) atomically; returns the size."""
    from multiflexi.artifacts.service import save_artifact

    ctx = cli_context()
    if path == "-":
        return save_artifact(ctx.db, artifact_id, sys.stdout.buffer)
    target = Path(path)
    if not target.parent.is_dir():  # a typo in the directory is an error, as for cp and curl
        from multiflexi.errors import Invalid

        raise Invalid(f"cannot write {path}: directory {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.part{os.getpid()}")
    try:
        with tmp.open("wb") as out:
            size = save_artifact(ctx.db, artifact_id, out)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


@command("artifact:get")
@id_argument()
@click.option(
    "--output", "-o", "--file", "output", help="Write the content to this file (- for stdout)."
)
def artifact_get(pos_id: str | None, opt_id: str | None, output: str | None) -> None:
    """Write an artifact's bytes to --output, or to stdout when it is not a terminal (as
    curl does); on a terminal, show its metadata and, for text, its content."""
    from multiflexi.artifacts.service import artifact_record, get_artifact

    ctx = cli_context()
    if output == "-" and ctx.fmt == "json":
        from multiflexi.errors import UsageError

        raise UsageError("--output - writes the artifact's bytes; -f json is not available")
    artifact_id = resolve_id(pos_id, opt_id, "artifact id")
    with ctx.db.read() as s:
        record = artifact_record(get_artifact(s, artifact_id))
    if output is None and ctx.fmt != "json" and not sys.stdout.isatty():
        output = "-"  # piped or redirected: the bytes themselves
    if output is not None:
        try:
            size = _write_to(output, artifact_id)
        except OSError as exc:
            from multiflexi.errors import Invalid

            raise Invalid(f"cannot write {output}: {exc.strerror or exc}") from None
        if output != "-":
            data = {"artifact_id": artifact_id, "file": output, "size": size, "saved": True}
            emit(data, ctx.fmt, text=f"Artifact {artifact_id} saved to {output} ({size} bytes).")
        return
    is_text = str(record["content_type"]).startswith("text/") or record["content_type"] in (
        "application/json",
        "application/xml",
    )
    if is_text and int(record["size"]) <= TEXT_PREVIEW_LIMIT:  # type: ignore[call-overload]
        from multiflexi.artifacts.service import stream_artifact

        record["content"] = b"".join(stream_artifact(ctx.db, artifact_id)).decode(
            "utf-8", "replace"
        )
    if ctx.fmt == "json":
        emit(record, ctx.fmt)
        return
    from multiflexi.cli.output import localize, render_record

    body = record.pop("content", None)
    text = render_record(localize(record, ctx.settings.timezone))
    if body is not None:
        text += "\n\n" + str(body).rstrip("\n")
    else:  # binary (or large) content is not spilled onto a terminal
        name = Path(str(record["filename"])).name or f"artifact-{artifact_id}"
        text += (
            f"\n\nNot printed on a terminal ({record['content_type']}, {record['size']} bytes):"
            f" use --output {name}, or pipe it: multiflexi-cli artifact:get {artifact_id} > {name}"
        )
    emit(record, ctx.fmt, text=text)


@command("artifact:save")
@click.option("--id", "artifact_id", required=True, help="Artifact id.")
@click.option("--file", "--output", "file", required=True, help="Target file (- for stdout).")
def artifact_save(artifact_id: str, file: str) -> None:
    """Save an artifact to a file, byte-exact (upstream spelling of artifact:get --output)."""
    from multiflexi.artifacts.service import get_artifact

    ctx = cli_context()
    if file == "-" and ctx.fmt == "json":
        from multiflexi.errors import UsageError

        raise UsageError("--file - writes the artifact's bytes; -f json is not available")
    ident = parse_int(artifact_id, "--id")
    with ctx.db.read() as s:
        get_artifact(s, ident)
    size = _write_to(file, ident)
    if file != "-":
        data = {"artifact_id": ident, "file": file, "size": size, "saved": True}
        emit(data, ctx.fmt, text=f"Artifact saved: ID={ident} -> {file} ({size} bytes)")
