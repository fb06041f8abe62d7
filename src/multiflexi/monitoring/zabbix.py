"""Zabbix monitoring of jobs, through trapper items (``zabbix_utils.Sender``).

Enabled when ``ZABBIX_SERVER`` is set (``ZABBIX_PORT`` defaults to 10051; ``ZABBIX_HOST``
names the monitored host; ``ZABBIX_TIMEOUT`` caps each send, default 2 s). The hook sends:

* at job creation, the low-level discovery value for :data:`LLD_KEY`: a JSON array of
  one object whose keys are LLD macros (``{#JOB_ID}``, ``{#RUNTEMPLATE_ID}`` ...), the
  form a Zabbix LLD rule uses without any LLD macro path;
* at start and at end, a JSON document for ``job-[<company slug>-<app code>-<rt id>]``
  with phase, status, exit code and meaning, times, duration, CPU, max RSS and artifact
  count.

The host is the company's ``zabbix_host``, else ``ZABBIX_HOST``, else this machine's
name. A send never takes longer than the timeout and never raises: a Zabbix that is
down or slow costs a job at most that long per send. Failures are counted
(:func:`send_failures`, exported as a metric) and logged once per outage.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiflexi.actions.payload import JobInfo
    from multiflexi.config import Settings
    from multiflexi.jobs.hooks import JobEvent

log = logging.getLogger("multiflexi.zabbix")

LLD_KEY = "multiflexi.job.lld"
DEFAULT_PORT = 10051
DEFAULT_TIMEOUT = 2.0

_lock = threading.Lock()
_failures = 0
_down = False


@dataclass(frozen=True)
class ZabbixTarget:
    """Where values go: the trapper's address and the default monitored host."""

    server: str
    port: int = DEFAULT_PORT
    host: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def host_for(self, zabbix_host: str = "") -> str:
        """company.zabbix_host, else ZABBIX_HOST, else this machine's name."""
        return zabbix_host or self.host or socket.gethostname()


def zabbix_target(settings: Settings) -> ZabbixTarget | None:
    """The configured Zabbix server, or None when monitoring is off."""
    raw: Mapping[str, str] = settings.raw
    server = (raw.get("ZABBIX_SERVER") or "").strip()
    if not server:
        return None
    try:
        port = int(raw.get("ZABBIX_PORT") or DEFAULT_PORT)
        timeout = float(raw.get("ZABBIX_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        log.warning("action=zabbix_config error=%s", "ZABBIX_PORT/ZABBIX_TIMEOUT not numbers")
        port, timeout = DEFAULT_PORT, DEFAULT_TIMEOUT
    return ZabbixTarget(server, port, (raw.get("ZABBIX_HOST") or "").strip(), timeout)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    message: str
    processed: int = 0
    failed: int = 0


def send_failures() -> int:
    """How many sends failed in this process (a Prometheus counter)."""
    return _failures


def _failed(message: str, *, outage: bool = True) -> SendResult:
    """Count a failed send; an outage (no answer) is logged when it begins."""
    global _failures, _down
    with _lock:
        _failures += 1
        first = outage and not _down
        _down = _down or outage
    if first:  # once per outage: a dead Zabbix must not flood the log
        log.warning("action=zabbix_down error=%s further_failures=counted_not_logged", message)
    return SendResult(False, message)


def _succeeded(result: SendResult) -> SendResult:
    global _down
    with _lock:
        was_down, _down = _down, False
    if was_down:
        log.info("action=zabbix_back")
    return result


def send(target: ZabbixTarget, values: Sequence[tuple[str, str, str]]) -> SendResult:
    """Send (host, key, value) triples; never raises, never takes longer than the timeout."""
    from zabbix_utils import ItemValue, Sender

    clock = int(time.time())
    items = [ItemValue(host, key, value, clock) for host, key, value in values]
    outcome: dict[str, Any] = {}

    opened: list[socket.socket] = []

    def keep(conn: socket.socket, _tls: Any) -> socket.socket:
        opened.append(conn)
        return conn

    def work() -> None:
        try:
            sender = Sender(
                server=target.server, port=target.port, timeout=target.timeout, socket_wrapper=keep
            )
            outcome["response"] = sender.send(items)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            # zabbix_utils leaves the socket open when an answer is missing or garbled.
            for conn in opened:
                conn.close()

    # zabbix_utils applies its timeout per socket operation; the thread bounds the whole.
    worker = threading.Thread(target=work, name="zabbix-send", daemon=True)
    worker.start()
    worker.join(target.timeout)
    where = f"{target.server}:{target.port}"
    # The socket's own timeout may fire just before the join's: the same silence.
    if worker.is_alive() or isinstance(outcome.get("error"), TimeoutError):
        return _failed(f"zabbix {where} did not answer within {target.timeout:g} s")
    if "error" in outcome:
        exc = outcome["error"]
        return _failed(f"zabbix {where}: {type(exc).__name__}: {exc}".strip())
    response = outcome["response"]
    processed, failed = int(response.processed), int(response.failed)
    if failed:
        # The server answered: not an outage, but the items are unknown to it.
        _succeeded(SendResult(True, ""))
        return _failed(f"zabbix {where}: processed {processed}, failed {failed}", outage=False)
    return _succeeded(SendResult(True, f"zabbix {where}: processed {processed}", processed))


# -- payloads ---------------------------------------------------------------------------


def phase_key(info: JobInfo) -> str:
    """``job-[<company slug>-<app code>-<runtemplate id>]``."""
    return f"job-[{info.item_code}]"


def interval_seconds(info: JobInfo) -> int:
    """The longest gap between the template's next scheduled runs; 0 if unscheduled."""
    if info.interv in ("", "n"):
        return 0
    try:
        from multiflexi.scheduling.calendar import upcoming
        from multiflexi.storage.types import utcnow

        ticks = upcoming(info.interv, info.cron, utcnow(), "UTC", n=4)
    except Exception:
        return 0
    gaps = [int((b - a).total_seconds()) for a, b in itertools.pairwise(ticks)]
    return max(gaps, default=0)


def lld_value(info: JobInfo, executor: str | None = None) -> str:
    """The discovery value: ``[{"{#JOB_ID}": ..., ...}]`` (macros, upper case)."""
    every = interval_seconds(info)
    macros = {
        "PHASE": "created",
        "JOB_ID": info.job_id,
        "APP_ID": info.app_id,
        "APP_NAME": info.app_name,
        "APP_CODE": info.app_code,
        "COMPANY_ID": info.company_id,
        "COMPANY_NAME": info.company_name,
        "COMPANY_CODE": info.company_slug,
        "RUNTEMPLATE_ID": info.runtemplate_id if info.runtemplate_id is not None else 0,
        "RUNTEMPLATE_NAME": info.runtemplate_name,
        "EXECUTOR": executor or info.executor,
        "INTERVAL_SECONDS": every,
        # A scheduled template that has not reported for two intervals (and at least
        # 30 minutes, the smallest sensible nodata period) has not run.
        "NODATA_PERIOD": f"{max(2 * every, 1800)}s",
    }
    return json.dumps([{f"{{#{k}}}": str(v) for k, v in macros.items()}], ensure_ascii=False)


def phase_value(info: JobInfo, phase: str) -> str:
    """The JSON of a phase item (``jobStart`` or ``jobDone``)."""
    done = phase == "jobDone"
    data: dict[str, Any] = {
        "phase": phase,
        "job_id": info.job_id,
        "status": info.status,
        "executor": info.executor,
        "schedule_type": info.schedule_type,
        "app_id": info.app_id,
        "app_name": info.app_name,
        "company_id": info.company_id,
        "company_name": info.company_name,
        "company_code": info.company_slug,
        "runtemplate_id": info.runtemplate_id,
        "runtemplate_name": info.runtemplate_name,
        "interval": info.interv,
        "interval_seconds": interval_seconds(info),
        "begin": info.begin.isoformat() if info.begin else None,
        "host": info.host,
        "version": info.app_version,
    }
    if done:
        data.update(
            exitcode=info.exitcode,
            exitcode_description=info.exit_meaning,
            reason=info.reason,
            end=info.end.isoformat() if info.end else None,
            duration=info.duration,
            cpu_user=info.cpu_user,
            cpu_system=info.cpu_system,
            max_rss_kb=info.max_rss_kb,
            artifacts=len(info.artifacts),
            failed=0 if info.status == "success" else 1,
        )
    return json.dumps(data, ensure_ascii=False)


# -- the hook ---------------------------------------------------------------------------


class ZabbixHook:
    """Reports job creation (LLD), start and end to Zabbix."""

    def __init__(self, target: ZabbixTarget) -> None:
        self.target = target

    def _info(self, event: JobEvent) -> tuple[JobInfo, frozenset[str]]:
        from multiflexi.actions.payload import load_job_info
        from multiflexi.secrets import Vault

        info, secrets, _ = load_job_info(
            event.db, event.job_id, Vault.from_settings(event.settings, event.db)
        )
        return info, secrets

    def _send(self, info: JobInfo, secrets: frozenset[str], key: str, value: str) -> None:
        from multiflexi.actions.payload import scrub

        result = send(
            self.target, [(self.target.host_for(info.zabbix_host), key, scrub(value, secrets))]
        )
        if not result.ok:
            log.debug(
                "action=zabbix_send job_id=%s key=%s error=%s", info.job_id, key, result.message
            )

    def job_created(self, event: JobEvent) -> None:
        info, secrets = self._info(event)
        self._send(info, secrets, LLD_KEY, lld_value(info))

    def job_started(self, event: JobEvent) -> None:
        info, secrets = self._info(event)
        self._send(info, secrets, phase_key(info), phase_value(info, "jobStart"))

    def job_finished(self, event: JobEvent) -> None:
        info, secrets = self._info(event)
        self._send(info, secrets, phase_key(info), phase_value(info, "jobDone"))


def hook_factory(settings: Settings) -> ZabbixHook | None:
    """Built-in hook factory: a :class:`ZabbixHook` when ZABBIX_SERVER is set."""
    target = zabbix_target(settings)
    return ZabbixHook(target) if target is not None else None


# -- run templates that cannot be scheduled -----------------------------------------------

#: Trapper item of the installation's host: JSON ``{"count": n, "templates": [...]}``.
SCHEDULE_ERRORS_KEY = "multiflexi.schedule.errors"


def schedule_errors_value(rows: Sequence[Mapping[str, Any]]) -> str:
    """The value of :data:`SCHEDULE_ERRORS_KEY` for the broken templates ``rows``
    (``multiflexi.scheduling.problems.broken_templates``)."""
    templates = [
        {
            "runtemplate_id": r["runtemplate_id"],
            "runtemplate": r["runtemplate"],
            "company": r["company"],
            "app": r["app"],
            "error": r["error"],
            "since": r["since"].isoformat() if r["since"] is not None else None,
        }
        for r in rows
    ]
    return json.dumps({"count": len(templates), "templates": templates}, ensure_ascii=False)


class ScheduleErrorReport:
    """Sends the templates that cannot be scheduled to Zabbix from the scheduler daemon:
    when the list changes, and every :attr:`EVERY` seconds however it is (a value that
    stops coming is itself a sign)."""

    #: Seconds between two reads of the list.
    LOOK_EVERY = 30.0
    #: Seconds between two sends of an unchanged list.
    EVERY = 600.0

    def __init__(self, target: ZabbixTarget) -> None:
        self.target = target
        self._looked = self._sent = float("-inf")
        self._last: str | None = None

    def tick(self, read: Any, clock: float | None = None) -> bool:
        """Read the list through ``read()`` when due and send it if needed; whether it
        was sent. Never raises (a failing read is retried at the next look)."""
        now = time.monotonic() if clock is None else clock
        if now - self._looked < self.LOOK_EVERY:
            return False
        self._looked = now
        try:
            value = schedule_errors_value(read())
        except Exception as exc:
            log.debug("action=schedule_errors_read error=%s", exc)
            return False
        if value == self._last and now - self._sent < self.EVERY:
            return False
        result = send(self.target, [(self.target.host_for(), SCHEDULE_ERRORS_KEY, value)])
        if result.ok:
            self._last, self._sent = value, now
        return result.ok
