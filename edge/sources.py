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
would only feed the allocator. Video files and folders are wrapped in ``edge.replay.Replay`` (a
camera's pace and time stamps); ``edge.reopening.ReopeningSource`` wraps any source so that a
camera that drops is reopened with back-off.
"""

from __future__ import annotations

import functools
import logging
import os
import time
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
    # time.monotonic() when read; differs from ``timestamp`` only for a replay, whose timestamp
    # is the frame's place in the recording (the time rules run on it) — latency uses this one
    captured: float | None = None

    @property
    def read_at(self) -> float:
        return self.timestamp if self.captured is None else self.captured

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
    # ffmpeg reads its log level when the first capture opens; "-8" (quiet) keeps "moov atom not
    # found" and the like off stderr: we say what went wrong in our own line. setdefault: a user
    # debugging a stream can still set it.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    # OpenCV logs probing failures (e.g. a missing /dev/video0) as warnings on stderr; we report
    # them ourselves in one line. Set once: every read() asks for cv2 through here.
    # opencv-python 4.x (the Pi's, held to numpy 1.x) has no cv2.utils.logging, only setLogLevel
    logging_api = getattr(cv2.utils, "logging", None)
    if logging_api is not None:
        logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    else:
        cv2.setLogLevel(0)  # cv::utils::logging::LOG_LEVEL_SILENT
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
                if self._good_in_pass == 0:
                    # a folder of only unreadable images is not "done": nothing was checked
                    raise SourceError(
                        f"camera.source {self.folder}: no frame could be read (none of its "
                        f"{len(self._files)} images is a readable image)"
                    )
                if not self.loop:
                    return None
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
        open_timeout_s: float = 10.0,
    ) -> None:
        self.target = target
        self.width, self.height, self.fps = width, height, fps
        self.open_timeout_s = open_timeout_s
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
        self.expected_frames = 0  # a file's frame count as its container states it (0: unknown)
        self.native_fps = 0.0  # a file's frame rate as its container states it (0: unknown)
        self._in_pass = 0  # frames read since the file (re)started

    def open(self) -> None:
        cv2 = _cv2()
        self.close()
        t0 = time.monotonic()
        if self.is_file or isinstance(self.target, int):
            cap = cv2.VideoCapture(self.target)
        else:
            # a server that accepts and never answers would hold ffmpeg for its own 30 s
            log.info("connecting to %s (camera.open_timeout_s %g s)", self.description, self.open_timeout_s)
            ms = int(self.open_timeout_s * 1000)
            cap = cv2.VideoCapture(
                self.target, cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms],
            )
        if not cap.isOpened():
            cap.release()
            waited = time.monotonic() - t0
            why = (
                f" (no answer within {self.open_timeout_s:g} s, camera.open_timeout_s)"
                if not self.is_file and not isinstance(self.target, int) and waited >= 0.9 * self.open_timeout_s
                else ""
            )
            raise SourceFailure(f"cannot open {self.description}{why}")
        if self.is_file:
            self.expected_frames = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            self.native_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self._in_pass = 0
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
            if not self.is_file:
                raise SourceFailure(f"{self.description} stopped delivering frames")
            if not self._file_ended():
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._in_pass = 0
            ok, bgr = self._cap.read(self._bgr)
            if not ok or bgr is None:
                raise SourceFailure(f"{self.description} has no readable frames")
        self._in_pass += 1
        t = time.monotonic()
        self._bgr = bgr
        if self._rgb is None or self._rgb.shape != bgr.shape:
            self._rgb = np.empty_like(bgr)
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=self._rgb)
        return Frame(image=self._rgb, timestamp=t)

    def _file_ended(self) -> bool:
        """At the end of a video file: whether to play it again (``loop`` and the file whole)."""
        read, expected = self._in_pass, self.expected_frames
        if read == 0:
            raise SourceError(f"camera.source {self.target}: no frame could be read from this video file")
        # the container's count can be an estimate from the duration: allow 1 % and a frame
        broken = expected > 0 and read < expected * 0.99 - 1
        if broken:
            log.warning(
                "%s: stream ended early (%d of %d frames)%s", self.description, read, expected,
                "; not looping a broken file" if self.loop else "",
            )
        return self.loop and not broken

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
    """picamera2, None when it is not installed; SourceFailure with the real error when it is
    installed but cannot be imported (a broken libcamera, or numpy 2 shadowing the apt numpy that
    picamera2 and simplejpeg were built against: ``numpy.dtype size changed``)."""
    try:
        import picamera2
    except ModuleNotFoundError as exc:
        if exc.name == "picamera2":
            return None
        raise SourceFailure(f"picamera2 is installed but cannot be imported ({_describe(exc)})") from None
    except Exception as exc:
        raise SourceFailure(f"picamera2 is installed but cannot be imported ({_describe(exc)})") from None
    return picamera2


def pi_camera_present() -> bool:
    try:
        picamera2 = _import_picamera2()
    except SourceFailure as exc:
        # visible: otherwise `auto` only says "no camera found" and hides why
        log.warning("%s; looking for a webcam instead", exc)
        return False
    if picamera2 is None:
        return False
    try:
        return bool(picamera2.Picamera2.global_camera_info())
    except Exception:
        return False


def _picamera2_problem() -> str:
    """': <why picamera2 cannot be imported>', or '' when it imports or is simply not installed."""
    try:
        _import_picamera2()
    except SourceFailure as exc:
        return f": {exc}"
    return ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_one_line(exc)}"


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
                    f"camera.source 'auto': no camera found (no Pi camera via picamera2{_picamera2_problem()}, "
                    "no webcam 0); connect one, or pass --source with a webcam index, video file, URL or folder"
                ) from None
            return _Opened(webcam)
    if spec == "picamera":
        return PiCameraSource(camera.width, camera.height, camera.lores_width, camera.lores_height, camera.fps)
    if spec.isdigit():
        return OpenCVSource(int(spec), camera.width, camera.height, camera.fps)
    if spec.startswith(URL_SCHEMES):
        return OpenCVSource(spec, camera.width, camera.height, camera.fps, open_timeout_s=camera.open_timeout_s)
    path = Path(spec).expanduser()
    if path.is_dir() or path.is_file():
        from edge.replay import PacedFile, Replay  # replay builds on this module

        if path.is_dir():
            return Replay(FolderSource(path, loop=camera.loop), camera.fps, fast=not camera.pace)
        return PacedFile(OpenCVSource(str(path), loop=camera.loop), camera)
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
