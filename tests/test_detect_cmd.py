"""`masknet detect` as a user runs it, and a walk-up replay through `masknet run` with the door's
default detector (back-camera model + far pass): one person, one track, one event."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import (
    MODELS,
    assert_clean_failure,
    astronaut,
    classifier_models,
    masknet,
    write_config,
    write_images,
)

# the astronaut's face box in skimage's 512x512 image (test_detector.py checks the detector on it)
ASTRONAUT_FACE = np.array([175.0, 65.0, 275.0, 180.0])


def need(*names: str) -> None:
    for n in names:
        if not (MODELS / n).is_file():
            pytest.skip(f"models/{n} is absent; ./install.sh fetches it")


def scaled_and_padded(scale: float, left: int, top: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut scaled by ``scale`` and pasted at (left, top) on a grey canvas; and its face box."""
    img = cv2.resize(astronaut(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((size[1], size[0], 3), 100, np.uint8)
    canvas[top : top + img.shape[0], left : left + img.shape[1]] = img
    return canvas, ASTRONAUT_FACE * scale + [left, top, left, top]


def test_detect_writes_one_json_line_per_image_in_the_images_own_pixels(tmp_path: Path) -> None:
    need("face_detection_back.tflite")
    shots = [scaled_and_padded(0.6, 500, 200, (1280, 720)), scaled_and_padded(1.4, 40, 30, (900, 800))]
    folder = tmp_path / "shots"
    write_images(folder, [s[0] for s in shots])
    write_images(folder, [np.full((240, 320, 3), 90, np.uint8)], prefix="z_empty")
    proc = masknet("detect", "shots", "--json", "faces.jsonl", "--draw", "drawn", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()]
    assert [r["file"] for r in lines] == ["f00000.png", "f00001.png", "z_empty00000.png"]
    assert [(r["width"], r["height"]) for r in lines] == [(1280, 720), (900, 800), (320, 240)]
    assert [r["frame"] for r in lines] == [1, 2, 3]
    for record, (_, truth) in zip(lines, shots, strict=False):
        assert len(record["faces"]) == 1, record
        face = record["faces"][0]
        # centred on the hand-measured face box, of about its size (BlazeFace's boxes are a
        # little tighter or looser by model and scale)
        box, width = np.array(face["box"]), truth[2] - truth[0]
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, (truth[:2] + truth[2:]) / 2, atol=0.1 * width)
        assert 0.7 * width < box[2] - box[0] < 1.3 * width, (box, truth)
        assert 0.7 <= face["score"] <= 1.0 and len(face["keypoints"]) == 6
        (rx, ry), (lx, ly) = face["keypoints"][:2]
        assert truth[0] < rx < lx < truth[2] and truth[1] < min(ry, ly) < truth[3]
    assert lines[2]["faces"] == []
    drawn = sorted(p.name for p in (tmp_path / "drawn").iterdir())
    assert drawn == ["f00000.jpg", "f00001.jpg", "z_empty00000.jpg"]
    assert cv2.imread(str(tmp_path / "drawn" / "f00001.jpg")).shape == (800, 900, 3)


def test_detect_on_one_image_prints_to_stdout(tmp_path: Path) -> None:
    need("face_detection_short_range.tflite")
    image, truth = scaled_and_padded(1.0, 0, 0, (512, 512))
    write_images(tmp_path, [image])
    proc = masknet("detect", "f00000.png", "--detector", "blazeface_short", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["file"] == "f00000.png" and record["frame"] == 1
    # centred on the hand-measured box, of about its size (as above: the far pass's 179 px tiles
    # see this 100 px face cut by their edges, and NMS weighs those boxes in)
    box, width = np.array(record["faces"][0]["box"]), truth[2] - truth[0]
    np.testing.assert_allclose((box[:2] + box[2:]) / 2, (truth[:2] + truth[2:]) / 2, atol=0.1 * width)
    assert 0.7 * width < box[2] - box[0] < 1.3 * width, (box, truth)


def test_detect_refuses_what_it_cannot_read_in_one_line(tmp_path: Path) -> None:
    proc = masknet("detect", "nowhere", cwd=tmp_path)
    assert_clean_failure(proc, 3, "nowhere")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    proc = masknet("detect", "broken.png", cwd=tmp_path)
    assert_clean_failure(proc, 3, "broken.png", "not a readable image")
    proc = masknet("detect", "broken.png", "--detector", "blazeface_tiny", cwd=tmp_path)
    assert_clean_failure(proc, 2, "unknown detector 'blazeface_tiny'", "blazeface_back")
    proc = masknet("detect", cwd=tmp_path)
    assert_clean_failure(proc, 2, "give an image, a folder or a video")


def walk_up(folder: Path, frames: int = 45) -> list[float]:
    """A person walking up to the door: the astronaut's face grows from 40 to 300 px wide while its
    centre drifts towards the middle of a 1280x720 frame, then two empty frames."""
    from edge.commands.detect.bench import FaceSample, backgrounds, paste_face

    face = FaceSample("astronaut", "astronaut", astronaut(), ASTRONAUT_FACE)
    background = backgrounds(3, seed=3)[2]  # a generated door scene
    widths = list(np.geomspace(40, 300, frames))
    images = []
    for i, w in enumerate(widths):
        frame = background.copy()
        t = i / (frames - 1)
        paste_face(frame, face, round(w), (0.56 - 0.06 * t, 0.38 + 0.1 * t))
        images.append(frame)
    write_images(folder, images + [background, background])
    return widths


def test_a_walk_up_from_40_to_300_px_is_one_track_and_one_event(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    need("face_detection_back.tflite")
    models = classifier_models(pytestconfig.cache)
    walk_up(tmp_path / "walk")
    # random tiny classifiers score low: every verdict counts (min_score 0); the default detector
    write_config(tmp_path / "config.toml", "[tracker]\nmin_score = 0.0\ncommit_score = 0.0\n[indicators]\nhold_seconds = 0.0\n")
    proc = masknet("run", "--config", "config.toml", "--models", str(models), "--source", "walk", "--pins", "mock",
                   "--events", "events.jsonl", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(events) == 1, events
    assert events[0]["track_id"] == 1
    # committed while the face was still small: the far pass found it early
    assert events[0]["frame"] <= 15, events[0]
    assert "done: 47 frames" in proc.stderr and "1 events" in proc.stderr


def test_the_walk_up_keeps_one_track_on_every_frame_it_is_seen(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """The same replay in process, looking at the track of every detection."""
    need("face_detection_back.tflite")
    from edge.config import load_config
    from edge.pipeline import build_pipeline
    from edge.sources import FolderSource

    models = classifier_models(pytestconfig.cache)
    widths = walk_up(tmp_path / "walk")
    cfg = load_config(None, {"classifier.models_dir": str(models), "tracker.min_score": 0.0})
    pipeline = build_pipeline(cfg, None, None)
    seen: list[tuple[int, int, float]] = []  # frame, track, face width
    with FolderSource(tmp_path / "walk") as source:
        while (frame := source.read()) is not None:
            for r in pipeline.process(frame):
                seen.append((pipeline.frames, r.track_id, r.box[2] - r.box[0]))
    assert {track for _, track, _ in seen} == {1}
    frames = [f for f, _, _ in seen]
    assert len(frames) == len(set(frames))  # one face per frame: no duplicate from the far pass
    # found from the start (the far pass runs its tiles over 3 frames) to the end of the walk
    assert frames[0] <= 3 and frames[-1] == len(widths)
    assert len(frames) >= 0.8 * len(widths)
    assert seen[-1][2] == pytest.approx(widths[-1], rel=0.15)


def test_the_holdout_bench_takes_other_photos_and_other_backgrounds(tmp_path: Path) -> None:
    """--holdout checks settings chosen on the default run: no photo and no frame in both."""
    need("face_detection_short_range.tflite")
    from edge.commands.detect.bench import backgrounds, face_samples

    for group, prefix in (("mask", "cdeb"), ("no_mask_diverse", "utk")):
        folder = tmp_path / "real" / group
        folder.mkdir(parents=True)
        for i in range(12):  # the astronaut, a little smaller each time: 12 different files
            img = cv2.resize(astronaut(), None, fx=1 - 0.02 * i, fy=1 - 0.02 * i, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"{prefix}_{i:02d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    default, _ = face_samples(tmp_path, 2)
    held_out, _ = face_samples(tmp_path, 2, holdout=True)
    names = {f.name for f in default if f.group != "astronaut"}
    held = {f.name for f in held_out if f.group != "astronaut"}
    assert len(names) == len(held) == 4 and not names & held, (names, held)
    assert not any(np.array_equal(a, b) for a, b in zip(backgrounds(6), backgrounds(6, seed=1), strict=True))


def test_a_holdout_without_enough_photos_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "data" / "real" / "mask").mkdir(parents=True)
    unmasked = tmp_path / "data" / "real" / "no_mask_diverse"
    unmasked.mkdir(parents=True)
    for i in range(24):  # enough unmasked photos (only their names are counted): the masked group is short
        (unmasked / f"utk_{i:02d}.jpg").touch()
    proc = masknet("detect", "--bench", "--data", "data", "--photos", "4", "--holdout", cwd=tmp_path)
    assert_clean_failure(proc, 2, "--holdout needs at least 24 masked photos", "has 0", "smaller --photos")
