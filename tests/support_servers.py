"""Local receivers for tests of actions and monitoring: an HTTP server and a Zabbix trapper.

Both bind 127.0.0.1 on a free port, serve from threads, record everything they receive
and let a test wait for it with a deadline. Use them as context managers so that they
stop (and release any request they were told to hold) in every case.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from multiflexi.config import Settings
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- HTTP -------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What the server answers to one request; ``hang`` holds it until the server stops."""

    status: int = 200
    body: Any = field(default_factory=dict)
    hang: bool = False


class HttpReceiver:
    """Records every request; answers with the scripted replies, then with ``default``."""

    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self.script = list(replies)
        self.default = default or Reply()
        self.requests: list[Request] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Request(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                if reply.hang:
                    receiver.release.wait(30)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Request]:
        wait_until(lambda: len(self.requests) >= count, timeout, f"{count} HTTP request(s)")
        return list(self.requests)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Zabbix trapper ---------------------------------------------------------------------


@dataclass
class Packet:
    """One decoded Zabbix protocol request."""

    flags: int
    datalen: int
    reserved: int
    raw: bytes
    data: dict[str, Any]

    def items(self) -> list[dict[str, Any]]:
        return list(self.data.get("data") or [])


def _read(conn: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            raise ConnectionError(f"short read: {len(buf)} of {size} bytes")
        buf += chunk
    return buf


def decode_packet(conn: socket.socket) -> Packet:
    """Read one request: ``ZBXD``, flags, data length, reserved, then the JSON body."""
    head = _read(conn, 5)
    if head[:4] != b"ZBXD":
        raise ValueError(f"bad protocol header {head[:4]!r}")
    flags = head[4]
    if flags & 0x04:  # large packet: 64-bit lengths
        datalen, reserved = struct.unpack("<QQ", _read(conn, 16))
    else:
        datalen, reserved = struct.unpack("<II", _read(conn, 8))
    raw = _read(conn, datalen)
    body = zlib.decompress(raw) if flags & 0x02 else raw
    return Packet(flags, datalen, reserved, raw, json.loads(body))


def encode_response(data: dict[str, Any]) -> bytes:
    body = json.dumps(data).encode()
    return b"ZBXD\x01" + struct.pack("<II", len(body), 0) + body


class TrapperServer:
    """A Zabbix trapper on loopback. ``mode``: ok, hang (never answers), unknown (the
    server refuses every item, as for an unknown key), garbage (not a Zabbix answer)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.packets: list[Packet] = []
        self.errors: list[str] = []
        self.release = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def settings_values(self, host: str = "mf-test-host") -> dict[str, str]:
        return {"ZABBIX_SERVER": "127.0.0.1", "ZABBIX_PORT": str(self.port), "ZABBIX_HOST": host}

    def __enter__(self) -> TrapperServer:
        self.running.set()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running.clear()
        self.release.set()
        self.thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while self.running.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                packet = decode_packet(conn)
            except Exception as exc:
                self.errors.append(repr(exc))
                return
            self.packets.append(packet)
            if self.mode == "hang":
                self.release.wait(30)
                return
            if self.mode == "garbage":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                return
            n = len(packet.items())
            failed = n if self.mode == "unknown" else 0
            info = f"processed: {n - failed}; failed: {failed}; total: {n}; seconds spent: 0.000042"
            conn.sendall(encode_response({"response": "success", "info": info}))

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Packet]:
        wait_until(lambda: len(self.packets) >= count, timeout, f"{count} trapper packet(s)")
        return list(self.packets)

    def values(self) -> Iterator[tuple[str, str, str]]:
        for packet in self.packets:
            for item in packet.items():
                yield item["host"], item["key"], item["value"]


# -- jobs -------------------------------------------------------------------------------


def run_job(
    db: Database, settings: Settings, rt_id: int, hooks: list[Any] | None = None, **kw: Any
) -> Job:
    """Create, claim and run a job of ``rt_id`` with the built-in hooks (or ``hooks``)."""
    job = create_job(db, settings, runtemplate_id=rt_id, **kw)
    claim = claim_job(db, job.id, new_worker_id("test"), settings.lease_seconds)
    JobRunner(db, settings, job_hooks=hooks).perform_job(claim)
    with db.read() as s:
        done = s.get(Job, job.id)
        assert done is not None
        return done


def settings_for(db: Database, **extra: str) -> Settings:
    """The database's settings plus ``extra`` keys (as if in the configuration file)."""
    from multiflexi.config import settings_from_values

    return settings_from_values({**db.settings.raw, **extra})


def outcomes(db: Database, job_id: int) -> list[dict[str, Any]]:
    """The recorded action outcomes of a job, as ``job:show`` lists them."""
    from multiflexi.jobs.service import get_job, job_record

    with db.read() as s:
        return list(job_record(s, get_job(s, job_id))["actions"])


PROBE = """
import json, os, sys
tmp = os.environ["MULTIFLEXI_TMP"]
with open(os.path.join(tmp, "metrics.json"), "w") as fh:
    json.dump({"rows": 12, "company": os.environ["MULTIFLEXI_COMPANY_SLUG"]}, fh)
print("out line")
print("err line: something broke", file=sys.stderr)
sys.exit(int(os.environ.get("EXIT", "0")))
"""
