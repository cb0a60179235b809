"""Synthetic wearing states on a real face (skimage's astronaut): coverage is measured on the
face mesh points under the drawn mask's alpha, per state."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.paths import DETECTOR_MODEL, LANDMARK_MODEL, models_dir

pytest.importorskip("skimage")
from skimage.data import astronaut  # noqa: E402

from convert.dataset.synth import FaceFrame, draw_mask, load_templates, pick_variant  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STATES = ("mask", "mask_over_nose_mouth", "mask_over_mouth_chin", "mask_over_chin")
# What each wearing state must leave covered (True) or bare (False).
EXPECTED = {
    "mask": {"nose": True, "mouth": True, "chin": True},
    "mask_over_nose_mouth": {"nose": True, "mouth": True, "chin": False},
    "mask_over_mouth_chin": {"nose": False, "mouth": True, "chin": True},
    "mask_over_chin": {"nose": False, "mouth": False, "chin": True},
}
POINTS = {"nose": (1, 4), "mouth": (0, 13, 14, 17), "chin": (152,)}


def write_templates(folder: Path) -> Path:
    """A MaskTheFace-style template folder: a light-blue pleated mask, front / left / right."""
    tpl_dir = folder / "templates"
    tpl_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for name, nose_x in (("demo", 300), ("demo_left", 110), ("demo_right", 490)):
        # rounded bottom like a real mask: e lies on the lower half of an ellipse
        ex = nose_x
        ey = int(320 + 130 * np.sqrt(1 - ((ex - 300) / 280) ** 2))
        anchors = [(20, 100), (nose_x, 20), (580, 100), (20, 320), (ex, ey), (580, 320)]
        rgba = np.zeros((470, 600, 4), np.uint8)
        a, b, c, d, _, f = anchors
        cv2.fillPoly(rgba, [np.array([a, b, c, f, d], np.int32)], (230, 200, 150, 255))  # BGR light blue
        cv2.ellipse(rgba, (300, 320), (280, 130), 0, 0, 180, (230, 200, 150, 255), -1)
        for y in range(60, 440, 60):  # pleats: darker stripes, the shading recolouring keeps
            rgba[y : y + 8, :, :3] = (rgba[y : y + 8, :, :3] * 0.8).astype(np.uint8)
        cv2.imwrite(str(tpl_dir / f"{name}.png"), rgba)
        keys = "abcdef"
        lines = [f"[{name}]", f"template: masks/templates/{name}.png"]
        lines += [f"mask_{k}: {x}, {y}" for k, (x, y) in zip(keys, anchors, strict=True)]
        sections.append("\n".join(lines))
    (folder / "masks.cfg").write_text("\n\n".join(sections) + "\n\n[empty]\n", encoding="utf-8")
    return folder


def need_models() -> None:
    for name in (DETECTOR_MODEL, LANDMARK_MODEL):
        if not (models_dir() / name).is_file():
            pytest.skip(f"{name} not installed (./install.sh)")


@pytest.fixture(scope="module")
def face_and_mesh():
    need_models()
    from edge.detector import BlazeFaceDetector
    from edge.face_mesh import FaceLandmarker

    image = astronaut()
    faces = BlazeFaceDetector().detect(image)
    assert len(faces) == 1
    landmarks = FaceLandmarker().landmarks(image, faces[0])
    return image, faces[0], landmarks


@pytest.fixture(scope="module")
def demo_templates(tmp_path_factory):
    return load_templates(write_templates(tmp_path_factory.mktemp("masks")), ["demo"])


def coverage(alpha: np.ndarray, points: np.ndarray) -> dict[str, float]:
    out = {}
    for part, idx in POINTS.items():
        xy = np.round(points[list(idx), :2]).astype(int)
        out[part] = float(np.mean([alpha[y, x] > 0.5 for x, y in xy]))
    return out


def assert_state(cov: dict[str, float], state: str) -> None:
    for part, covered in EXPECTED[state].items():
        if covered:
            assert cov[part] == 1.0, f"{state}: {part} should be covered, coverage {cov}"
        else:
            assert cov[part] == 0.0, f"{state}: {part} should be bare, coverage {cov}"


def test_landmarks_found_on_astronaut(face_and_mesh):
    image, face, lm = face_and_mesh
    assert lm is not None and lm.points.shape == (468, 3)
    x0, y0, x1, y1 = face.box
    nose = lm.points[1, :2]
    assert x0 < nose[0] < x1 and y0 < nose[1] < y1
    # top to bottom: bridge, nose tip, upper lip, lower lip, chin
    ys = [lm.points[i, 1] for i in (168, 1, 0, 17, 152)]
    assert ys == sorted(ys)


@pytest.mark.parametrize("state", STATES)
def test_wearing_state_covers_what_it_should(face_and_mesh, demo_templates, state):
    image, _, lm = face_and_mesh
    for seed in range(12):  # random scale / offset / colour must never break the state
        syn = draw_mask(image, lm, state, demo_templates, np.random.default_rng(seed))
        assert_state(coverage(syn.alpha, lm.points), state)
        assert syn.image.shape == image.shape and syn.state == state
        # nothing is drawn far from the lower face: the eyes stay untouched
        eye_y = int(lm.points[159, 1])
        assert np.array_equal(syn.image[: eye_y - 5], image[: eye_y - 5])


@pytest.mark.parametrize("state", STATES)
def test_mask_follows_head_roll(face_and_mesh, demo_templates, state):
    need_models()
    from edge.detector import BlazeFaceDetector
    from edge.face_mesh import FaceLandmarker

    image = astronaut()
    h, w = image.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)
    rolled = cv2.warpAffine(image, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    face = BlazeFaceDetector().detect(rolled)[0]
    lm = FaceLandmarker().landmarks(rolled, face)
    assert lm is not None
    syn = draw_mask(rolled, lm, state, demo_templates, np.random.default_rng(1))
    assert_state(coverage(syn.alpha, lm.points), state)


def test_turned_head_gets_the_matching_side_template(face_and_mesh, demo_templates):
    _, _, lm = face_and_mesh
    variants = demo_templates["demo"]
    assert pick_variant(variants, FaceFrame(lm)).name == "demo"
    # turn the head: move the nose and mouth towards the image's left edge of the face
    turned = lm.points.copy()
    frame = FaceFrame(lm)
    left, right = frame.extent(frame.level(1))
    shift = 0.3 * (right - left) * frame.height
    for i in (168, 6, 197, 195, 5, 4, 1, 2, 0, 13, 14, 17):
        turned[i, :2] -= shift * frame.v
    from edge.face_mesh import Landmarks

    assert pick_variant(variants, FaceFrame(Landmarks(turned, 1.0))).name == "demo_left"
    mirrored = lm.points.copy()
    for i in (168, 6, 197, 195, 5, 4, 1, 2, 0, 13, 14, 17):
        mirrored[i, :2] += shift * frame.v
    assert pick_variant(variants, FaceFrame(Landmarks(mirrored, 1.0))).name == "demo_right"


def test_masks_cfg_errors_name_the_file(tmp_path):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="masks.cfg not found"):
        load_templates(tmp_path)
    write_templates(tmp_path)
    (tmp_path / "masks.cfg").write_text("[demo]\ntemplate: masks/templates/demo.png\nmask_a: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"section \[demo\].*mask_a"):
        load_templates(tmp_path, ["demo"])


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "mask_templates" / "masks.cfg").is_file(), reason="../shared/data absent")
@pytest.mark.parametrize("state", STATES)
def test_every_maskthefaces_template_family_covers_correctly(face_and_mesh, state):
    image, _, lm = face_and_mesh
    templates = load_templates(SHARED / "mask_templates")
    for family in sorted(templates):
        syn = draw_mask(image, lm, state, templates, np.random.default_rng(7), family=family)
        assert_state(coverage(syn.alpha, lm.points), state)
