"""Face detection: a small interface, and BlazeFace short-range on LiteRT behind it.

The BlazeFace post-processing follows MediaPipe's graph for ``face_detection_short_range``
(SsdAnchorsCalculator, TensorsToDetectionsCalculator, NonMaxSuppressionCalculator with weighted
merging, DetectionLetterboxRemovalCalculator), written with numpy arrays so that a frame costs a
handful of vector operations rather than a Python loop over 896 anchors.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edge.boxes import iou_matrix
from edge.errors import ConfigError, ModelError
from edge.litert import TFLiteModel
from edge.paths import DETECTOR_MODEL, models_dir

# Keypoint order of MediaPipe's face detection (FaceKeyPoint). "Right" is the person's right,
# which is on the image's left for a camera that does not mirror.
RIGHT_EYE = 0
LEFT_EYE = 1
NOSE_TIP = 2
MOUTH_CENTER = 3
RIGHT_EAR_TRAGION = 4
LEFT_EAR_TRAGION = 5

# MediaPipe clips raw logits at +-100 before the sigmoid (tensors_to_detections score_clipping_thresh).
SCORE_CLIP = 100.0


@dataclass
class Face:
    """One detected face, in pixels of the image it was found in."""

    box: np.ndarray  # (4,) x0, y0, x1, y1
    score: float
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((6, 2), np.float32))  # (6, 2) x, y

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2.0, float(self.box[1] + self.box[3]) / 2.0

    def translated(self, dx: float, dy: float) -> Face:
        """The same face in a frame shifted by (dx, dy), e.g. back out of ``crop.pad_image``."""
        d = np.array([dx, dy], dtype=np.float32)
        return Face(self.box + np.tile(d, 2), self.score, self.keypoints + d)


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HxWx3 image, best score first."""
        ...


# -- BlazeFace pieces (module level so tests can check them against hand-computed values) -------


def generate_anchors(
    input_size: int = 128,
    strides: tuple[int, ...] = (8, 16, 16, 16),
    anchor_offset: float = 0.5,
    aspect_ratios: tuple[float, ...] = (1.0,),
    interpolated_scale_aspect_ratio: float = 1.0,
) -> np.ndarray:
    """Anchor centres (N, 2) as MediaPipe's SsdAnchorsCalculator makes them with fixed_anchor_size.

    Layers sharing a stride share one feature map; each layer adds one anchor per aspect ratio plus
    one for the interpolated scale. With the short-range defaults: 16*16*2 + 8*8*6 = 896 anchors.
    With a fixed anchor size every anchor is 1x1, so only the centres matter.
    """
    per_layer = len(aspect_ratios) + (1 if interpolated_scale_aspect_ratio > 0 else 0)
    groups: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        repeats = per_layer * (last - layer)
        n = int(np.ceil(input_size / strides[layer]))
        centres = (np.arange(n, dtype=np.float32) + anchor_offset) / n
        ys, xs = np.meshgrid(centres, centres, indexing="ij")  # row-major: y outer, x inner
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        groups.append(np.repeat(grid, repeats, axis=0))
        layer = last
    return np.concatenate(groups).astype(np.float32)


def sigmoid_scores(raw_scores: np.ndarray, clip: float = SCORE_CLIP) -> np.ndarray:
    # float64 so exp(100) does not overflow
    z = np.clip(np.asarray(raw_scores, dtype=np.float64).reshape(-1), -clip, clip)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def decode(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    scale: float = 128.0,
    score_threshold: float = 0.5,
    num_keypoints: int = 6,
    score_clip: float = SCORE_CLIP,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs -> (boxes (K,4) x0,y0,x1,y1, scores (K,), keypoints (K,num_keypoints,2)).

    Coordinates are normalised to the model input ([0, 1] across the letterboxed square). Each
    regression row is (dx, dy, w, h, kp0x, kp0y, ...) in input pixels relative to its anchor centre;
    only anchors scoring at least ``score_threshold`` with a positive size are kept.
    """
    raw = np.asarray(raw_boxes, dtype=np.float32).reshape(len(anchors), -1)
    scores = sigmoid_scores(raw_scores, score_clip)
    keep = scores >= score_threshold
    raw, scores, anc = raw[keep], scores[keep], anchors[keep]
    cx = raw[:, 0] / scale + anc[:, 0]
    cy = raw[:, 1] / scale + anc[:, 1]
    w = raw[:, 2] / scale
    h = raw[:, 3] / scale
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4 : 4 + 2 * num_keypoints].reshape(-1, num_keypoints, 2) / scale + anc[:, None, :]
    valid = (w > 0) & (h > 0)
    return boxes[valid], scores[valid], kps[valid]


def weighted_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray | None = None,
    iou_threshold: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """MediaPipe's weighted non-max suppression.

    Take the best remaining detection; every remaining detection overlapping it by more than
    ``iou_threshold`` (itself included) is merged into one whose box and keypoints are the
    score-weighted mean, and whose score is the best one. Repeat until none remain. The overlaps
    are computed once for all pairs; the loop does a few small operations per output face.
    """
    n = len(boxes)
    kdim = 0 if keypoints is None else int(np.prod(keypoints.shape[1:]))
    data = boxes.reshape(n, 4) if keypoints is None else np.hstack([boxes.reshape(n, 4), keypoints.reshape(n, kdim)])
    order = np.argsort(-scores, kind="stable")
    data, sc = data[order].astype(np.float32), scores[order].astype(np.float32)
    overlaps = iou_matrix(data[:, :4], data[:, :4]) > iou_threshold
    left = np.ones(n, dtype=bool)
    out_data, out_scores = [], []
    for i in range(n):
        if not left[i]:
            continue
        group = overlaps[i] & left
        group[i] = True  # a degenerate box still absorbs itself
        left &= ~group
        w = sc[group]
        out_data.append((data[group] * w[:, None]).sum(axis=0) / w.sum())
        out_scores.append(sc[i])
    if not out_scores:
        kp_empty = None if keypoints is None else np.zeros((0, *keypoints.shape[1:]), np.float32)
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), kp_empty
    merged = np.stack(out_data)
    kps = None if keypoints is None else merged[:, 4:].reshape(-1, *keypoints.shape[1:])
    return merged[:, :4], np.asarray(out_scores, np.float32), kps


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """Fit ``image`` into a black ``size`` x ``size`` square keeping its aspect ratio.

    Returns the square, the (x, y) scale (square pixels per image pixel) and the (left, top)
    padding in square pixels.
    """
    h, w = image.shape[:2]
    fit = size / max(h, w)
    nw, nh = max(1, round(w * fit)), max(1, round(h * fit))
    # A large bilinear shrink aliases, and INTER_AREA is slow at a fractional factor (120 us for
    # the Pi's 320x180 stream, a third of the detector's invoke): box-filter by the whole part of
    # the factor first (OpenCV's fast integer path), then a bilinear step of less than 2x.
    k = int(1.0 / fit)
    if k >= 2 and w // k >= nw and h // k >= nh:
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    left, top = (size - nw) // 2, (size - nh) // 2
    square = np.zeros((size, size, 3), np.uint8)
    square[top : top + nh, left : left + nw] = small
    # the scale actually applied after rounding to whole pixels, so boxes map back without drift
    return square, (nw / w, nh / h), (left, top)


@dataclass(frozen=True)
class Prepared:
    """A frame made ready for BlazeFace, with what is needed to map boxes back to it."""

    tensor: np.ndarray  # (128, 128, 3) float32 in [-1, 1]
    scale: tuple[float, float]  # letterbox scale (x, y), as letterbox() returns it
    offset: tuple[float, float]  # letterbox padding (left, top) in square pixels


class BlazeFaceDetector:
    """MediaPipe BlazeFace short-range (faces within ~2 m), 128x128 float model, on LiteRT."""

    input_size = 128

    def __init__(
        self,
        model_path: Path | str | None = None,
        score_threshold: float = 0.5,
        nms_iou: float = 0.3,
        min_face_size: float = 0,
        num_threads: int | None = None,
    ) -> None:
        if not 0.0 < score_threshold < 1.0:
            raise ConfigError(f"detector.score_threshold must be between 0 and 1, got {score_threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ConfigError(f"detector.nms_iou must be in (0, 1], got {nms_iou}")
        if min_face_size < 0:
            raise ConfigError(f"detector.min_face_size must be >= 0 pixels, got {min_face_size}")
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.min_face_size = float(min_face_size)
        path = Path(model_path) if model_path is not None else models_dir() / DETECTOR_MODEL
        self.model = TFLiteModel(path, num_threads=num_threads)
        if self.model.input_shape != (1, self.input_size, self.input_size, 3):
            raise ModelError(
                f"{path}: expected a BlazeFace short-range model with a 1x128x128x3 input, "
                f"got {self.model.input_shape}; re-run ./install.sh"
            )
        self.anchors = generate_anchors(self.input_size)
        self._boxes_i, self._scores_i = self._find_outputs(path)

    def _find_outputs(self, path: Path) -> tuple[int, int]:
        names = self.model.output_names
        if "regressors" in names and "classificators" in names:
            return names.index("regressors"), names.index("classificators")
        shapes = [tuple(d["shape"]) for d in self.model.output_details]
        n = len(self.anchors)
        boxes = [i for i, s in enumerate(shapes) if s[-2:] == (n, 16)]
        scores = [i for i, s in enumerate(shapes) if s[-2:] == (n, 1)]
        if len(boxes) != 1 or len(scores) != 1:
            raise ModelError(f"{path}: outputs {shapes} are not BlazeFace short-range's (1,{n},16) and (1,{n},1)")
        return boxes[0], scores[0]

    def detect(self, image: np.ndarray) -> list[Face]:
        prepared = self.preprocess(image)
        return self.postprocess(self.invoke(prepared), prepared)

    # The three steps of ``detect``, public so the pipeline and `masknet bench` can time each one.
    def preprocess(self, image: np.ndarray) -> Prepared:
        """Letterbox the image to the model's square input and scale it to [-1, 1]."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
        square, scale, offset = letterbox(image, self.input_size)
        x = square.astype(np.float32)
        x *= 2.0 / 255.0
        x -= 1.0
        return Prepared(x, scale, offset)

    def invoke(self, prepared: Prepared) -> list[np.ndarray]:
        """The model alone: raw box regressions and score logits for every anchor."""
        return self.model.run(prepared.tensor)

    def postprocess(self, raw: list[np.ndarray], prepared: Prepared) -> list[Face]:
        """Decode against the anchors, weighted NMS, undo the letterbox; best score first."""
        boxes, scores, kps = decode(
            raw[self._boxes_i], raw[self._scores_i], self.anchors,
            scale=float(self.input_size), score_threshold=self.score_threshold,
        )
        if not len(scores):
            return []
        boxes, scores, kps = weighted_nms(boxes, scores, kps, self.nms_iou)
        # letterbox removal: normalised square -> square pixels -> image pixels
        offset = np.array(prepared.offset, np.float32)
        sxy = np.array(prepared.scale, np.float32)
        boxes = (boxes.reshape(-1, 2, 2) * self.input_size - offset) / sxy
        kps = (kps * self.input_size - offset) / sxy
        faces = [
            Face(box=b.reshape(4).astype(np.float32), score=float(s), keypoints=k.astype(np.float32))
            for b, s, k in zip(boxes, scores, kps, strict=True)
            if (b[1, 0] - b[0, 0]) >= self.min_face_size
        ]
        faces.sort(key=lambda f: -f.score)
        return faces

    def __repr__(self) -> str:
        return f"BlazeFaceDetector({str(self.model.path)!r}, score_threshold={self.score_threshold}, nms_iou={self.nms_iou})"


# -- registry --------------------------------------------------------------------------------

DETECTORS: dict[str, type] = {
    "blazeface_short": BlazeFaceDetector,
}


def create_detector(name: str, **options: object) -> FaceDetector:
    """Build a detector by its config name; unknown names or options are refused by name."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known detectors: {', '.join(sorted(DETECTORS))}")
    cls = DETECTORS[name]
    params = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_any:
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise ConfigError(
                f"detector {name!r} has no option {', '.join(unknown)}; "
                f"its options are: {', '.join(p for p in params if p != 'self')}"
            )
    return cls(**options)
