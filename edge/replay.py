"""Video files and folders delivered as a camera would deliver them.

A replay read as fast as the CPU allows runs the door's time rules (hold, commit after N seconds,
expiry, buzzer) across several people at once. ``Replay`` paces a file source at its frame rate
and stamps each frame with its time in the recording; with ``fast`` it skips the waiting but keeps
the stamps, so both give the same events.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.config import CameraConfig
from edge.sources import Frame, FrameSource, OpenCVSource


class Replay(FrameSource):
    """A video file or image folder delivered as a camera would: at ``fps``, each frame stamped
    with its time in the recording (start + n / fps). With ``fast`` it is read as fast as the CPU
    allows, with the same stamps, so hold times, commit-after-N-seconds and expiry give the same
    events either way. A slow CPU makes a paced replay run late rather than drop frames (a camera
    would drop them), so a replay is reproducible.
    """

    def __init__(
        self,
        source: FrameSource,
        fps: float,
        fast: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.source = source
        self.fps = fps
        self.fast = fast
        self.description = f"{source.description} at {fps:g} FPS" + (" (--fast: as fast as the CPU allows)" if fast else "")
        self.finite = source.finite
        self.clock = clock
        self.sleep = sleep
        self._start: float | None = None
        self._n = 0

    def open(self) -> None:
        self.source.open()

    def read(self) -> Frame | None:
        frame = self.source.read()
        if frame is None:
            return None
        if self._start is None:
            self._start = frame.read_at
        due = self._start + self._n / self.fps
        self._n += 1
        if not self.fast:
            wait = due - self.clock()
            if wait > 0:
                self.sleep(wait)
        frame.captured = self.clock() if not self.fast else frame.read_at
        frame.timestamp = due
        return frame

    def close(self) -> None:
        self.source.close()


def file_fps(source: FrameSource, default: float) -> float:
    """A video file's own frame rate (its container's), else ``default`` (folders, no rate)."""
    rate = getattr(source, "native_fps", 0.0)
    return rate if rate and 0 < rate <= 1000 else float(default)


class PacedFile(FrameSource):
    """A video file replayed at its own frame rate, known only once it is open."""

    def __init__(self, inner: OpenCVSource, camera: CameraConfig) -> None:
        self.inner = inner
        self.camera = camera
        self.description = inner.description
        self.finite = inner.finite
        self._replay: Replay | None = None

    def open(self) -> None:
        self.inner.open()
        if self._replay is None:
            self._replay = Replay(self.inner, file_fps(self.inner, self.camera.fps), fast=not self.camera.pace)
            self.description = self._replay.description

    def read(self) -> Frame | None:
        assert self._replay is not None
        return self._replay.read()

    def close(self) -> None:
        self.inner.close()
