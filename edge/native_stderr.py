"""Native libraries' stderr messages become debug log lines instead of noise between ours.

ffmpeg ("moov atom not found"), libjpeg ("Premature end of JPEG file"), OpenCV and the TFLite
runtime ("Created TensorFlow Lite XNNPACK delegate") write straight to file descriptor 2. While
``masknet run`` promises one line per problem, ``NativeStderr`` points fd 2 at a pipe that a
thread reads line by line into the ``edge.native`` logger at DEBUG (shown with MASKNET_DEBUG=1),
and gives Python's own ``sys.stderr`` a duplicate of the real stderr, so our lines (and the mock
pins' echo) reach the terminal or the journal unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading

log = logging.getLogger("edge.native")


class NativeStderr:
    def __init__(self) -> None:
        self._real_fd: int | None = None
        self._old_stderr: io.TextIOBase | None = None
        self._reader: threading.Thread | None = None
        self.stream: io.TextIOWrapper | None = None

    def install(self) -> NativeStderr:
        try:
            sys.stderr.flush()
            real = os.dup(2)
        except (OSError, AttributeError, ValueError):  # no fd 2 (e.g. a closed stderr): nothing to route
            return self
        self._real_fd = real
        self._old_stderr = sys.stderr  # type: ignore[assignment]
        self.stream = io.TextIOWrapper(
            io.FileIO(os.dup(real), "w"), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
        sys.stderr = self.stream
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self._reader = threading.Thread(target=self._read, args=(r,), name="masknet-native-stderr", daemon=True)
        self._reader.start()
        return self

    @staticmethod
    def _read(fd: int) -> None:
        with open(fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    log.debug("%s", line)

    def restore(self) -> None:
        """fd 2 back to the real stderr (the reader sees end-of-file), ``sys.stderr`` back."""
        if self._real_fd is None:
            return
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(self._real_fd, 2)
        os.close(self._real_fd)
        self._real_fd = None
        if self._reader is not None:
            self._reader.join(timeout=1.0)
        sys.stderr = self._old_stderr  # type: ignore[assignment]
        # handlers made while routing hold our stream: hand them the restored one
        for handler in logging.getLogger("edge").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                handler.setStream(sys.stderr)
        assert self.stream is not None
        with contextlib.suppress(Exception):
            self.stream.close()
