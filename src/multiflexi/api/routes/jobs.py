"""Jobs: list, show, create from a run template, run now, cancel, delete (one or in bulk);
their artifacts (list, metadata, byte-exact download with Range) and output (SSE)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from multiflexi.api import shapes
from multiflexi.api.deps import Conf, Db, PathId, Shaped, Who, as_utc, pagination
from multiflexi.api.render import Suffix, render
from multiflexi.catalog import JobQuery, Page
from multiflexi.errors import Invalid

router = APIRouter()
Paged = Annotated[Page, Depends(pagination)]
OptId = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


def job_query(
    company_id: OptId = None,
    runtemplate_id: OptId = None,
    app_id: OptId = None,
    status: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z,]+$")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
) -> JobQuery:
    return JobQuery(
        company_id=company_id,
        runtemplate_id=runtemplate_id,
        app_id=app_id,
        status=status,
        since=as_utc(from_),
        until=as_utc(to),
    )


Filters = Annotated[JobQuery, Depends(job_query)]


@router.get("/jobs.{suffix}", tags=["job"])
def list_jobs(
    suffix: Suffix, who: Who, db: Db, page: Paged, query: Filters, shape: Shaped
) -> Response:
    """Jobs of the caller's companies; filters company_id, runtemplate_id, app_id, status
    (comma-separated), from/to (creation time). Id-keyed object; array with shape=array."""
    from multiflexi import catalog

    with db.read() as s:
        rows = [shapes.job_wire(j, shape) for j in catalog.list_jobs(s, who, page, query)]
    return render(shapes.id_keyed(rows, shape), suffix, title="Jobs")


@router.get("/jobs/count.{suffix}", tags=["job"])
def count_jobs(suffix: Suffix, who: Who, db: Db, query: Filters) -> Response:
    """How many jobs match the filters (only the caller's companies)."""
    from multiflexi import catalog

    with db.read() as s:
        total = catalog.count_jobs(s, who, query)
    return render({"count": total}, suffix, title="Jobs")


@router.get("/job/{job_id}.{suffix}", tags=["job"])
def get_job(job_id: PathId, suffix: Suffix, who: Who, db: Db, shape: Shaped) -> Response:
    """One job; ``env`` is an object with secret values redacted."""
    from multiflexi import catalog

    with db.read() as s:
        data = shapes.job_wire(catalog.get_job(s, who, job_id), shape)
    return render(data, suffix, title=f"Job {job_id}")


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runtemplate_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    scheduled: str = Field(default="now", max_length=64)
    executor: str | None = Field(default=None, max_length=64)
    env: dict[Annotated[str, Field(max_length=255)], Annotated[str, Field(max_length=65536)]] = (
        Field(default_factory=dict, max_length=500)
    )


@router.post("/job/", tags=["job"], status_code=201)
def create_job(
    who: Who,
    db: Db,
    settings: Conf,
    body: Annotated[JobCreate | None, Body()] = None,
    runtemplate_id: OptId = None,
    jobId: OptId = None,
) -> Response:
    """Create a job of a run template and queue it (operators of its company); one-off
    ``env`` values override the template's for this job only."""
    from multiflexi import catalog
    from multiflexi.jobs.service import create_job as create
    from multiflexi.scheduling.when import parse_when

    body = body or JobCreate()
    rt_id = body.runtemplate_id or runtemplate_id
    if rt_id is None:
        raise Invalid("Missing runtemplate_id")
    with db.read() as s:
        catalog.get_runtemplate(s, who, rt_id, write=True)
    at = parse_when(body.scheduled, settings.timezone)
    job = create(
        db,
        settings,
        runtemplate_id=rt_id,
        overrides=body.env,
        at=at,
        schedule_type="adhoc-api",
        executor=body.executor,
    )
    data = {
        "job_id": job.id,
        "runtemplate_id": rt_id,
        "scheduled": at,
        "executor": job.executor,
        "schedule_type": job.schedule_type,
        "status": job.status,
    }
    return render(data, "json", status=201)


@router.post("/job/{job_id}/run", tags=["job"])
def run_now(job_id: PathId, who: Who, db: Db) -> Response:
    """Make a queued job due now (operators)."""
    from multiflexi import catalog
    from multiflexi.queue import release_now

    with db.read() as s:
        catalog.get_job(s, who, job_id, write=True)
    release_now(db, job_id)
    return render({"job_id": job_id, "due": "now", "success": True}, "json")


@router.post("/job/{job_id}/cancel", tags=["job"])
def cancel(job_id: PathId, who: Who, db: Db) -> Response:
    """Cancel a job (operators): a waiting one at once (200); a running one, on any host, is
    stopped by its executor within its heartbeat and recorded with who asked (202); a job
    that has ended: 409."""
    from multiflexi import catalog
    from multiflexi.errors import Conflict
    from multiflexi.jobs.cancel import cancel_job

    with db.read() as s:
        catalog.get_job(s, who, job_id, write=True)
    state = cancel_job(db, job_id, who=f"{who.login} (api)")
    if state.outcome == "final":
        raise Conflict(
            f"job {job_id} is {state.status}; only a waiting or running job can be cancelled"
        )
    if state.outcome == "cancelled":
        return render({"job_id": job_id, "status": "cancelled", "success": True}, "json")
    data = {"job_id": job_id, "status": "cancelling", "requested_by": state.by, "success": True}
    return render(data, "json", status=202)


def _delete_one(job_id: PathId, who: Any, db: Any, settings: Any) -> Response:
    from multiflexi import catalog
    from multiflexi.jobs.service import delete_job

    with db.read() as s:
        catalog.get_job(s, who, job_id, write=True)
    delete_job(db, settings, job_id)
    return render({"job_id": job_id, "deleted": True, "success": True}, "json")


@router.delete("/job/{job_id}.{suffix}", tags=["job"])
def delete_job_suffixed(
    job_id: PathId, suffix: Suffix, who: Who, db: Db, settings: Conf
) -> Response:
    """Delete a job with its output and artifacts (operators; a running job: 409)."""
    return _delete_one(job_id, who, db, settings)


@router.delete("/job/{job_id}", tags=["job"])
def delete_job(job_id: PathId, who: Who, db: Db, settings: Conf) -> Response:
    """Delete a job (the same without the suffix)."""
    return _delete_one(job_id, who, db, settings)


@router.delete("/jobs.{suffix}", tags=["job"])
def delete_jobs(
    suffix: Suffix,
    who: Who,
    db: Db,
    settings: Conf,
    company_id: OptId = None,
    runtemplate_id: OptId = None,
    status: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z,]+$")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
    dry_run: bool = False,
) -> Response:
    """Delete the jobs matching the filters (administrators; at least one filter). ``from``
    and ``to`` compare with the job's begin, as upstream; running jobs are skipped."""
    from multiflexi import catalog

    query = JobQuery(
        company_id=company_id,
        runtemplate_id=runtemplate_id,
        status=status,
        since=as_utc(from_),
        until=as_utc(to),
        time_field="begin",
    )
    return render(catalog.delete_jobs(db, settings, who, query, dry_run=dry_run), suffix)


# -- artifacts ------------------------------------------------------------------------------


@router.get("/job/{job_id}/artifacts.{suffix}", tags=["artifact"])
def list_artifacts(job_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    """The artifacts of a job: name, type, size, checksum, state."""
    from multiflexi import catalog
    from multiflexi.artifacts.service import artifact_record

    with db.read() as s:
        rows = [artifact_record(a) for a in catalog.list_artifacts(s, who, job_id)]
    return render(rows, suffix, title=f"Artifacts of job {job_id}")


@router.get("/artifact/{artifact_id}.{suffix}", tags=["artifact"])
def get_artifact(artifact_id: PathId, suffix: Suffix, who: Who, db: Db) -> Response:
    from multiflexi import catalog
    from multiflexi.artifacts.service import artifact_record

    with db.read() as s:
        data = artifact_record(catalog.get_artifact(s, who, artifact_id))
    return render(data, suffix, title=f"Artifact {artifact_id}")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single ``bytes=`` range; None for the whole content."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # unsupported forms: answer the whole content, as RFC 9110 allows
    first_s, _, last_s = spec.strip().partition("-")
    try:
        if first_s == "":
            length = int(last_s)
            if length <= 0:
                raise _unsatisfiable(size)
            return max(0, size - length), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> Exception:
    from starlette.exceptions import HTTPException

    return HTTPException(416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})


@router.get("/artifact/{artifact_id}/download", tags=["artifact"])
def download(artifact_id: PathId, request: Request, who: Who, db: Db) -> Response:
    """The content, byte-exact and streamed (never whole in memory); ``Range`` supported."""
    from multiflexi import catalog
    from multiflexi.artifacts.service import stream_range

    with db.read() as s:
        art = catalog.get_artifact(s, who, artifact_id)
        size, media, name, state = art.size, art.content_type, art.filename, art.state
    if state == "streaming":
        raise Invalid(f"artifact {artifact_id} is still being written; follow the job's output")
    span = _byte_range(request.headers.get("range"), size)
    first, last = span if span else (0, size - 1)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name.rsplit("/", 1)[-1])
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(0, last - first + 1)),
        "Content-Disposition": f'attachment; filename="{safe or "artifact"}"',
        "X-Content-Type-Options": "nosniff",
    }
    if span:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    body: Iterator[bytes] = stream_range(db, artifact_id, first, last) if size else iter(())
    return StreamingResponse(
        body, 206 if span else 200, headers=headers, media_type=media or "application/octet-stream"
    )


@router.get("/job/{job_id}/artifact/{name:path}", tags=["artifact"])
def download_by_name(job_id: PathId, name: str, request: Request, who: Who, db: Db) -> Response:
    """A job's artifact by its file name (compared with stored names, never opened as a path)."""
    from multiflexi import catalog

    if "\x00" in name or len(name) > 1024:
        raise Invalid("invalid artifact name")
    with db.read() as s:
        art_id = catalog.find_artifact(s, who, job_id, name).id
    return download(art_id, request, who, db)


# -- output ---------------------------------------------------------------------------------


@router.get("/job/{job_id}/output", tags=["job"])
def output(
    job_id: PathId,
    request: Request,
    who: Who,
    db: Db,
    follow: bool = True,
    stream: Annotated[str, Query(pattern="^(stdout|stderr|both)$")] = "both",
) -> Response:
    """The job's output so far, then live until the job ends, as Server-Sent Events:
    ``event: stdout|stderr`` with the text as data lines, and a final ``event: end``."""
    from multiflexi import catalog

    with db.read() as s:
        catalog.get_job(s, who, job_id)
    streams = ("stdout", "stderr") if stream == "both" else (stream,)
    return StreamingResponse(
        _sse(db, job_id, streams, follow),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(db: Any, job_id: PathId, streams: tuple[str, ...], follow: bool) -> Iterator[bytes]:
    import queue
    import threading

    from multiflexi.jobs.logs import follow_output

    items: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=64)
    stop = threading.Event()

    def write(name: str, data: bytes) -> None:
        if stop.is_set():
            raise _Gone
        items.put((name, data))

    def produce() -> None:
        try:
            follow_output(db, job_id, streams, follow=follow, write=write, max_wait=3600)
        except Exception:  # the client left, or the job was deleted: end the stream
            pass
        finally:
            try:
                items.put(None, timeout=5)
            except queue.Full:  # nobody reads any more
                pass

    threading.Thread(target=produce, daemon=True, name=f"sse-{job_id}").start()
    try:
        while True:
            item = items.get()
            if item is None:
                break
            name, data = item
            text = data.decode("utf-8", "replace")
            lines = "".join(f"data: {line}\n" for line in text.split("\n"))
            yield f"event: {name}\n{lines}\n".encode()
        yield b"event: end\ndata: \n\n"
    finally:
        stop.set()
        while not items.empty():
            items.get_nowait()


class _Gone(Exception):
    """The SSE client disconnected."""
