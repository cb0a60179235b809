"""Frame sources behind one interface: the Pi camera, OpenCV captures and folders of images.

``make_source(spec, camera_config)`` turns the ``camera.source`` setting into a source, which
the caller then ``open()``s (``masknet run`` wraps it in ``ReopeningSource`` first):

* ``auto``: the Pi camera if one is connected, else webcam 0, else a SourceError;
* ``picamera``: picamera2 with a main stream (crops) and a low-resolution "lores" stream
  (face detection), captured from the same request as picamera2's examples do;
* a webcam index (``0``), a video file, or an ``rtsp://`` / ``http://`` URL: OpenCV VideoCapture;
* a folder: its images in name order (unreadable ones skipped with a warning), optionally looped.

Sources return RGB uint8 frames. A camera source reuses its frame buffers, so a Frame is valid
until the next ``read``: the door runs for months and a fresh multi-megabyte array per frame
would only feed the allocator. ``ReopeningSource`` wraps any source so that a camera that drops
is reopened with back-off, and gives up with a SourceError (exit status 3) after
``max_failures`` failures in a row, so systemd restarts the whole process.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.config import CameraConfig
from edge.errors import SourceError

log = logging.getLogger("edge.sources")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceFailure(Exception):
    """A source broke in a way that reopening may fix (camera unplugged, stream dropped)."""


@dataclass
class Frame:
    """One captured frame. ``image`` feeds the detector; faces are cropped from ``full``."""

    image: np.ndarray  # RGB uint8 HxWx3
    timestamp: float  # time.monotonic() at capture
    number: int = 0  # set by ReopeningSource: counts across reopens
    full: np.ndarray | None = None  # a larger view of the same instant (Pi main stream)
    name: str = ""  # file name for folder sources

    @property
    def crop_image(self) -> np.ndarray:
        return self.image if self.full is None else self.full


class FrameSource:
    """Interface of every source."""

    description = "source"
    # finite sources (files, folders without loop) end with read() -> None
    finite = False

    def open(self) -> None:
        """Start capturing; SourceFailure when the device is not there (yet)."""
        raise NotImplementedError

    def read(self) -> Frame | None:
        """The next frame, None at the end of a finite source, SourceFailure when broken."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device; safe to call twice and after a failed open."""
        raise NotImplementedError

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _cv2():  # noqa: ANN202 - cv2 has no useful type
    import cv2

    # OpenCV logs probing failures (e.g. a missing /dev/video0) as warnings on stderr; we report
    # them ourselves in one line. Set once: every read() asks for cv2 through here.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


class FolderSource(FrameSource):
    """The images of a folder in name order; ``loop`` starts again at the end."""

    def __init__(self, folder: Path | str, loop: bool = False) -> None:
        self.folder = Path(folder)
        self.loop = loop
        self.finite = not loop
        self.description = f"folder {self.folder}"
        self._files: list[Path] = []
        self._pos = 0
        self._bad: set[Path] = set()
        self._good_in_pass = 0

    def _list(self) -> list[Path]:
        try:
            with os.scandir(self.folder) as it:
                files = [
                    Path(e.path)
                    for e in it
                    if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith(".")
                ]
        except OSError as exc:
            raise SourceFailure(f"cannot list {self.folder} ({exc.strerror})") from None
        return sorted(files, key=lambda p: p.name)

    def open(self) -> None:
        self._files = self._list()
        if not self._files:
            raise SourceFailure(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self._pos = 0
        self._good_in_pass = 0

    def read(self) -> Frame | None:
        cv2 = _cv2()
        while True:
            if self._pos >= len(self._files):
                if not self.loop:
                    return None
                if self._good_in_pass == 0:
                    raise SourceFailure(f"none of the {len(self._files)} images in {self.folder} is readable")
                self._pos = 0
                self._good_in_pass = 0
            path = self._files[self._pos]
            self._pos += 1
            if path in self._bad:
                continue
            if not path.exists():
                raise SourceFailure(f"{path} disappeared")
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None or bgr.ndim != 3:
                self._bad.add(path)
                log.warning("skipping unreadable image %s", path)
                continue
            self._good_in_pass += 1
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
            return Frame(image=rgb, timestamp=time.monotonic(), name=path.name)

    def close(self) -> None:
        self._files = []


class OpenCVSource(FrameSource):
    """A webcam index, video file or network stream through cv2.VideoCapture."""

    def __init__(
        self,
        target: int | str,
        width: int = 1280,
        height: int = 720,
        fps: int = 15,
        loop: bool = False,
    ) -> None:
        self.target = target
        self.width, self.height, self.fps = width, height, fps
        self.is_file = isinstance(target, str) and not target.startswith(URL_SCHEMES)
        self.loop = loop
        self.finite = self.is_file and not loop
        if isinstance(target, int):
            self.description = f"webcam {target}"
        elif self.is_file:
            self.description = f"video {target}"
        else:
            self.description = f"stream {_redact(target)}"
        self._cap = None
        self._bgr: np.ndarray | None = None
        self._rgb: np.ndarray | None = None

    def open(self) -> None:
        cv2 = _cv2()
        self.close()
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceFailure(f"cannot open {self.description}")
        if isinstance(self.target, int):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            # a stale buffered frame is a person who has already walked on
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> Frame | None:
        cv2 = _cv2()
        if self._cap is None:
            raise SourceFailure(f"{self.description} is not open")
        ok, bgr = self._cap.read(self._bgr)
        if not ok or bgr is None:
            if self.is_file:
                if not self.loop:
                    return None
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._cap.read(self._bgr)
                if not ok or bgr is None:
                    raise SourceFailure(f"{self.description} has no readable frames")
            else:
                raise SourceFailure(f"{self.description} stopped delivering frames")
        t = time.monotonic()
        self._bgr = bgr
        if self._rgb is None or self._rgb.shape != bgr.shape:
            self._rgb = np.empty_like(bgr)
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=self._rgb)
        return Frame(image=self._rgb, timestamp=t)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class PiCameraSource(FrameSource):
    """The Raspberry Pi camera through picamera2: main stream for crops, lores for detection."""

    description = "Pi camera"

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        lores_width: int = 320,
        lores_height: int = 180,
        fps: int = 15,
    ) -> None:
        self.size = (width, height)
        # YUV420 planes need even sizes; lores cannot be larger than main
        self.lores_size = (min(lores_width, width) // 2 * 2, min(lores_height, height) // 2 * 2)
        self.fps = fps
        self._cam = None
        self._main: np.ndarray | None = None
        self._lores: np.ndarray | None = None
        self._lores_wide = np.empty((0, 0, 3), np.uint8)
        self._main_w = width

    def open(self) -> None:
        self.close()
        picamera2 = _import_picamera2()
        if picamera2 is None:
            raise SourceFailure("picamera2 is not installed (sudo apt install python3-picamera2)")
        try:
            if not picamera2.Picamera2.global_camera_info():
                raise SourceFailure("no Pi camera is connected (check the ribbon cable)")
            cam = picamera2.Picamera2()
            # RGB888 is B,G,R in memory; lores must be YUV420 on the Pi 4 and earlier
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                lores={"size": self.lores_size, "format": "YUV420"},
                controls={"FrameRate": float(self.fps)},
            )
            cam.configure(config)
            cam.start()
        except SourceFailure:
            raise
        except Exception as exc:  # picamera2/libcamera raise bare RuntimeErrors
            raise SourceFailure(f"cannot start the Pi camera ({_one_line(exc)})") from None
        self._cam = cam

    def read(self) -> Frame | None:
        cv2 = _cv2()
        if self._cam is None:
            raise SourceFailure("the Pi camera is not open")
        try:
            request = self._cam.capture_request()
            try:
                main = request.make_array("main")
                lores = request.make_array("lores")
            finally:
                request.release()
        except Exception as exc:
            raise SourceFailure(f"Pi camera capture failed ({_one_line(exc)})") from None
        t = time.monotonic()
        lw, lh = self.lores_size
        stride = lores.shape[1]
        if self._lores is None or self._lores_wide.shape[1] != stride:
            self._lores = np.empty((lh, lw, 3), np.uint8)
            self._lores_wide = np.empty((lh, stride, 3), np.uint8)
            # the camera may round the size; never read its row padding
            self._main_w = min(main.shape[1], self.size[0])
            self._main = np.empty((main.shape[0], self._main_w, 3), np.uint8)
        # A YUV420 row can be padded to a stride wider than the image; the chroma planes are then
        # packed at half that stride. Converting the whole stride keeps the planes aligned; the
        # padding columns are dropped afterwards.
        cv2.cvtColor(lores, cv2.COLOR_YUV2RGB_I420, dst=self._lores_wide)
        np.copyto(self._lores, self._lores_wide[:, :lw])
        cv2.cvtColor(main[:, : self._main_w, :3], cv2.COLOR_BGR2RGB, dst=self._main)
        return Frame(image=self._lores, full=self._main, timestamp=t)

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except Exception as exc:  # closing a camera that already vanished
                log.debug("Pi camera close: %s", exc)
            self._cam = None


def _import_picamera2():  # noqa: ANN202
    try:
        import picamera2
    except ImportError:
        return None
    except Exception as exc:  # a broken libcamera install raises at import
        log.debug("picamera2 import failed: %s", exc)
        return None
    return picamera2


def pi_camera_present() -> bool:
    picamera2 = _import_picamera2()
    if picamera2 is None:
        return False
    try:
        return bool(picamera2.Picamera2.global_camera_info())
    except Exception:
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _redact(url: str) -> str:
    """A URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        creds, _, host = rest.partition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def make_source(spec: str, camera: CameraConfig) -> FrameSource:
    """The source a ``camera.source`` value names (``auto`` resolved here)."""
    spec = spec.strip()
    if spec == "auto":
        if pi_camera_present():
            spec = "picamera"
        else:
            webcam = OpenCVSource(0, camera.width, camera.height, camera.fps)
            try:
                webcam.open()
            except SourceFailure:
                raise SourceError(
                    "camera.source 'auto': no camera found (no Pi camera via picamera2, no webcam 0); "
                    "connect one, or pass --source with a webcam index, video file, URL or folder"
                ) from None
            return _Opened(webcam)
    if spec == "picamera":
        return PiCameraSource(camera.width, camera.height, camera.lores_width, camera.lores_height, camera.fps)
    if spec.isdigit():
        return OpenCVSource(int(spec), camera.width, camera.height, camera.fps)
    if spec.startswith(URL_SCHEMES):
        return OpenCVSource(spec, camera.width, camera.height, camera.fps)
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, loop=camera.loop)
    if path.is_file():
        return OpenCVSource(str(path), loop=camera.loop)
    raise SourceError(
        f"camera.source {spec!r}: no such file, folder or camera; use auto, picamera, a webcam "
        "index, a video file, an rtsp:// or http:// URL, or a folder of images"
    )


class _Opened(FrameSource):
    """A source that ``auto`` already opened while probing: the first open() is free."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.description = inner.description
        self.finite = inner.finite
        self._fresh = True

    def open(self) -> None:
        if not self._fresh:
            self.inner.open()
        self._fresh = False

    def read(self) -> Frame | None:
        return self.inner.read()

    def close(self) -> None:
        self._fresh = False
        self.inner.close()


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
        self.description = source.description
        self.finite = source.finite
        self.max_failures = max_failures
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.sleep = sleep
        self.failures = 0  # in a row
        self.reopens = 0  # successful reopens over the whole run
        self.frames = 0

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
