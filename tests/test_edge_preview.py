from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.classes import MASK, NO_MASK, Verdict
from edge.config import load_config
from edge.detector import Face
from edge.errors import ConfigError
from edge.pipeline import FaceResult
from edge.preview import Preview, annotate
from edge.sources import Frame


def result(box: tuple[float, float, float, float], committed: Verdict | None) -> FaceResult:
    face = Face(np.asarray(box, np.float32), 0.9)
    return FaceResult(face, box, Verdict(NO_MASK, 0.8), 3, committed, False)


def test_annotate_draws_a_box_in_the_verdict_colour_without_touching_the_frame() -> None:
    image = np.full((120, 160, 3), 255, np.uint8)
    frame = Frame(image, timestamp=0.0)
    out = annotate(frame, [result((40, 40, 100, 100), Verdict(MASK, 0.95))])
    assert image.min() == 255  # the camera buffer is not drawn on
    b, g, r = out[70, 40]  # left edge of the box, BGR
    assert g > 150 and r < 100 and b < 100  # green for mask


def test_headless_preview_replaces_one_jpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cfg = replace(load_config().preview, enabled=True, folder=str(tmp_path / "preview"), every_n=2)
    preview = Preview(cfg)
    assert preview.mode == "folder"
    frame = Frame(np.zeros((120, 160, 3), np.uint8), timestamp=0.0)
    for _ in range(5):
        assert preview.update(frame, [result((10, 10, 50, 50), None)])
    preview.close()
    assert [p.name for p in (tmp_path / "preview").iterdir()] == ["latest.jpg"]
    written = cv2.imread(str(tmp_path / "preview" / "latest.jpg"))
    assert written.shape == (120, 160, 3)


def test_window_mode_without_a_display_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="preview.mode 'window'"):
        Preview(replace(load_config().preview, mode="window"))
