"""The detector's views of a frame: region of interest, far-pass tiles, their turns and mapping back."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import load_config
from edge.detector import Face, create_detector
from edge.errors import ConfigError
from edge.paths import DETECTOR_MODEL, models_dir
from edge.regions import RegionDetector, View, detector_from_config, fraction_box, tile_boxes


def test_fraction_box_rounds_to_whole_pixels():
    assert fraction_box((0.0, 0.15, 1.0, 0.8), 1280, 720) == (0, 108, 1280, 576)
    assert fraction_box((0.25, 0.25, 0.75, 0.75), 320, 180) == (80, 45, 240, 135)


def test_tiles_cover_the_far_region_with_at_least_a_quarter_overlap():
    # region 1280 x 468 px, tiles of 360: across, (1280 - 360) / 270 -> 4 steps, 5 tiles 230 apart;
    # down, (468 - 360) / 270 -> 1 step, 2 tiles 108 apart
    tiles = tile_boxes((0, 108, 1280, 576), 360)
    xs = sorted({t[0] for t in tiles})
    ys = sorted({t[1] for t in tiles})
    assert xs == [0, 230, 460, 690, 920] and ys == [108, 216]
    assert len(tiles) == 10 and all(t[2] - t[0] == 360 and t[3] - t[1] == 360 for t in tiles)
    assert tiles[0] == (0, 108, 360, 468) and tiles[-1] == (920, 216, 1280, 576)  # row by row


def test_a_region_smaller_than_a_tile_is_one_tile_cut_to_it():
    assert tile_boxes((100, 50, 300, 150), 360) == [(100, 50, 300, 150)]


class CountingModel:
    """Stands in for a BlazeFace model: records the size of every view it is given."""

    input_size = 128
    nms_iou = 0.3

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def preprocess(self, image: np.ndarray) -> tuple[int, int]:
        self.seen.append(image.shape[:2])
        return image.shape[:2]

    def invoke(self, prepared: object) -> list[np.ndarray]:
        return []

    def postprocess(self, raw: object, prepared: object) -> list[Face]:
        return []


def test_far_pass_tiles_take_turns_over_far_every_frames():
    model = CountingModel()
    det = RegionDetector(model, far_region=(0.0, 0.15, 1.0, 0.8), far_tile=0.5, far_every=3)  # type: ignore[arg-type]
    frame = np.zeros((720, 1280, 3), np.uint8)
    counts = []
    for _ in range(6):
        before = len(model.seen)
        det.detect(frame)
        counts.append(len(model.seen) - before)
    # the whole view every frame, plus the 10 tiles in turns of 4, 3, 3
    assert counts == [1 + 4, 1 + 3, 1 + 3] * 2
    model.seen.clear()
    det.detect_all(frame)
    assert len(model.seen) == 11 and det.far_every == 3


def test_without_a_far_tile_only_the_region_of_interest_is_seen():
    model = CountingModel()
    det = RegionDetector(model, roi=(0.25, 0.0, 0.75, 1.0))  # type: ignore[arg-type]
    det.detect(np.zeros((720, 1280, 3), np.uint8))
    assert model.seen == [(720, 640)]


def test_tiles_are_cut_from_the_full_frame_when_there_is_one():
    model = CountingModel()
    det = RegionDetector(model, far_tile=0.5)  # type: ignore[arg-type]
    near, far = det.views((180, 320, 3), (720, 1280, 3))
    assert near == [View((0, 0, 320, 180), False, False)]
    assert all(v.from_full and v.box[2] - v.box[0] == 360 for v in far)


@pytest.fixture(scope="module")
def astronaut_far() -> tuple[np.ndarray, np.ndarray]:
    """A 1280x720 frame with the astronaut's face about 100 px wide at a known place, and its box."""
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    face = cv2.resize(skimage_data.astronaut()[20:260, 120:340], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 110, np.uint8)
    frame[300 : 300 + face.shape[0], 700 : 700 + face.shape[1]] = face
    # the face box in the astronaut (about 175..275, 65..180; test_detector.py) after the cut and scale
    box = (np.array([175, 65, 275, 180], np.float64) - [120, 20, 120, 20]) * 0.5 + [700, 300, 700, 300]
    return frame, box


def _low_res(astronaut_far: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(full frame, face box in it, the 320x180 low-resolution stream); skips without the model."""
    if not (models_dir() / DETECTOR_MODEL).is_file():
        pytest.skip("the short-range model is absent: run ./install.sh")
    cv2 = pytest.importorskip("cv2")
    frame, box = astronaut_far
    return frame, box, cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)


def test_the_far_pass_finds_a_face_the_whole_view_misses_and_maps_it_back(astronaut_far):
    frame, box, lores = _low_res(astronaut_far)
    model = create_detector("blazeface_short", score_threshold=0.5)
    whole = RegionDetector(model)
    assert whole.detect(lores, frame) == []  # 12 px of face in a 128 px input: too small
    far = RegionDetector(model, far_tile=0.5)
    faces = far.detect(lores, frame)
    assert len(faces) == 1
    # in pixels of the detection image (the low-resolution stream): a quarter of the full frame's
    np.testing.assert_allclose(faces[0].box, box / 4, atol=3)
    assert faces[0].keypoints.shape == (6, 2)
    # the same frame without a separate full frame: tiles cut from the image itself
    faces = far.detect(frame)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, box, atol=8)


def test_min_face_size_is_in_full_frame_pixels(astronaut_far):
    frame, box, lores = _low_res(astronaut_far)
    model = create_detector("blazeface_short", score_threshold=0.5)
    width = box[2] - box[0]  # about 50 px of the full frame, 12 of the low-resolution stream
    assert len(RegionDetector(model, far_tile=0.5, min_face_size=width - 15).detect(lores, frame)) == 1
    assert RegionDetector(model, far_tile=0.5, min_face_size=width + 15).detect(lores, frame) == []


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("detector.roi", [0.5, 0.0, 0.4, 1.0], "'detector.roi' must be [x0, y0, x1, y1]"),
        ("detector.far_region", [0.0, 0.0, 1.0], "'detector.far_region' must be [x0, y0, x1, y1]"),
        ("detector.far_region", [0.0, 0.0, 1.5, 1.0], "fractions of the frame from 0 to 1"),
        ("detector.far_tile", 1.5, "'detector.far_tile' must be between 0"),
        ("detector.far_every", 0, "'detector.far_every' must be a positive integer"),
        ("detector.relook", "dlib", "'detector.relook' must be \"blazeface\" or \"mesh\""),
        ("detector.verify_threshold", 1.0, "'detector.verify_threshold' must be 0 (no re-look) or a score below 1"),
    ],
)
def test_bad_region_settings_are_refused_by_name(key, value, says):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(None, {key: value})
    assert says in str(err.value)


def test_the_door_detector_is_built_from_the_config():
    if not (models_dir() / DETECTOR_MODEL).is_file():
        pytest.skip("the short-range model is absent: run ./install.sh")
    cfg = load_config(None, {"detector.name": "blazeface_short", "detector.far_tile": 0.4, "detector.far_every": 2})
    det = detector_from_config(cfg)
    assert det.far_tile == 0.4 and det.far_every == 2 and det.input_size == 128
    assert detector_from_config(cfg, far_tile=0.0).far_tile == 0.0


class OneFaceModel(CountingModel):
    """Finds one 20 px face in the middle of whatever it is shown, except on a re-look."""

    def postprocess(self, raw: object, prepared: object) -> list[Face]:
        h, w = prepared  # type: ignore[misc]
        return [Face(np.array([w / 2 - 10, h / 2 - 10, w / 2 + 10, h / 2 + 10], np.float32), 0.9)]

    def detect(self, image: np.ndarray) -> list[Face]:
        self.seen.append(image.shape[:2])
        return []


def test_the_relook_drops_a_small_face_the_model_does_not_find_again():
    frame = np.zeros((720, 1280, 3), np.uint8)
    model = OneFaceModel()
    assert len(RegionDetector(model).detect(frame)) == 1  # type: ignore[arg-type]
    model.seen.clear()
    assert RegionDetector(model, verify_threshold=0.5).detect(frame) == []  # type: ignore[arg-type]
    # the re-look saw 4 x the face's 20 px around it
    assert model.seen == [(720, 1280), (80, 80)]


def _mesh():
    from edge.face_mesh import FaceLandmarker
    from edge.paths import LANDMARK_MODEL

    if not (models_dir() / LANDMARK_MODEL).is_file():
        pytest.skip("models/face_landmark.tflite is absent: run ./install.sh")
    return FaceLandmarker(models_dir() / LANDMARK_MODEL, presence_threshold=0.0)


def test_the_mesh_relook_keeps_the_astronauts_small_face(astronaut_far):
    frame, box, lores = _low_res(astronaut_far)
    det = RegionDetector(create_detector("blazeface_short", score_threshold=0.5), far_tile=0.5, verify_threshold=0.7, mesh=_mesh())
    faces = det.detect(lores, frame)
    assert len(faces) == 1 and det.relooks == 1  # one mesh run, on the full frame's pixels
    np.testing.assert_allclose(faces[0].box, box / 4, atol=3)


def test_the_mesh_relook_drops_a_face_free_texture():
    skimage_data = pytest.importorskip("skimage.data")
    cv2 = pytest.importorskip("cv2")
    grass = cv2.cvtColor(skimage_data.grass(), cv2.COLOR_GRAY2RGB)  # 512 x 512
    frame = np.ascontiguousarray(np.tile(grass, (2, 3, 1))[:720, :1280])
    model = OneFaceModel()  # a 20 px "face" in the middle of the grass
    assert len(RegionDetector(model).detect(frame)) == 1  # type: ignore[arg-type]
    det = RegionDetector(model, verify_threshold=0.7, mesh=_mesh())  # type: ignore[arg-type]
    assert det.detect(frame) == []
    assert det.relooks == 1 and model.seen == [(720, 1280), (720, 1280)]  # the mesh, not the model, looked again


def test_the_config_chooses_the_relook():
    if not (models_dir() / DETECTOR_MODEL).is_file():
        pytest.skip("the short-range model is absent: run ./install.sh")
    _mesh()
    base = {"detector.name": "blazeface_short", "detector.verify_threshold": 0.7}
    assert detector_from_config(load_config(None, {**base, "detector.relook": "mesh"})).mesh is not None
    assert detector_from_config(load_config(None, {**base, "detector.relook": "blazeface"})).mesh is None
    off = {**base, "detector.relook": "mesh", "detector.verify_threshold": 0.0}
    assert detector_from_config(load_config(None, off)).mesh is None  # no re-look: the mesh is not loaded


def test_a_face_mostly_inside_a_larger_one_is_dropped_as_a_part_of_it():
    from edge.regions import _drop_parts

    def face(x0: float, y0: float, x1: float, y1: float) -> Face:
        return Face(np.array([x0, y0, x1, y1], np.float32), 0.9)

    whole, part, neighbour = face(500, 200, 740, 480), face(630, 250, 770, 410), face(760, 200, 1000, 480)
    # the part lies 110/140 of its width inside the whole face; IoU 0.25 is too low for NMS to merge them
    assert _drop_parts([whole, part, neighbour]) == [whole, neighbour]
    assert _drop_parts([part]) == [part]
