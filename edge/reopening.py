"""A camera that drops is reopened with back-off; after ``max_failures`` failures in a row the run
gives up with a SourceError (exit status 3), so systemd restarts the whole process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.errors import SourceError
from edge.sources import Frame, FrameSource, SourceFailure

log = logging.getLogger("edge.sources")


class ReopeningSource(FrameSource):
    """Reopens a failing source with exponential back-off; SourceError after too many failures.

    The first open is not retried: a wrong source at start is a setup error to report at once.
    """

    def __init__(
        self,
        source: FrameSource,
        max_failures: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.finite = source.finite
        self.max_failures = max_failures
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.sleep = sleep
        self.failures = 0  # in a row
        self.reopens = 0  # successful reopens over the whole run
        self.frames = 0

    @property
    def description(self) -> str:  # type: ignore[override]
        # a replay learns its frame rate when it opens
        return self.source.description

    def open(self) -> None:
        try:
            self.source.open()
        except SourceFailure as exc:
            self.source.close()
            raise SourceError(f"camera.source: {exc}") from None

    def read(self) -> Frame | None:
        delay = self.backoff_s
        while True:
            try:
                frame = self.source.read()
            except SourceFailure as exc:
                error = exc
            else:
                self.failures = 0
                if frame is not None:
                    self.frames += 1
                    frame.number = self.frames
                return frame
            # reopen until it works or the failures in a row run out
            while True:
                self.failures += 1
                if self.failures >= self.max_failures:
                    self.source.close()
                    raise SourceError(
                        f"{self.description}: {error}; gave up after {self.failures} failures in a row "
                        f"(camera.max_failures) at frame {self.frames}"
                    )
                log.warning(
                    "%s: %s; reopening in %.1f s (failure %d of %d)",
                    self.description, error, delay, self.failures, self.max_failures,
                )
                self.source.close()
                self.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
                try:
                    self.source.open()
                except SourceFailure as exc:
                    error = exc
                    continue
                self.reopens += 1
                break

    def close(self) -> None:
        self.source.close()
