"""The per-frame pipeline: real BlazeFace on the astronaut, a folder source, tracker, mock pins.

The first tests put a stand-in classifier behind the pipeline (it calls a face "mask" when the
painted mask colour covers the lower face) so that the plumbing detector -> crop -> verdict ->
tracker -> LEDs/buzzer/events is checked with known answers before any trained model exists.
The committed-model tests further down check the same flow with the real cascade.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import astronaut, blank, need_detector, tiny_models, write_images

from edge.cascade import Cascade
from edge.classes import ADVICE, MASK, MASK_INCORRECT, MASK_OVER_CHIN, NO_MASK, SUBTYPES, Verdict
from edge.config import load_config
from edge.crop import CROP_MARGIN, crop_face, to_model_input
from edge.detector import create_detector
from edge.events import EventLog
from edge.indicators import Indicators
from edge.manifest import load_manifest
from edge.pipeline import Pipeline
from edge.sources import FolderSource, Frame
from edge.timing import (
    CROP,
    DECODE_NMS,
    DETECTOR_INVOKE,
    DETECTOR_PREPROCESS,
    IMASKNET_INVOKE,
    MASKNET_INVOKE,
    NULL_TIMER,
    StageTimer,
)
from edge.tracker import Tracker

GREEN, AMBER, RED, BUZZER = 17, 27, 22, 23
PAINT = (150, 200, 235)  # light blue surgical mask


def paint_mask(image: np.ndarray, state: str) -> np.ndarray:
    """The astronaut with a flat mask painted over nose+mouth+chin (mask) or the chin only."""
    out = image.copy()
    x0, x1 = 183, 268  # the face found by BlazeFace spans about x 178..272, y 81..175
    top = 118 if state == MASK else 160
    cv2.rectangle(out, (x0, top), (x1, 190), PAINT, -1)
    return out


class PaintedMaskClassifier:
    """Stands in for the cascade: answers from how much of the crop's lower half is mask paint."""

    pipeline = "painted-mask stand-in"

    def __init__(self) -> None:
        self.timer = NULL_TIMER
        self.calls = 0

    def classify(self, image: np.ndarray, box: np.ndarray, keypoints: np.ndarray) -> tuple[Verdict, np.ndarray]:
        self.calls += 1
        crop = crop_face(image, box, 224, CROP_MARGIN)
        h = crop.shape[0]
        paint = np.all(np.abs(crop.astype(int) - PAINT) < 12, axis=2)
        middle, bottom = paint[h // 2 : 3 * h // 4].mean(), paint[3 * h // 4 :].mean()
        if middle > 0.3:
            return Verdict(MASK, 0.95), crop
        if bottom > 0.3:
            return Verdict(MASK_INCORRECT, 0.9, MASK_OVER_CHIN, 0.8), crop
        return Verdict(NO_MASK, 0.9), crop


def tracker_config(**changes: object):
    return replace(
        load_config().tracker,
        **{"stable_frames": 3, "change_frames": 4, "expire_frames": 3, "stable_seconds": 100.0,
           "expire_seconds": 100.0, **changes},
    )


def indicators_config(**changes: object):
    return replace(load_config().indicators, pins="mock", **changes)


def lit(ind: Indicators) -> dict[str, bool]:
    """LED/buzzer states read from the mock pins (active-high wiring: high = on)."""
    f = ind.pin_factory
    return {name: bool(f.pin(n).state) for name, n in
            (("green", GREEN), ("amber", AMBER), ("red", RED), ("buzzer", BUZZER))}


@pytest.fixture(scope="module")
def detector():
    need_detector()
    return create_detector("blazeface_short", score_threshold=0.6)


def test_painted_masks_are_told_apart_by_the_stand_in(detector) -> None:
    clf = PaintedMaskClassifier()
    for image, want in ((astronaut(), NO_MASK), (paint_mask(astronaut(), MASK), MASK),
                        (paint_mask(astronaut(), MASK_OVER_CHIN), MASK_INCORRECT)):
        (face,) = detector.detect(image)
        assert clf.classify(image, face.box, face.keypoints)[0].class_id == want


def test_folder_of_visits_gives_verdicts_lights_buzzer_and_one_event_each(detector, tmp_path: Path) -> None:
    face, nobody = astronaut(), blank(512)
    visits = [(NO_MASK, face), (MASK, paint_mask(face, MASK)), (MASK_OVER_CHIN, paint_mask(face, MASK_OVER_CHIN))]
    frames: list[np.ndarray] = []
    for _, image in visits:
        frames += [image] * 5 + [nobody] * 4
    write_images(tmp_path / "frames", frames)

    events_path = tmp_path / "events.jsonl"
    events = EventLog(str(events_path))
    ind = Indicators(indicators_config(amber_blink={s: () for s in SUBTYPES},
                                       buzzer={MASK: (), MASK_INCORRECT: (0.05,), NO_MASK: (0.3,)}),
                     echo=None)
    pipe = Pipeline(detector, PaintedMaskClassifier(), Tracker(tracker_config()), ind, events, hold_seconds=0.0)
    seen: list[dict[str, bool]] = []
    with FolderSource(tmp_path / "frames") as src:
        while (frame := src.read()) is not None:
            results = pipe.process(frame)
            if frame.name == "f00002.png":  # visit 1 commits here: let the buzzer thread start
                time.sleep(0.1)
            if frame.name == "f00003.png":  # and let the 0.3 s pattern end
                time.sleep(0.35)
            seen.append(lit(ind))
            assert len(results) == (0 if frame.image.mean() == nobody.mean() else 1)
    time.sleep(0.2)  # the last buzzer pattern (0.05 s) has ended
    final = lit(ind)
    events.close()
    ind.close()

    records = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [(r["class_id"], r["sub_type"]) for r in records] == [
        (NO_MASK, None), (MASK, None), (MASK_INCORRECT, MASK_OVER_CHIN)]
    assert [r["track_id"] for r in records] == [1, 2, 3]
    assert [r["frame"] for r in records] == [3, 12, 21]  # third frame of each visit
    assert records[2]["advice"] == ADVICE[MASK_OVER_CHIN]
    assert all(r["latency_ms"] >= 0 and len(r["box"]) == 4 for r in records)

    off = {"green": False, "amber": False, "red": False, "buzzer": False}
    assert seen[0] == off  # deciding: nothing lit yet
    assert seen[2] == {**off, "red": True, "buzzer": True}  # committed no_mask: red and the buzzer
    assert seen[4] == {**off, "red": True}
    assert seen[8] == off  # the person has left: idle
    assert seen[11] == {**off, "green": True}
    assert seen[20] == {**off, "amber": True}
    assert final == off


def test_a_face_under_min_face_px_gets_no_verdict_and_the_same_face_large_gets_one(detector, tmp_path: Path, caplog) -> None:
    # The same face replayed from a folder, first walking up from far (frames of 360 .. 240 px:
    # the face is 66 .. 44 px wide, under min_face_px = 70), then close (512 px: 94 px wide).
    face, nobody = astronaut(), blank(512)
    far = [cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA) for n in (360, 330, 300, 270, 240)]
    write_images(tmp_path / "frames", far + [nobody] * 4 + [face] * 5)
    ind = Indicators(indicators_config(buzzer={c: () for c in (MASK, MASK_INCORRECT, NO_MASK)}), echo=None)
    pipe = Pipeline(detector, PaintedMaskClassifier(), Tracker(tracker_config(min_face_px=70.0)), ind, None, hold_seconds=0.0)
    results, lights = [], []
    with caplog.at_level("INFO", logger="edge.pipeline"), FolderSource(tmp_path / "frames") as src:
        while (frame := src.read()) is not None:
            results.append(pipe.process(frame))
            lights.append(lit(ind))
    ind.close()
    off = {"green": False, "amber": False, "red": False, "buzzer": False}
    walk_up = results[:5]
    assert all(len(r) == 1 and r[0].too_far and r[0].committed is None for r in walk_up)
    assert all(state == off for state in lights[:9])  # lights unchanged while the face is too far
    assert pipe.event_count == 1
    close = results[9:]
    assert all(len(r) == 1 and not r[0].too_far for r in close)
    assert close[2][0].committed is not None and close[2][0].committed.class_id == NO_MASK
    assert lights[11]["red"]
    too_far_lines = [r.getMessage() for r in caplog.records if "too far" in r.getMessage()]
    assert len(too_far_lines) == 1 and "min_face_px 70" in too_far_lines[0]  # once per track


def test_worst_verdict_wins_when_two_people_are_at_the_door(detector) -> None:
    head = slice(0, 300), slice(0, 300)
    both = np.hstack([paint_mask(astronaut(), MASK)[head], astronaut()[head]])
    ind = Indicators(indicators_config(buzzer_enabled=False), echo=None)
    pipe = Pipeline(detector, PaintedMaskClassifier(), Tracker(tracker_config()), ind, hold_seconds=0.0)
    for _ in range(3):
        results = pipe.process(both)
    ind_state = lit(ind)
    ind.close()
    assert sorted(r.committed.class_id for r in results) == [MASK, NO_MASK]
    assert ind_state["red"] and not ind_state["green"]
    assert pipe.event_count == 2


def test_lights_hold_for_hold_seconds_after_the_person_left(detector) -> None:
    ind = Indicators(indicators_config(buzzer_enabled=False), echo=None)
    pipe = Pipeline(detector, PaintedMaskClassifier(), Tracker(tracker_config(expire_frames=1)), ind,
                    hold_seconds=1.0)
    face, nobody = astronaut(), blank(512)
    for i in range(3):
        pipe.process(Frame(face, timestamp=float(i)))
    pipe.process(Frame(nobody, timestamp=2.4))  # track expired, but within the hold time
    pipe.process(Frame(nobody, timestamp=2.8))
    held = lit(ind)["red"]
    pipe.process(Frame(nobody, timestamp=3.1))
    after = lit(ind)["red"]
    ind.close()
    assert held and not after


def test_faces_are_cropped_from_the_full_resolution_stream(detector) -> None:
    """Pi camera: detection on lores, crops from main at the scaled box."""
    full = cv2.resize(astronaut(), (1024, 1024))
    lores = astronaut()
    clf = PaintedMaskClassifier()
    seen_boxes = []
    original = clf.classify

    def spy(image, box, kps):
        seen_boxes.append((image.shape, np.asarray(box).copy(), np.asarray(kps).copy()))
        return original(image, box, kps)

    clf.classify = spy  # type: ignore[method-assign]
    pipe = Pipeline(detector, clf, Tracker(tracker_config()))
    (r,) = pipe.process(Frame(lores, timestamp=0.0, full=full))
    shape, box, kps = seen_boxes[0]
    assert shape == (1024, 1024, 3)
    np.testing.assert_allclose(box, r.face.box * 2, rtol=1e-5)
    np.testing.assert_allclose(kps, r.face.keypoints * 2, rtol=1e-5)
    assert r.box == pytest.approx(tuple(float(v) for v in r.face.box * 2))


# -- the real cascade on tiny random models (mechanics; their verdicts mean nothing) ---------


@pytest.mark.convert
@pytest.mark.parametrize("pipeline_kind", ["cascade", "fiveclass"])
def test_cascade_runs_the_manifest_models_and_times_each_stage(
    detector, pytestconfig: pytest.Config, pipeline_kind: str
) -> None:
    models = tiny_models(pytestconfig.cache, pipeline_kind)
    timer = StageTimer()
    cascade = Cascade(load_manifest(models), num_threads=1, timer=timer)
    pipe = Pipeline(detector, cascade, Tracker(tracker_config(min_score=0.0, commit_score=0.0)), timer=timer)
    for _ in range(3):
        (r,) = pipe.process(astronaut())
    v = r.verdict
    assert v.class_id in (MASK, MASK_INCORRECT, NO_MASK)
    assert (v.sub_type is not None) == (v.class_id == MASK_INCORRECT)
    assert 0.0 <= v.score <= 1.0 and v.advice == ADVICE[v.label]
    assert r.committed is not None  # the same frame three times is a stable verdict
    counts = {k: s.count for k, s in timer.summary().items()}
    assert counts[DETECTOR_INVOKE] == counts[CROP] == counts[MASKNET_INVOKE] == 3
    assert counts.get(IMASKNET_INVOKE, 0) == (3 if pipeline_kind == "cascade" and v.class_id == MASK_INCORRECT else 0)


@pytest.mark.convert
def test_imasknet_runs_only_on_mask_incorrect(pytestconfig: pytest.Config) -> None:
    timer = StageTimer()
    cascade = Cascade(load_manifest(tiny_models(pytestconfig.cache)), num_threads=1, timer=timer)
    rng = np.random.default_rng(0)
    labels = []
    for _ in range(40):
        crop = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        v = cascade.classify_crop(crop)
        labels.append(v.class_id)
        assert (v.sub_type in SUBTYPES) == (v.class_id == MASK_INCORRECT)
    assert timer.count(IMASKNET_INVOKE) == labels.count(MASK_INCORRECT)
    assert timer.count(MASKNET_INVOKE) == 40


@pytest.mark.convert
def test_imasknet_reads_masknet_features_as_they_are(pytestconfig: pytest.Config) -> None:
    cascade = Cascade(load_manifest(tiny_models(pytestconfig.cache)), num_threads=1)
    first, second = cascade.first, cascade.imasknet
    assert second.takes_features and second.model.input_shape == (1, *first.spec.features.shape)
    crop = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    first(to_model_input(crop, first.spec.input_size))
    # the uint8 features go across untouched; the float route (used when the two quantizations
    # differ) requantizes to the same bytes, so both give the same probabilities
    _, _, p_raw = second(first.features(raw=True))
    _, _, p_float = second(first.features(raw=False))
    np.testing.assert_allclose(p_raw, p_float, atol=1e-6)


@pytest.mark.convert
def test_standalone_imasknet_takes_the_face_crop(pytestconfig: pytest.Config) -> None:
    m = load_manifest(tiny_models(pytestconfig.cache, shared_features=False))
    # bench's worst case: I-Mask-net on every face, whatever Mask-net says
    cascade = Cascade(m, num_threads=1, imasknet_on_every_face=True)
    assert not cascade.imasknet.takes_features and m.models["masknet"].features is None
    assert cascade.imasknet.model.input_shape == (1, 32, 32, 3)
    v = cascade.classify_crop(np.full((224, 224, 3), 128, np.uint8))
    assert v.class_id == MASK_INCORRECT and v.sub_type in SUBTYPES


class SteppedDetector:
    """A detector offering preprocess / invoke / postprocess, as the timing contract allows."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return image

    def invoke(self, prepared: np.ndarray) -> list:
        return self.inner.detect(prepared)

    def postprocess(self, raw: list, prepared: np.ndarray) -> list:
        return raw

    def detect(self, image: np.ndarray) -> list:
        return self.inner.detect(image)


class DetectOnly:
    """A detector back end that offers only ``detect()`` (no separate steps to time)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def detect(self, image: np.ndarray) -> list:
        return self.inner.detect(image)


def test_blazeface_steps_are_timed_one_by_one_and_a_plain_detector_as_one(detector) -> None:
    timer = StageTimer()
    pipe = Pipeline(detector, PaintedMaskClassifier(), Tracker(tracker_config()), timer=timer)
    (r,) = pipe.process(astronaut())
    assert timer.count(DETECTOR_PREPROCESS) == timer.count(DETECTOR_INVOKE) == timer.count(DECODE_NMS) == 1
    assert r.verdict.class_id == NO_MASK
    pipe = Pipeline(DetectOnly(detector), PaintedMaskClassifier(), Tracker(tracker_config()), timer=timer)
    (r,) = pipe.process(astronaut())
    assert timer.count(DETECTOR_INVOKE) == 2
    assert timer.count(DETECTOR_PREPROCESS) == timer.count(DECODE_NMS) == 1
    assert r.verdict.class_id == NO_MASK
    pipe = Pipeline(SteppedDetector(detector), PaintedMaskClassifier(), Tracker(tracker_config()), timer=timer)
    pipe.process(astronaut())
    assert timer.count(DETECTOR_PREPROCESS) == timer.count(DECODE_NMS) == 2
