"""BlazeFace short-range: anchors, decoding and NMS against hand-computed values, then the real
model on a real face (skimage's astronaut, face at about x 175..275, y 65..180)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.boxes import iou
from edge.crop import pad_image
from edge.detector import (
    DETECTORS,
    LEFT_EAR_TRAGION,
    LEFT_EYE,
    MOUTH_CENTER,
    NOSE_TIP,
    RIGHT_EAR_TRAGION,
    RIGHT_EYE,
    BlazeFaceDetector,
    Face,
    FaceDetector,
    create_detector,
    decode,
    generate_anchors,
    letterbox,
    weighted_nms,
)
from edge.errors import ConfigError, ModelError
from edge.paths import DETECTOR_MODEL, models_dir

MODEL = models_dir() / DETECTOR_MODEL
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} absent: run ./install.sh")


# -- anchors --------------------------------------------------------------------------------


def test_short_range_anchors_match_mediapipe_layout():
    anchors = generate_anchors()
    assert anchors.shape == (896, 2)
    # stride 8: 16x16 cells, 2 anchors each, row by row
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])
    np.testing.assert_allclose(anchors[511], [15.5 / 16, 15.5 / 16])
    # three stride-16 layers share one 8x8 map: 6 anchors per cell
    np.testing.assert_allclose(anchors[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(anchors[518], [1.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


# -- decode ---------------------------------------------------------------------------------


def test_decode_one_anchor_by_hand():
    anchors = generate_anchors()
    k = 512 + 6 * (8 * 1 + 2) + 3  # stride-16 map, cell (x=2, y=1): centre (2.5/8, 1.5/8)
    assert tuple(anchors[k]) == (0.3125, 0.1875)
    raw_boxes = np.zeros((1, 896, 16), np.float32)
    raw_scores = np.full((1, 896, 1), -10.0, np.float32)
    # offsets and sizes are in model input pixels (128 across)
    raw_boxes[0, k, :4] = [6.4, -12.8, 32.0, 25.6]
    raw_boxes[0, k, 4:6] = [-12.8, 0.0]  # first keypoint
    raw_boxes[0, k, 14:16] = [0.0, 25.6]  # last keypoint
    raw_scores[0, k, 0] = 2.0

    boxes, scores, kps = decode(raw_boxes, raw_scores, anchors, scale=128.0, score_threshold=0.5)

    # centre = anchor + offset/128 = (0.3125 + 0.05, 0.1875 - 0.1); size = (32/128, 25.6/128) = (0.25, 0.2)
    cx, cy, w, h = 0.3625, 0.0875, 0.25, 0.2
    np.testing.assert_allclose(boxes, [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], atol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + math.exp(-2.0))], rtol=1e-6)
    assert kps.shape == (1, 6, 2)
    np.testing.assert_allclose(kps[0, 0], [0.3125 - 0.1, 0.1875], atol=1e-6)
    np.testing.assert_allclose(kps[0, 1], [0.3125, 0.1875], atol=1e-6)  # zero offset: the anchor
    np.testing.assert_allclose(kps[0, 5], [0.3125, 0.1875 + 0.2], atol=1e-6)


def test_decode_clips_huge_logits_and_drops_empty_boxes():
    anchors = generate_anchors()
    raw_boxes = np.zeros((896, 16), np.float32)
    raw_boxes[:, 2:4] = 10.0
    raw_boxes[7, 2] = -3.0  # negative width: not a box
    raw_scores = np.full(896, -1e4, np.float32)
    raw_scores[[5, 7]] = 1e4
    with np.errstate(over="raise"):
        boxes, scores, _ = decode(raw_boxes, raw_scores, anchors)
    assert len(boxes) == 1
    assert scores[0] == pytest.approx(1.0)
    np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, anchors[5])


# -- weighted NMS ---------------------------------------------------------------------------


def test_weighted_nms_merges_overlapping_boxes_by_score():
    boxes = np.array([[1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    kps = np.array([[[6, 6]], [[5, 5]], [[55, 55]]], np.float32)
    # IoU of the first two = 81 / 119 = 0.68 > 0.3: merged, weighted 0.9 : 0.6
    out_boxes, out_scores, out_kps = weighted_nms(boxes, scores, kps, iou_threshold=0.3)
    np.testing.assert_allclose(out_scores, [0.9, 0.7])
    np.testing.assert_allclose(out_boxes[0], [0.4, 0.4, 10.4, 10.4], atol=1e-5)
    np.testing.assert_allclose(out_kps[0, 0], [5.4, 5.4], atol=1e-5)
    np.testing.assert_allclose(out_boxes[1], [50, 50, 60, 60])


def test_weighted_nms_keeps_boxes_below_the_overlap_threshold_apart():
    boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10]], np.float32)  # IoU = 40 / 160 = 0.25
    out_boxes, out_scores, _ = weighted_nms(boxes, np.array([0.8, 0.9], np.float32), iou_threshold=0.3)
    np.testing.assert_allclose(out_scores, [0.9, 0.8])
    np.testing.assert_allclose(out_boxes, boxes[::-1])
    merged, _, _ = weighted_nms(boxes, np.array([0.8, 0.9], np.float32), iou_threshold=0.2)
    assert len(merged) == 1


def _greedy_weighted_nms(boxes, scores, kps, thr):
    """The textbook loop: best remaining box, merge what overlaps it, repeat."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, kps = boxes[order], scores[order], kps[order]
    out_b, out_s, out_k = [], [], []
    while len(scores):
        ov = iou(boxes[0], boxes) > thr
        ov[0] = True
        w = scores[ov]
        out_b.append((boxes[ov] * w[:, None]).sum(0) / w.sum())
        out_k.append((kps[ov] * w[:, None, None]).sum(0) / w.sum())
        out_s.append(scores[0])
        boxes, scores, kps = boxes[~ov], scores[~ov], kps[~ov]
    return np.array(out_b), np.array(out_s), np.array(out_k)


def test_weighted_nms_matches_the_textbook_loop_on_random_clusters():
    rng = np.random.default_rng(0)
    for _ in range(50):
        centres = rng.uniform(0, 1, (rng.integers(1, 5), 2))
        pick = rng.integers(0, len(centres), rng.integers(1, 25))
        c = centres[pick] + rng.normal(0, 0.02, (len(pick), 2))
        half = rng.uniform(0.03, 0.1, (len(pick), 1))
        boxes = np.hstack([c - half, c + half]).astype(np.float32)
        scores = rng.uniform(0.5, 1.0, len(pick)).astype(np.float32)
        kps = rng.uniform(0, 1, (len(pick), 6, 2)).astype(np.float32)
        got = weighted_nms(boxes, scores, kps, 0.3)
        want = _greedy_weighted_nms(boxes, scores, kps, 0.3)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_weighted_nms_of_nothing():
    boxes, scores, kps = weighted_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2)))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and kps.shape == (0, 6, 2)


# -- the real model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    if not MODEL.is_file():
        pytest.skip(f"{MODEL} absent: run ./install.sh")
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


def _check_astronaut_face(face: Face) -> None:
    x0, y0, x1, y1 = face.box
    assert 165 < x0 < 195 and 255 < x1 < 290, face.box
    assert 65 < y0 < 100 and 160 < y1 < 195, face.box
    kp = face.keypoints
    # the person's right eye is on the image's left; eyes above nose above mouth
    assert kp[RIGHT_EYE, 0] < kp[NOSE_TIP, 0] < kp[LEFT_EYE, 0]
    assert max(kp[RIGHT_EYE, 1], kp[LEFT_EYE, 1]) < kp[NOSE_TIP, 1] < kp[MOUTH_CENTER, 1]
    assert kp[RIGHT_EAR_TRAGION, 0] < kp[RIGHT_EYE, 0] and kp[LEFT_EAR_TRAGION, 0] > kp[LEFT_EYE, 0]
    inside = (kp[:4] >= face.box[:2]) & (kp[:4] <= face.box[2:])
    assert inside.all()


def test_finds_the_astronauts_face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    assert faces[0].score > 0.85
    _check_astronaut_face(faces[0])


def test_letterbox_is_undone_for_wide_and_tall_frames(detector, astronaut):
    direct = detector.detect(astronaut)[0]
    for frame, (dx, dy) in ((astronaut[:256], (0, 0)), (astronaut[:, 100:356], (100, 0))):
        faces = detector.detect(np.ascontiguousarray(frame))
        assert len(faces) == 1
        face = faces[0].translated(dx, dy)
        _check_astronaut_face(face)
        np.testing.assert_allclose(face.box, direct.box, atol=4)


def test_tight_face_crop_is_found_once_padded(detector, astronaut):
    tight = np.ascontiguousarray(astronaut[95:170, 190:262])  # the face fills the frame
    padded, (dx, dy) = pad_image(tight, 0.5)
    faces = detector.detect(padded)
    assert len(faces) == 1
    face = faces[0].translated(-dx, -dy)
    # back in the tight crop's pixels: centred on it, about its size
    cx, cy = face.center
    assert 20 < cx < 52 and 20 < cy < 55
    assert 55 < face.width < 130


def test_min_face_size_ignores_small_faces(detector, astronaut):
    assert len(BlazeFaceDetector(min_face_size=60).detect(astronaut)) == 1
    assert BlazeFaceDetector(min_face_size=150).detect(astronaut) == []


def test_no_face_in_plain_or_noisy_frames(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((240, 320, 3), 127, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


def test_two_faces_sorted_by_score(detector, astronaut):
    # the same face twice, side by side, the right copy darkened so it scores differently
    head = astronaut[:300, :300]
    frame = np.hstack([(head * 0.6).astype(np.uint8), head])
    faces = detector.detect(frame)
    assert len(faces) == 2
    assert faces[0].score > faces[1].score
    assert faces[0].center[0] > 300 > faces[1].center[0]


# -- bad input ------------------------------------------------------------------------------


@needs_model
def test_truncated_model_is_refused_naming_the_file(tmp_path):
    broken = tmp_path / DETECTOR_MODEL
    broken.write_bytes(MODEL.read_bytes()[:50_000])
    with pytest.raises(ModelError, match=str(broken)) as info:
        BlazeFaceDetector(model_path=broken)
    assert "install.sh" in str(info.value)


def test_missing_model_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ModelError, match="nowhere.tflite"):
        BlazeFaceDetector(model_path=tmp_path / "nowhere.tflite")


@needs_model
def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="score_threshold"):
        BlazeFaceDetector(score_threshold=1.5)
    with pytest.raises(ConfigError, match="nms_iou"):
        BlazeFaceDetector(nms_iou=0)
    with pytest.raises(ConfigError, match="min_face_size"):
        BlazeFaceDetector(min_face_size=-1)


# -- registry -------------------------------------------------------------------------------


@needs_model
def test_registry_builds_detectors_by_name():
    det = create_detector("blazeface_short", score_threshold=0.6, min_face_size=20)
    assert isinstance(det, FaceDetector)
    assert isinstance(det, BlazeFaceDetector) and det.score_threshold == 0.6


def test_registry_refuses_unknown_names_and_options():
    with pytest.raises(ConfigError, match="blazeface_short") as info:
        create_detector("yunet")
    assert "yunet" in str(info.value)
    with pytest.raises(ConfigError, match="treshold"):
        create_detector("blazeface_short", treshold=0.5)
    assert "blazeface_short" in DETECTORS


def test_face_translated_moves_box_and_keypoints():
    face = Face(np.array([10, 20, 30, 40], np.float32), 0.9, np.arange(12, dtype=np.float32).reshape(6, 2))
    moved = face.translated(-10, 5)
    np.testing.assert_allclose(moved.box, [0, 25, 20, 45])
    np.testing.assert_allclose(moved.keypoints[1], [-8, 8])
    assert moved.score == face.score and face.box[0] == 10


def test_letterbox_centres_the_frame_in_a_black_square():
    frame = np.full((300, 400, 3), 200, np.uint8)
    square, (sx, sy), (left, top) = letterbox(frame, 128)
    assert square.shape == (128, 128, 3)
    assert (left, top) == (0, 16) and sx == pytest.approx(128 / 400) and sy == pytest.approx(96 / 300)
    assert square[16:112].min() == 200
    assert square[:16].max() == 0 and square[112:].max() == 0


@needs_model
def test_detect_is_preprocess_invoke_postprocess(astronaut: np.ndarray) -> None:
    """The three public steps (timed separately by the pipeline) give exactly what detect() gives."""
    det = BlazeFaceDetector()
    image = astronaut
    prepared = det.preprocess(image)
    assert prepared.tensor.shape == (128, 128, 3) and prepared.tensor.dtype == np.float32
    assert prepared.tensor.min() >= -1.0 and prepared.tensor.max() <= 1.0
    stepped = det.postprocess(det.invoke(prepared), prepared)
    direct = det.detect(image)
    assert len(stepped) == len(direct) == 1
    assert np.allclose(stepped[0].box, direct[0].box) and np.allclose(stepped[0].keypoints, direct[0].keypoints)
