"""7. The REST API: ``multiflexi-server`` on SQLite with 100,000 finished jobs, driven by
16 concurrent keep-alive clients (``wrk`` from Debian's package when installed, else an
asyncio httpx load generator in this process), each figure beside ``GET /ping.json``
measured in the same run and with the same generator."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import BenchError, Row, db_environment, load1, percentile
from benchmarks.executors import Harness
from benchmarks.tools import fill_finished_jobs

BASE = "/api/VitexSoftware/MultiFlexi/1.0.0"
CLIENTS = 16
ARTIFACT_MB = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(env: dict[str, str], log: Any) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    code = "from multiflexi.api.server import run; run()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}{BASE}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("multiflexi-server exited at start")
        try:
            if httpx.get(url + "/ping.json", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise BenchError("multiflexi-server did not answer")


async def _load(
    url: str,
    headers: dict[str, str],
    seconds: float,
    request: Callable[[Any], Any],
) -> tuple[int, list[float], int]:
    """(requests, latencies in s, bytes received) of CLIENTS workers for ``seconds``."""
    import httpx

    latencies: list[float] = []
    received = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def worker() -> None:
            nonlocal received
            while time.monotonic() < stop:
                began = time.perf_counter()
                res = await request(client)
                latencies.append(time.perf_counter() - began)
                if res.status_code >= 400:
                    raise BenchError(f"{res.request.url.path}: {res.status_code} {res.text[:200]}")
                received += len(res.content)

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return len(latencies), latencies, received


WRK_LUA = """
local first, last, prefix = %d, %d, "%s"
request = function()
  return wrk.format(nil, prefix .. math.random(first, last) .. ".json")
end
"""


def _wrk(
    url: str, path: str, headers: dict[str, str], seconds: float, lua: str | None, root: Any
) -> dict[str, float] | None:
    """The same figures from ``wrk`` (Debian's package) when it is installed: a C load
    generator takes far less of the CPUs the server needs than the Python one."""
    import re
    import shutil

    if shutil.which("wrk") is None:
        return None
    argv = ["wrk", "-t2", f"-c{CLIENTS}", f"-d{max(1, int(seconds))}s", "--latency"]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    if lua is not None:
        script = root / "wrk.lua"
        script.write_text(lua)
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url + path], capture_output=True, text=True, timeout=120).stdout

    def ms(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not found:
            raise BenchError(f"cannot read wrk's output: {out[-300:]}")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rate = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not rps or not rate or non2xx:
        raise BenchError(f"wrk failed: {out[-300:]}")
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[rate.group(2)]
    return {
        "rps": float(rps.group(1)),
        "p50": ms("50"),
        "p99": ms("99"),
        "mbps": float(rate.group(1)) * scale * 1.048576,
    }


def _measure(
    url: str, headers: dict[str, str], seconds: float, request: Callable[[Any], Any]
) -> dict[str, float]:
    count, lat, received = asyncio.run(_load(url, headers, seconds, request))
    return {
        "rps": count / seconds,
        "p50": percentile(lat, 50) * 1000,
        "p99": percentile(lat, 99) * 1000,
        "mbps": received / seconds / 1e6,
    }


def _setup(h: Harness, jobs: int) -> tuple[Any, str, int, int, int]:
    """The database: finished jobs, a 10 MB artifact, an admin token. Returns (db, token,
    a job id range end, artifact id, run template id)."""
    from sqlalchemy import func, select

    from multiflexi.accounts.service import create_user, set_roles
    from multiflexi.accounts.tokens import generate_token
    from multiflexi.storage.blobs import store_stream
    from multiflexi.storage.models import Job

    db = h.open("sqlite")
    fill_finished_jobs(db, jobs)
    with db.read() as s:
        last = int(s.scalar(select(func.max(Job.id))) or 0)
        rt_id = int(s.scalar(select(Job.runtemplate_id).where(Job.id == last)) or 0)
    payload = os.urandom(ARTIFACT_MB * 1024 * 1024)
    art = store_stream(
        db,
        job_id=last,
        filename="big.bin",
        stream=io.BytesIO(payload),
        content_type="application/octet-stream",
        note="benchmark",
    )
    with db.session() as s:
        user = create_user(s, login="bench", email="bench@example.com", password="bench-pass-1")
        set_roles(s, user, ["admin"])
        token = generate_token(s, user)[1]
    return db, token, last, art.id, rt_id


def api(h: Harness) -> list[Row]:
    """Requests/s and p50/p99 of four operations beside GET /ping.json; server memory
    during downloads."""
    import psutil

    jobs = 2_000 if h.quick else 100_000
    seconds = 2.0 if h.quick else 10.0
    load = load1()
    db, token, last, art_id, rt_id = _setup(h, jobs)
    env = db_environment(db.settings)
    db.dispose()
    headers = {"Authorization": f"Bearer {token}"}
    with (h.root / "api-server.log").open("wb") as log:
        proc, url = _start(env, log)
    try:
        server = psutil.Process(proc.pid)
        path = url.split("//", 1)[1].split("/", 1)[1]
        lua = WRK_LUA % (1, last, "/" + path + "/job/")
        ping = _wrk(url, "/ping.json", headers, seconds, None, h.root) or _measure(
            url, headers, seconds, lambda c: c.get("/ping.json")
        )
        one = _wrk(url, "/job/1.json", headers, seconds, lua, h.root) or _measure(
            url, headers, seconds, lambda c: c.get(f"/job/{random.randint(1, last)}.json")
        )
        page = _wrk(url, "/jobs.json?limit=50", headers, seconds, None, h.root) or _measure(
            url, headers, seconds, lambda c: c.get("/jobs.json?limit=50")
        )
        rss_before = server.memory_info().rss
        peak = rss_before

        async def download(c: Any) -> Any:
            nonlocal peak
            res = await c.get(f"/artifact/{art_id}/download")
            peak = max(peak, server.memory_info().rss)
            return res

        dl = _measure(url, headers, seconds, download)  # python: it watches the RSS
        create = _measure(
            url,
            headers,
            seconds,
            lambda c: c.post("/job/", json={"runtemplate_id": rt_id, "scheduled": "+1d"}),
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    base = ping["rps"]
    what = f"SQLite, {jobs:,} jobs, {CLIENTS} clients"

    def row(name: str, m: dict[str, float], target: str, met: bool | None) -> Row:
        return Row(
            f"API `{name}`, {what}",
            m["rps"],
            "req/s",
            base,
            "req/s",
            "GET /ping.json, same server and run",
            m["rps"] / base if base else None,
            target,
            met,
            f"p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms (ping p99 {ping['p99']:.1f} ms)",
            load,
        )

    growth = (peak - rss_before) / 1e6
    return [
        row(
            "GET /job/{id}.json",
            one,
            ">= 0.3 of ping, p99 <= 50 ms",
            one["rps"] >= 0.3 * base and one["p99"] <= 50,
        ),
        row("GET /jobs.json?limit=50", page, "p99 <= 50 ms", page["p99"] <= 50),
        Row(
            f"API artifact download {ARTIFACT_MB} MB, {what}",
            dl["mbps"],
            "MB/s",
            None,
            "",
            "",
            None,
            ">= 200 MB/s, memory flat",
            dl["mbps"] >= 200 and growth < 64,
            f"{dl['rps']:.1f} downloads/s; server RSS +{growth:.1f} MB during downloads",
            load,
        ),
        row("POST /job/", create, "", None),
    ]
