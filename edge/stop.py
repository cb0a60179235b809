"""SIGINT, SIGTERM and SIGHUP end ``masknet run`` promptly, whatever it is doing.

A signal sets ``StopSignals.signal``. Inside ``interruptible()`` (the run: start-up, opening the
camera, the reopen back-off) the handler also raises ``Stopped`` so the run unwinds through its
``finally`` and switches the outputs off; inside ``deferred()`` (one frame through the pipeline,
which may be writing an event line) the frame loop finishes the frame and stops before the next.
Outside ``interruptible()`` (the shutdown itself) a signal only sets the flag, so nothing can
interrupt switching the outputs off.

A Python signal handler only runs when the main thread is back in the interpreter, so a camera
open or read blocked inside OpenCV/ffmpeg (an RTSP server that never answers) would delay it for
as long as that call lasts. ``signal.set_wakeup_fd`` has the C-level handler write the signal
number to a pipe at once; a watcher thread reads it and, when the main thread has not finished
within ``grace_s``, calls ``on_force`` (outputs off, events flushed, the one line) and ends the
process with ``os._exit``. The exit status is 128 + the signal number, as a shell reports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger("edge.run")

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(signum: int) -> int:
    """What a shell reports for a process ended by ``signum``: 130 SIGINT, 143 SIGTERM, 129 SIGHUP."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Stopped(BaseException):
    """Raised by the handler to unwind the run; BaseException so no ``except Exception`` eats it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


class StopSignals:
    """Handlers for SIGINT/SIGTERM/SIGHUP plus a watcher that forces the exit after ``grace_s``."""

    def __init__(self, on_force: Callable[[int], None] | None = None, grace_s: float = 1.0) -> None:
        self.signal: int | None = None
        self.on_force = on_force
        self.grace_s = grace_s
        self._deferred = 0
        self._interruptible = 0
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._pipe: tuple[int, int] | None = None
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    def install(self) -> StopSignals:
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._previous_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, args=(r,), name="masknet-stop", daemon=True)
        self._watcher.start()
        return self

    def restore(self) -> None:
        """Back to the previous handlers; the watcher stops (a signal from now on is not forced)."""
        self._done.set()
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        r, w = self._pipe
        self._pipe = None
        os.close(w)  # the watcher reads end-of-file and returns
        if self._watcher is not None:
            self._watcher.join(timeout=1.0)
        os.close(r)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A signal inside this block (and outside ``deferred``) raises ``Stopped`` at once."""
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A signal inside this block only sets ``signal``: the block runs to its end."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.signal is None
        if first:
            self.signal = signum
        # a second signal while unwinding must not interrupt the clean-up: the watcher bounds it
        if first and self._interruptible and not self._deferred:
            raise Stopped(signum)

    def _watch(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 1)
            except OSError:
                return
            if not data:
                return
            signum = data[0]
            if signum not in STOP_SIGNALS:
                continue
            if self._done.wait(self.grace_s):
                return
            # the main thread is stuck in a blocking call: stop the door from here
            if self.signal is None:
                self.signal = signum
            code = exit_status(self.signal)
            try:
                if self.on_force is not None:
                    self.on_force(self.signal)
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os._exit(code)

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
