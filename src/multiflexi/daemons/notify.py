"""systemd's notification protocol (``sd_notify(3)``), spoken without a systemd library.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
A daemon sends newline-separated ``KEY=VALUE`` datagrams there: ``READY=1`` once it is
up, ``RELOADING=1`` and ``READY=1`` around a reload, ``STOPPING=1`` when it begins to
stop, ``STATUS=...`` for ``systemctl status`` and ``WATCHDOG=1`` at least every half
watchdog interval, from the main loop, so that a loop that hangs is restarted.

Without ``NOTIFY_SOCKET`` every call does nothing. A failed send is logged at debug level
and never fatal: notifications are advice to the service manager, not the daemon's work.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger("multiflexi.daemon")

#: What systemd puts in the environment for us alone: job processes must not inherit it.
_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(raw: str) -> str | None:
    """The address to ``sendto``: a filesystem path, or ``@name`` as the abstract
    ``\\0name``. Other forms (``vsock:``) are not ours to speak: None."""
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    return None


def watchdog_seconds(environ: MutableMapping[str, str], pid: int) -> float | None:
    """The watchdog interval systemd asked this process for, if any."""
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None  # meant for another process (we were started by the one it names)
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Notifier:
    """Notifications to the service manager; inert without ``NOTIFY_SOCKET``."""

    def __init__(
        self,
        address: str | None = None,
        watchdog: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        #: How often the main loop pets the watchdog, and so the longest it may sleep: a
        #: quarter of the interval systemd asked for, so that two pets are never more
        #: than half an interval apart (as ``sd_watchdog_enabled(3)`` recommends).
        self.pet_every = watchdog / 4 if watchdog else None
        self._clock = clock
        self._last_pet: float | None = None
        self._socket: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier systemd set up for this process. Its variables are removed from
        the environment (as ``sd_notify(unset_environment=1)``): the jobs this daemon
        starts are not the service and must not speak for it."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        watchdog = watchdog_seconds(env, os.getpid())
        for name in _VARIABLES:
            env.pop(name, None)
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("action=notify skipped=unsupported_socket notify_socket=%s", raw)
        return cls(address, watchdog if address else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        """One datagram of ``KEY=VALUE`` fields."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.debug("action=notify error=%s", exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", _status(status))

    def status(self, status: str) -> None:
        self.send(_status(status))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd tell this reload from an older one (systemd >= 253
        # requires it; older versions ignore it).
        self.send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", _status(status))

    def pet(self) -> None:
        """``WATCHDOG=1`` if the watchdog is on and :attr:`pet_every` has passed since the
        last one; the main loop calls it on every turn."""
        if self.pet_every is None:
            return
        now = self._clock()
        if self._last_pet is None or now - self._last_pet >= self.pet_every:
            self._last_pet = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())
