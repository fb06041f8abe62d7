"""CustomCommand: run a command with the finished job's context in its environment.

The command is split like a shell would (``shlex``) but never given to one. Its
environment holds the host basics (PATH, HOME, LANG...), the job's variables with secret
values redacted, and ``MULTIFLEXI_JOB_ID``, ``MULTIFLEXI_JOB_STATUS``,
``MULTIFLEXI_JOB_EXITCODE`` and friends. It runs in its own process group, killed at the
action's deadline. The last ~4 KB of its stdout and stderr go into the outcome message;
a non-zero exit fails the action.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from typing import IO

from multiflexi.actions.base import Action, ActionContext, ActionError, Option
from multiflexi.jobs.environment import HOST_VARIABLES

#: Bytes of each stream kept for the message.
KEEP = 4096


class _Tail:
    """Reads a stream to its end in a thread, keeping only its last :data:`KEEP` bytes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.total = 0
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            while chunk := stream.read(8192):
                self.total += len(chunk)
                self.chunks.append(chunk)
                self.size += len(chunk)
                while self.size - len(self.chunks[0]) >= KEEP:
                    self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        self.thread.join(2.0)
        data = b"".join(self.chunks)[-KEEP:]
        cut = "…" if self.total > KEEP else ""
        return cut + data.decode("utf-8", "replace").strip()


def command_environment(ctx: ActionContext) -> dict[str, str]:
    """The command's environment: host basics < job variables (redacted) < job context."""
    env = {k: os.environ[k] for k in HOST_VARIABLES if k in os.environ}
    env.update({k: v for k, v in ctx.job.variables.items() if "\x00" not in v})
    job = ctx.job
    context: Mapping[str, object] = {
        "MULTIFLEXI_JOB_ID": job.job_id,
        "MULTIFLEXI_JOB_STATUS": job.status,
        "MULTIFLEXI_JOB_MODE": ctx.mode,
        "MULTIFLEXI_JOB_EXITCODE": "" if job.exitcode is None else job.exitcode,
        "MULTIFLEXI_JOB_EXIT_MEANING": job.exit_meaning,
        "MULTIFLEXI_JOB_REASON": job.reason,
        "MULTIFLEXI_APPLICATION_ID": job.app_id,
        "MULTIFLEXI_APPLICATION_NAME": job.app_name,
        "MULTIFLEXI_APPLICATION_CODE": job.app_code,
        "MULTIFLEXI_COMPANY_ID": job.company_id,
        "MULTIFLEXI_COMPANY_NAME": job.company_name,
        "MULTIFLEXI_COMPANY_SLUG": job.company_slug,
        "MULTIFLEXI_RUNTEMPLATE_ID": "" if job.runtemplate_id is None else job.runtemplate_id,
        "MULTIFLEXI_RUNTEMPLATE_NAME": job.runtemplate_name,
    }
    env.update({k: str(v) for k, v in context.items()})
    return env


class CustomCommand(Action):
    name = "CustomCommand"
    description = (
        "Run a command (no shell) with the job's context as environment variables; "
        "its output is kept in the outcome; a non-zero exit fails the action."
    )
    options = (
        Option(
            "command",
            "command",
            required=True,
            description="Command line, split with shlex; e.g. /usr/local/bin/notify --job X.",
        ),
    )

    def perform(self, ctx: ActionContext) -> str:
        argv = list(ctx.options["command"])
        with tempfile.TemporaryDirectory(prefix="mf-action-") as cwd:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=command_environment(ctx),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except FileNotFoundError:
                raise ActionError(f"command not found: {argv[0]}") from None
            except PermissionError:
                raise ActionError(f"command not executable: {argv[0]}") from None
            assert proc.stdout is not None and proc.stderr is not None
            out, err = _Tail(proc.stdout), _Tail(proc.stderr)
            try:
                code = proc.wait(timeout=ctx.remaining())
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise ActionError(
                    f"timed out after {ctx.timeout:g} s; killed{_streams(out, err)}"
                ) from None
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
        streams = _streams(out, err)
        if code != 0:
            raise ActionError(f"exit code {code}{streams}")
        return f"exit code 0{streams}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _streams(out: _Tail, err: _Tail) -> str:
    parts = []
    for label, tail in (("stdout", out), ("stderr", err)):
        text = tail.text()
        if text:
            parts.append(f"\n{label}:\n{text}")
    return "".join(parts)
