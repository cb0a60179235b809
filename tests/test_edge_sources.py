from __future__ import annotations

import logging
import sys
import types
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import write_images

from edge.config import load_config
from edge.errors import SourceError
from edge.sources import (
    FolderSource,
    Frame,
    FrameSource,
    OpenCVSource,
    PiCameraSource,
    ReopeningSource,
    SourceFailure,
    _redact,
    make_source,
)


def solid(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def values(frames: list[Frame]) -> list[int]:
    return [int(f.image[0, 0, 0]) for f in frames]


def read_all(src: FrameSource, limit: int = 100) -> list[Frame]:
    out = []
    while len(out) < limit:
        f = src.read()
        if f is None:
            break
        out.append(Frame(f.image.copy(), f.timestamp, f.number, None, f.name))
    return out


def test_folder_plays_images_in_name_order_as_rgb(tmp_path: Path) -> None:
    write_images(tmp_path, [solid(10), solid(20), solid(30)])
    (tmp_path / "notes.txt").write_text("not an image")
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    write_images(tmp_path, [red], prefix="z")
    with FolderSource(tmp_path) as src:
        frames = read_all(src)
    assert values(frames) == [10, 20, 30, 255]
    assert frames[-1].image[0, 0].tolist() == [255, 0, 0]  # RGB, not OpenCV's BGR
    assert [f.name for f in frames][:2] == ["f00000.png", "f00001.png"]


def test_folder_skips_unreadable_images_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_images(tmp_path, [solid(10), solid(20)])
    (tmp_path / "f00000_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with caplog.at_level(logging.WARNING, logger="edge.sources"), FolderSource(tmp_path, loop=True) as src:
        frames = read_all(src, limit=6)
    assert values(frames) == [10, 20] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"skipping unreadable image {tmp_path / 'f00000_broken.jpg'}"]


def test_folder_of_only_unreadable_images_fails_instead_of_spinning(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"garbage")
    src = FolderSource(tmp_path, loop=True)
    src.open()
    with pytest.raises(SourceFailure, match="none of the 1 images"):
        src.read()


def test_empty_or_missing_folder_fails_to_open(tmp_path: Path) -> None:
    with pytest.raises(SourceFailure, match="no images"):
        FolderSource(tmp_path).open()
    with pytest.raises(SourceFailure, match="cannot list"):
        FolderSource(tmp_path / "absent").open()


def test_video_file_source_reads_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "door.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for v in (40, 120, 200):
        writer.write(np.full((48, 64, 3), v, np.uint8))
    writer.release()
    src = make_source(str(path), load_config().camera)
    assert isinstance(src, OpenCVSource) and src.finite
    with src:
        frames = read_all(src)
    assert len(frames) == 3
    assert frames[0].image.shape == (48, 64, 3)
    assert np.abs(np.array(values(frames)) - [40, 120, 200]).max() < 8


class Flaky(FrameSource):
    """A camera that delivers `good` frames per open, then drops; reopens work `reopen_ok` times."""

    description = "flaky camera"

    def __init__(self, good: int, reopen_ok: int) -> None:
        self.good, self.reopen_ok = good, reopen_ok
        self.opens = self.closes = self.served = 0
        self._left = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 + self.reopen_ok:
            raise SourceFailure("device not found")
        self._left = self.good

    def read(self) -> Frame | None:
        if self._left == 0:
            raise SourceFailure("stopped delivering frames")
        self._left -= 1
        self.served += 1
        return Frame(solid(self.served), timestamp=float(self.served))

    def close(self) -> None:
        self.closes += 1


def test_a_dropped_camera_is_reopened_with_backoff_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(good=3, reopen_ok=1)
    sleeps: list[float] = []
    src = ReopeningSource(flaky, max_failures=4, backoff_s=0.5, backoff_max_s=1.5, sleep=sleeps.append)
    src.open()
    numbers = []
    with caplog.at_level(logging.WARNING, logger="edge.sources"), pytest.raises(SourceError) as info:
        while True:
            numbers.append(src.read().number)
    assert numbers == [1, 2, 3, 4, 5, 6]  # 3 frames, reopened, 3 more; numbering continues
    assert src.reopens == 1
    # failure 1 -> reopen ok; then failures 1, 2, 3 with doubling back-off, the 4th gives up
    assert sleeps == [0.5, 0.5, 1.0, 1.5]
    assert str(info.value) == (
        "flaky camera: device not found; gave up after 4 failures in a row (camera.max_failures) at frame 6"
    )
    assert info.value.exit_code == 3
    assert "reopening in 0.5 s (failure 1 of 4)" in caplog.records[0].getMessage()


def test_the_first_open_is_not_retried() -> None:
    flaky = Flaky(good=1, reopen_ok=0)
    flaky.opens = 5  # the device is absent from the start
    src = ReopeningSource(flaky, max_failures=3, sleep=lambda s: pytest.fail("slept"))
    with pytest.raises(SourceError, match="camera.source: device not found"):
        src.open()


def test_missing_things_are_named(tmp_path: Path) -> None:
    cam = load_config().camera
    with pytest.raises(SourceError, match="camera.source '.*nowhere': no such file, folder or camera"):
        make_source(str(tmp_path / "nowhere"), cam)
    src = ReopeningSource(make_source("7", cam))
    with pytest.raises(SourceError, match="camera.source: cannot open webcam 7"):
        src.open()


def test_auto_without_any_camera_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # not installed
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a webcam 0, so auto finds a camera")
    with pytest.raises(SourceError, match="no camera found"):
        make_source("auto", load_config().camera)


class FakeRequest:
    def __init__(self, cam: FakePicamera2) -> None:
        self.cam = cam

    def make_array(self, name: str) -> np.ndarray:
        w, h = self.cam.config[name]["size"]
        if name == "main":
            bgr = np.zeros((h, w, 3), np.uint8)
            bgr[..., 2] = 200  # RGB888 in picamera2 is B, G, R in memory: this is red
            return bgr
        # YUV420 (I420) mid grey, rows padded to a stride of 64 bytes; Y rows, then U and V at
        # half the stride (two chroma rows per array row). Padding is 255: if the planes were
        # misread, padding would land in the picture as colour.
        stride = (w + 63) // 64 * 64
        yuv = np.full((h * 3 // 2, stride), 255, np.uint8)
        yuv[:h, :w] = 128
        chroma = yuv[h:].reshape(h, stride // 2)  # h/2 rows of U, then h/2 rows of V
        chroma[:, : w // 2] = 128
        return yuv

    def release(self) -> None:
        self.cam.released += 1


class FakePicamera2:
    cameras = [{"Model": "imx708"}]
    instances: list[FakePicamera2] = []

    def __init__(self) -> None:
        self.released = 0
        self.started = False
        FakePicamera2.instances.append(self)

    @classmethod
    def global_camera_info(cls) -> list[dict]:
        return cls.cameras

    def create_video_configuration(self, main: dict, lores: dict, controls: dict) -> dict:
        return {"main": main, "lores": lores, "controls": controls}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_request(self) -> FakeRequest:
        return FakeRequest(self)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        pass


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    FakePicamera2.instances = []
    FakePicamera2.cameras = [{"Model": "imx708"}]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_pi_camera_gives_lores_for_detection_and_main_for_crops(fake_picamera2) -> None:
    # 160 px lores rows are padded to a 192-byte stride
    cam_cfg = replace(load_config().camera, width=640, height=480, lores_width=160, lores_height=120)
    src = make_source("auto", cam_cfg)
    assert isinstance(src, PiCameraSource)
    with src:
        frame = src.read()
        cam = fake_picamera2.instances[0]
        assert cam.config["lores"] == {"size": (160, 120), "format": "YUV420"}
        assert cam.config["main"] == {"size": (640, 480), "format": "RGB888"}
        assert frame.image.shape == (120, 160, 3)
        assert np.abs(frame.image.astype(int) - 128).max() <= 2  # grey from YUV
        assert frame.full.shape == (480, 640, 3)
        assert frame.full[0, 0].tolist() == [200, 0, 0]  # red in RGB order
        assert frame.crop_image is frame.full
        assert cam.released == 1  # the request went back to the camera
    assert not cam.started


def test_pi_camera_absent_is_reported(fake_picamera2) -> None:
    fake_picamera2.cameras = []
    with pytest.raises(SourceFailure, match="no Pi camera is connected"):
        PiCameraSource().open()


def test_passwords_are_kept_out_of_messages() -> None:
    assert _redact("rtsp://admin:secret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert _redact("http://cam.local/video") == "http://cam.local/video"
    assert "secret" not in OpenCVSource("rtsp://admin:secret@10.0.0.5/live").description
