"""The recall-by-face-size benchmark's parts: pasting a face of a known size, the face-free
backgrounds, and one small run of `masknet detect --bench` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import MODELS, astronaut, masknet

from edge.commands.detect.bench import FRAME, FaceSample, backgrounds, paste_face

FACE = np.array([175.0, 65.0, 275.0, 180.0])  # the astronaut's face box (test_detector.py)


def test_a_pasted_face_has_the_asked_width_at_the_asked_place():
    frame = np.zeros((720, 1280, 3), np.uint8)
    box = paste_face(frame, FaceSample("astronaut", "astronaut", astronaut(), FACE), 48, (0.25, 0.5))
    assert box[2] - box[0] == pytest.approx(48, abs=1e-6)
    assert box[3] - box[1] == pytest.approx(48 * 115 / 100, abs=1e-6)  # the box's own aspect
    assert (box[0] + box[2]) / 2 == pytest.approx(320, abs=1) and (box[1] + box[3]) / 2 == pytest.approx(360, abs=1)
    ys, xs = np.nonzero(frame.any(axis=2))
    # only the face and its surroundings (1.6 x the box) were painted
    assert xs.min() >= box[0] - 0.3 * 48 - 1 and xs.max() <= box[2] + 0.3 * 48 + 1


def test_backgrounds_are_frames_of_the_bench_size_and_the_same_every_time():
    a, b = backgrounds(4, seed=5), backgrounds(4, seed=5)
    assert [x.shape for x in a] == [(FRAME[1], FRAME[0], 3)] * 4
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])


def test_bench_reports_recall_false_faces_and_time_per_detector(tmp_path: Path) -> None:
    for n in ("face_detection_short_range.tflite", "face_detection_back.tflite"):
        if not (MODELS / n).is_file():
            pytest.skip(f"models/{n} is absent; ./install.sh fetches it")
    (tmp_path / "no_photos").mkdir()
    proc = masknet("detect", "--bench", "--face-sizes", "48,240", "--data", "no_photos", "--backgrounds", "3",
                   "--detector", "blazeface_short", "--json", "-", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["faces"] == {"astronaut": 1} and report["face_free_frames"] == 3
    short, config = report["rows"]
    assert short["variant"] == "blazeface_short, whole frame" and config["variant"].startswith("config: blazeface_back")
    assert short["trials"] == {"48": 6, "240": 6}
    # a 48 px face is 4.8 px of the short-range model's input: never found; the far pass finds it
    assert short["recall"]["48"] == 0.0 and config["recall"]["48"] == 1.0
    assert config["recall"]["240"] == 1.0
    assert short["invokes_per_frame"] == 1.0 and config["invokes_per_frame"] > 3.0
    assert 0.0 <= config["false_faces_per_frame"] <= 1.0


def test_bench_refuses_bad_sizes_in_one_line(tmp_path: Path) -> None:
    proc = masknet("detect", "--bench", "--face-sizes", "48,big", cwd=tmp_path)
    assert proc.returncode == 2 and "--face-sizes must be a comma-separated list" in proc.stderr
    assert "Traceback" not in proc.stderr
