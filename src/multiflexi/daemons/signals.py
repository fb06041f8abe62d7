"""Signals for the daemons. Handlers only set flags and events; the loops act on them.

* SIGTERM / SIGINT: the first asks for a graceful stop (stop claiming, let running jobs
  finish within the shutdown grace); the second cancels the running jobs at once.
* SIGHUP: re-read the configuration.

Setting a :class:`threading.Event` takes a lock the interrupted main thread may hold
(it waits on the same event), so handlers set events from a short helper thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def set_soon(event: threading.Event) -> None:
    """Set ``event`` without risking a deadlock with the thread a signal interrupted."""
    threading.Thread(target=event.set, name="signal-set", daemon=True).start()


@dataclass
class DaemonSignals:
    """What the signals asked for so far."""

    #: Wakes the main loop (set together with every flag below).
    wake: threading.Event = field(default_factory=threading.Event)
    #: Set by the second SIGTERM/SIGINT: cancel the running jobs now.
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_requests: int = 0
    reload_requested: bool = False

    @property
    def stopping(self) -> bool:
        return self.stop_requests > 0

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_requests += 1
        if self.stop_requests > 1:
            set_soon(self.cancel)
        set_soon(self.wake)

    def stop(self) -> None:
        """Ask for a graceful stop from the daemon's own code (not from a handler)."""
        if self.stop_requests == 0:
            self.stop_requests = 1
        self.wake.set()

    def _on_reload(self, signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True
        set_soon(self.wake)

    def install(self) -> None:
        """Install the handlers (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    @contextmanager
    def installed(self) -> Iterator[DaemonSignals]:
        """The handlers for the duration of a block (``queue:process`` in a CLI), then the
        previous ones again. Outside the main thread nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in _HANDLED}
        self.install()
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def take_reload(self) -> bool:
        """Whether a reload was asked for since the last call."""
        asked, self.reload_requested = self.reload_requested, False
        return asked
