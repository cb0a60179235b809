"""468-point face mesh (MediaPipe face_landmark.tflite) on a detected face.

Used at the door as the re-look of small faces (``detector.relook = "mesh"``: its face-presence
score tells masked faces from textures better than BlazeFace run again, edge/regions.py) and by
convert/ to place synthetic masks (nose bridge, lips, chin, jaw).
The region of interest is MediaPipe's own (face_detection_front_detection_to_roi): the detector box
made square on its long side, enlarged 1.5x, rotated so the eyes are level; the mesh model was
trained on exactly that framing, so anything else loses accuracy.

Point names follow MediaPipe: "left"/"right" are the person's own, so RIGHT_* lies on the image's
left in a camera that does not mirror.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.crop import crop_matrix
from edge.detector import LEFT_EYE as _KP_LEFT_EYE
from edge.detector import RIGHT_EYE as _KP_RIGHT_EYE
from edge.detector import Face
from edge.errors import ConfigError, ModelError
from edge.litert import TFLiteModel
from edge.paths import LANDMARK_MODEL, models_dir

NUM_LANDMARKS = 468
ROI_SCALE = 1.5  # MediaPipe RectTransformationCalculator scale_x = scale_y = 1.5, square_long

# -- mesh indices (MediaPipe canonical face mesh) ---------------------------------------------
NOSE_BRIDGE: tuple[int, ...] = (168, 6, 197, 195)  # between the eyes, down the bridge
NOSE_TIP: tuple[int, ...] = (1, 4)
NOSE_WINGS: tuple[int, int] = (129, 358)  # outer edges of the nostrils (right, left)
UPPER_LIP: tuple[int, int] = (0, 13)  # outer top edge, inner edge
LOWER_LIP: tuple[int, int] = (14, 17)  # inner edge, outer bottom edge
MOUTH_CORNERS: tuple[int, int] = (61, 291)  # right, left
CHIN = 152
FOREHEAD = 10
# Face outline, closed, starting at the top of the forehead and going over the person's left.
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Lower half of the outline, ear to ear under the chin (person's right -> chin -> left).
JAW: tuple[int, ...] = (
    234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454,
)
# Eye corners and lids; the eye centre is their mean (the 468-point model has no iris points).
RIGHT_EYE: tuple[int, ...] = (33, 133, 159, 145)
LEFT_EYE: tuple[int, ...] = (263, 362, 386, 374)


@dataclass
class Landmarks:
    """Face mesh in pixels of the image: ``points`` (468, 3) x, y, z (z in the same pixel scale,
    negative towards the camera), and the model's face-presence score."""

    points: np.ndarray
    presence: float

    @property
    def xy(self) -> np.ndarray:
        return self.points[:, :2]

    def center(self, indices: int | tuple[int, ...]) -> np.ndarray:
        """Mean (x, y) of some points, e.g. ``center(LEFT_EYE)``."""
        idx = (indices,) if isinstance(indices, int) else indices
        return self.points[list(idx), :2].mean(axis=0)

    @property
    def right_eye(self) -> np.ndarray:
        return self.center(RIGHT_EYE)

    @property
    def left_eye(self) -> np.ndarray:
        return self.center(LEFT_EYE)


@dataclass(frozen=True)
class Roi:
    """MediaPipe's landmark ROI: a square of side ``side`` centred at ``center``, rotated
    clockwise (image y down) by ``rotation`` radians."""

    center: tuple[float, float]
    side: float
    rotation: float


def face_roi(face: Face, scale: float = ROI_SCALE) -> Roi:
    """The ROI MediaPipe derives from a detection: box centre, long side * scale, eye roll."""
    x0, y0, x1, y1 = (float(v) for v in face.box)
    (rx, ry), (lx, ly) = face.keypoints[_KP_RIGHT_EYE], face.keypoints[_KP_LEFT_EYE]
    # DetectionsToRectsCalculator: rotation = target(0) - atan2(-(y1 - y0), x1 - x0), start at the right eye
    rotation = -math.atan2(-(float(ly) - float(ry)), float(lx) - float(rx))
    rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    return Roi(((x0 + x1) / 2, (y0 + y1) / 2), max(x1 - x0, y1 - y0) * scale, rotation)


class FaceLandmarker:
    """MediaPipe face mesh (192x192 float model) on LiteRT, one interpreter reused per face."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        num_threads: int | None = None,
        presence_threshold: float = 0.5,
    ) -> None:
        if not 0.0 <= presence_threshold < 1.0:
            raise ConfigError(f"landmark presence_threshold must be in [0, 1), got {presence_threshold}")
        self.presence_threshold = float(presence_threshold)
        path = Path(model_path) if model_path is not None else models_dir() / LANDMARK_MODEL
        self.model = TFLiteModel(path, num_threads=num_threads)
        shape = self.model.input_shape
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3:
            raise ModelError(f"{path}: expected a square RGB face-mesh input, got {shape}; re-run ./install.sh")
        self.input_size = int(shape[1])
        sizes = [int(np.prod(d["shape"])) for d in self.model.output_details]
        mesh = [i for i, n in enumerate(sizes) if n >= NUM_LANDMARKS * 3]
        flag = [i for i, n in enumerate(sizes) if n == 1]
        if len(mesh) != 1 or len(flag) != 1:
            raise ModelError(f"{path}: outputs of sizes {sizes} are not face mesh's (1404 landmarks, 1 score)")
        self._mesh_i, self._flag_i = mesh[0], flag[0]

    def _run(self, image: np.ndarray, roi: Roi) -> tuple[list[np.ndarray], float]:
        """The model's outputs on ``roi`` of ``image`` and its face-presence score (0..1)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
        x0, y0 = roi.center[0] - roi.side / 2, roi.center[1] - roi.side / 2
        box = (x0, y0, x0 + roi.side, y0 + roi.side)
        n = self.input_size
        m = crop_matrix(box, n, margin=0.0, roll=roi.rotation)
        # MediaPipe's ImageToTensor replicates the border and feeds [0, 1] floats.
        patch = cv2.warpAffine(image, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x = patch.astype(np.float32) * np.float32(1.0 / 255.0)
        outputs = self.model.run(x)
        logit = float(np.clip(outputs[self._flag_i].reshape(-1)[-1], -100.0, 100.0))
        return outputs, 1.0 / (1.0 + math.exp(-logit))

    def presence(self, image: np.ndarray, face: Face) -> float:
        """The model's face-presence score (0..1) for ``face`` found in ``image``."""
        return self._run(image, face_roi(face))[1]

    def landmarks(self, image: np.ndarray, face: Face) -> Landmarks | None:
        """The mesh for ``face`` (found in ``image``), or None when the model sees no face there."""
        roi = face_roi(face)
        outputs, presence = self._run(image, roi)
        if presence < self.presence_threshold:
            return None
        raw = outputs[self._mesh_i].reshape(-1)[: NUM_LANDMARKS * 3].reshape(NUM_LANDMARKS, 3)
        # model pixels (continuous) -> ROI-relative -> rotated back -> image pixels
        n = self.input_size
        k = roi.side / n
        rel = (raw[:, :2] - n / 2.0) * k
        c, s = math.cos(roi.rotation), math.sin(roi.rotation)
        rot = np.array([[c, -s], [s, c]], dtype=np.float32)
        xy = rel @ rot.T + np.asarray(roi.center, dtype=np.float32)
        points = np.hstack([xy, raw[:, 2:3] * k]).astype(np.float32)
        return Landmarks(points=points, presence=presence)

    __call__ = landmarks
