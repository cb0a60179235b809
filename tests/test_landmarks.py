"""Face mesh on a real face: the named points land where their names say."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge import face_mesh as L
from edge.detector import BlazeFaceDetector, Face
from edge.errors import ModelError
from edge.paths import DETECTOR_MODEL, LANDMARK_MODEL, models_dir

MODELS = (models_dir() / DETECTOR_MODEL, models_dir() / LANDMARK_MODEL)


@pytest.fixture(scope="module")
def models() -> tuple[BlazeFaceDetector, L.FaceLandmarker]:
    missing = [str(p) for p in MODELS if not p.is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} absent: run ./install.sh")
    return BlazeFaceDetector(), L.FaceLandmarker()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


def _mesh(models, image):
    detector, landmarker = models
    faces = detector.detect(image)
    assert len(faces) == 1
    return faces[0], landmarker.landmarks(image, faces[0])


def test_mesh_on_the_astronaut(models, astronaut):
    face, lm = _mesh(models, astronaut)
    assert lm is not None and lm.presence > 0.9
    assert lm.points.shape == (468, 3) and lm.points.dtype == np.float32
    p = lm.points
    eyes_y = max(lm.right_eye[1], lm.left_eye[1])
    nose_x, nose_y = lm.center(L.NOSE_TIP)
    assert eyes_y < nose_y < p[L.UPPER_LIP[0], 1]
    assert lm.right_eye[0] < p[L.NOSE_TIP[0], 0] < lm.left_eye[0]
    # nose bridge runs down from between the eyes to above the tip
    bridge_y = p[list(L.NOSE_BRIDGE), 1]
    assert np.all(np.diff(bridge_y) > 0) and bridge_y[-1] < nose_y
    # lips: outer top above inner top above inner bottom above outer bottom, then the chin
    assert p[0, 1] < p[13, 1] <= p[14, 1] < p[17, 1] < p[L.CHIN, 1]
    assert p[L.MOUTH_CORNERS[0], 0] < p[L.UPPER_LIP[0], 0] < p[L.MOUTH_CORNERS[1], 0]
    assert p[L.NOSE_WINGS[0], 0] < nose_x < p[L.NOSE_WINGS[1], 0]
    # the whole mesh lies on the face: inside the detector box widened by 15 %
    x0, y0, x1, y1 = face.box
    pad = 0.15 * (x1 - x0)
    assert np.all((p[:, 0] > x0 - pad) & (p[:, 0] < x1 + pad))
    assert np.all((p[:, 1] > y0 - pad) & (p[:, 1] < y1 + pad))
    # and agrees with the detector's own eye keypoints
    assert np.linalg.norm(lm.right_eye - face.keypoints[0]) < 8
    assert np.linalg.norm(lm.left_eye - face.keypoints[1]) < 8


def test_mesh_follows_a_rolled_head(models, astronaut):
    _, upright = _mesh(models, astronaut)
    centre, angle = (225.0, 128.0), 30.0
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    rolled = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    _, lm = _mesh(models, rolled)
    assert lm is not None
    # the eye line tilts by the roll (counter-clockwise on screen = up to the right)
    dx, dy = lm.left_eye - lm.right_eye
    assert math.degrees(math.atan2(-dy, dx)) == pytest.approx(angle, abs=4)
    # and each named point moves with the image
    expected = np.hstack([upright.xy, np.ones((468, 1))]) @ m.T
    named = [*L.NOSE_BRIDGE, *L.NOSE_TIP, *L.UPPER_LIP, *L.LOWER_LIP, *L.MOUTH_CORNERS, L.CHIN]
    err = np.linalg.norm(lm.xy[named] - expected[named], axis=1)
    assert err.max() < 6, err


def test_no_mesh_where_there_is_no_face(models, astronaut):
    _, landmarker = models
    keypoints = np.array([[375, 330], [425, 330], [400, 350], [400, 375], [355, 335], [445, 335]], np.float32)
    not_a_face = Face(np.array([350, 300, 450, 400], np.float32), 0.9, keypoints)  # the helmet
    assert landmarker.landmarks(astronaut, not_a_face) is None
    assert L.FaceLandmarker(presence_threshold=0.0).landmarks(astronaut, not_a_face).presence < 0.5


def test_roi_is_mediapipes():
    level = Face(np.array([100, 100, 200, 180], np.float32), 0.9,
                 np.array([[130, 130], [170, 130], [150, 150], [150, 165], [105, 135], [195, 135]], np.float32))
    roi = L.face_roi(level)
    assert roi.center == (150.0, 140.0)
    assert roi.side == pytest.approx(150.0)  # long side 100 * 1.5
    assert roi.rotation == pytest.approx(0.0)
    tilted = Face(level.box, 0.9, level.keypoints.copy())
    tilted.keypoints[1] = (170, 170)  # left eye 40 px lower: 45 degrees clockwise
    assert L.face_roi(tilted).rotation == pytest.approx(math.pi / 4)


def test_index_constants_are_mesh_points():
    groups = [L.NOSE_BRIDGE, L.NOSE_TIP, L.NOSE_WINGS, L.UPPER_LIP, L.LOWER_LIP, L.MOUTH_CORNERS,
              (L.CHIN, L.FOREHEAD), L.FACE_OVAL, L.JAW, L.LEFT_EYE, L.RIGHT_EYE]
    for g in groups:
        assert all(0 <= i < L.NUM_LANDMARKS for i in g)
    assert set(L.JAW) <= set(L.FACE_OVAL) and L.CHIN in L.JAW
    assert len(set(L.FACE_OVAL)) == len(L.FACE_OVAL)


def test_truncated_model_is_refused_naming_the_file(tmp_path):
    source = models_dir() / LANDMARK_MODEL
    if not source.is_file():
        pytest.skip(f"{source} absent: run ./install.sh")
    broken = tmp_path / LANDMARK_MODEL
    broken.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=str(broken)):
        L.FaceLandmarker(model_path=broken)
