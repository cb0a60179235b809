"""Where in the frame the detector looks: the region of interest whole, and a zoomed far pass.

Shrunk whole into a BlazeFace input (128 to 256 px across), a face at the far side of a doorway
is a few model pixels wide and is missed: the models need about 16 px (back-camera, full-range)
to 20 px (short-range) of face in their own input (`masknet detect --bench`, docs/configuration.md).
So the door runs the model on several views of a frame:

* the region of interest (``detector.roi``) letterboxed whole, every frame: near faces;
* the far pass: ``detector.far_region`` cut into overlapping square tiles whose side is
  ``detector.far_tile`` x the frame height, each letterboxed on its own; the tiles take turns
  over ``detector.far_every`` frames (each tile runs once in that many frames, so no frame
  carries the whole pass): a face there reaches the model about
  ``input_size / (far_tile x frame height)`` times its frame size. Tiles are cut from the
  camera's full-resolution frame when there is one (the Pi camera's main stream), so zooming in
  does not just magnify the low-resolution stream's pixels.

Small faces can then be looked at again (``detector.verify_threshold``, ``detector.relook``) and
are dropped unless the re-look scores at least the threshold: "blazeface" runs the detector once
more on a square of ``VERIFY_CONTEXT`` face widths around each and must find it again; "mesh" asks
the face-mesh model (edge/face_mesh.py) whether a face is in MediaPipe's landmark crop of it.
Both cut the far pass's false faces (textures of gravel, grass, brick); BlazeFace scores a masked
face at 32-64 px about as low as such textures, the mesh's face-presence score does not, so "mesh"
keeps more masked faces at the same false faces, and costs less (`masknet detect --bench`).

Detections of all views are mapped to the detection image's pixels and merged by MediaPipe's
weighted NMS. Tiles overlap by at least ``MIN_OVERLAP`` of their side, so a face smaller than
that lies whole in some tile; a face cut by a tile edge is also found whole by a neighbour or by
the whole view, and NMS merges the parts (dropping detections at inner tile edges instead lost
13 % of the 96 px faces in `masknet detect --bench`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.boxes import intersection_matrix, iou
from edge.config import Config
from edge.detector import (
    DETECTORS,
    BlazeFaceDetector,
    Face,
    Prepared,
    create_detector,
    weighted_nms,
)
from edge.errors import ConfigError
from edge.face_mesh import FaceLandmarker
from edge.paths import DETECTOR_MODEL, LANDMARK_MODEL, configured_models_dir, detector_path

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

# Tiles overlap by at least this share of their side (see the module docstring).
MIN_OVERLAP = 0.25
# The re-look (detector.verify_threshold): a square this many face widths across around a
# candidate, which must be found again overlapping it by this IoU.
VERIFY_CONTEXT = 4.0
VERIFY_IOU = 0.3
# A face lying this much (share of its own area) inside a larger face is a part of it that a
# tile edge cut off, too unlike the whole for NMS to merge (the mesh re-look keeps such parts: it
# sees part of a face; the walk-up replay in tests/test_detect_cmd.py), so it is dropped.
INSIDE = 0.5


def fraction_box(frac: tuple[float, ...], width: int, height: int) -> Box:
    """A region given as fractions of the frame (x0, y0, x1, y1) in whole pixels, at least 1 px."""
    x0, y0, x1, y1 = (float(v) for v in frac)
    bx0, by0 = round(x0 * width), round(y0 * height)
    bx1, by1 = max(bx0 + 1, round(x1 * width)), max(by0 + 1, round(y1 * height))
    return bx0, by0, min(bx1, width), min(by1, height)


def _starts(lo: int, hi: int, side: int) -> list[int]:
    """Evenly spaced tile starts covering [lo, hi) with tiles of ``side``, overlapping >= MIN_OVERLAP."""
    span = hi - lo
    if span <= side:
        return [lo]
    step_max = side * (1.0 - MIN_OVERLAP)
    n = math.ceil((span - side) / step_max) + 1
    return [lo + round(i * (span - side) / (n - 1)) for i in range(n)]


def tile_boxes(region: Box, side: int) -> list[Box]:
    """Square tiles of ``side`` pixels covering ``region`` row by row (cut to the region's size)."""
    x0, y0, x1, y1 = region
    side = max(1, side)
    w, h = min(side, x1 - x0), min(side, y1 - y0)
    return [(x, y, x + w, y + h) for y in _starts(y0, y1, side) for x in _starts(x0, x1, side)]


@dataclass(frozen=True)
class View:
    box: Box  # in pixels of the image the view is cut from
    from_full: bool  # cut from the full-resolution frame rather than the detection image
    tile: bool  # part of the far pass


@dataclass(frozen=True)
class RegionsPrepared:
    """Every view of one frame made ready for the model, and how to map each back."""

    views: tuple[View, ...]
    prepared: tuple[Prepared, ...]
    to_image: tuple[tuple[float, float], ...]  # per view: image pixels per source pixel (x, y)
    size: tuple[int, int]  # detection image (width, height)
    full_per_image: float  # full-frame pixels per detection-image pixel (1 without a full frame)
    source: np.ndarray  # the full frame when there is one, else the detection image (for the re-look)


class RegionDetector:
    """A BlazeFace model run over the views of a frame; the same three steps as the model itself."""

    def __init__(
        self,
        model: BlazeFaceDetector,
        roi: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
        far_region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
        far_tile: float = 0.0,
        far_every: int = 1,
        min_face_size: float = 0.0,
        verify_threshold: float = 0.0,
        mesh: FaceLandmarker | None = None,
    ) -> None:
        """``mesh``: the re-look is the face mesh's face-presence score (``detector.relook =
        "mesh"``) instead of the detector run again."""
        for name, frac in (("roi", roi), ("far_region", far_region)):
            _check_fractions(f"detector.{name}", frac)
        if not 0.0 <= far_tile <= 1.0:
            raise ConfigError(f"detector.far_tile must be between 0 (no far pass) and 1, got {far_tile}")
        if far_every < 1:
            raise ConfigError(f"detector.far_every must be at least 1, got {far_every}")
        if min_face_size < 0:
            raise ConfigError(f"detector.min_face_size must be >= 0 pixels, got {min_face_size}")
        if not 0.0 <= verify_threshold < 1.0:
            raise ConfigError(f"detector.verify_threshold must be between 0 (no re-look) and 1, got {verify_threshold}")
        self.model = model
        self.roi = tuple(float(v) for v in roi)
        self.far_region = tuple(float(v) for v in far_region)
        self.far_tile = float(far_tile)
        self.far_every = int(far_every)
        self.min_face_size = float(min_face_size)
        self.verify_threshold = float(verify_threshold)
        self.mesh = mesh
        self.nms_iou = model.nms_iou
        self.input_size = model.input_size
        self._frames = 0
        self.relooks = 0  # model runs of the re-look so far, detector or mesh (the benchmark counts them)
        self._views: dict[tuple[tuple[int, ...], tuple[int, ...] | None], tuple[list[View], list[View]]] = {}

    def views(self, image_shape: tuple[int, ...], full_shape: tuple[int, ...] | None = None) -> tuple[list[View], list[View]]:
        """(views of every frame, views of the far pass) for frames of these shapes."""
        key = (tuple(image_shape[:2]), None if full_shape is None else tuple(full_shape[:2]))
        if key not in self._views:
            h, w = image_shape[:2]
            near = [View(fraction_box(self.roi, w, h), False, False)]
            far: list[View] = []
            if self.far_tile > 0:
                fh, fw = (h, w) if full_shape is None else full_shape[:2]
                region = fraction_box(self.far_region, fw, fh)
                far = [View(b, full_shape is not None, True) for b in tile_boxes(region, round(self.far_tile * fh))]
            self._views[key] = (near, far)
        return self._views[key]

    def preprocess(self, image: np.ndarray, full: np.ndarray | None = None) -> RegionsPrepared:
        if full is not None and full.shape[:2] == image.shape[:2]:
            full = None  # same pixels: cut from the detection image
        near, far = self.views(image.shape, None if full is None else full.shape)
        # the far pass is spread over far_every frames, tile i on the frames where
        # i % far_every comes up, so that no frame carries the whole pass
        turn = self._frames % self.far_every
        views = list(near) + far[turn :: self.far_every]
        self._frames += 1
        h, w = image.shape[:2]
        prepared, to_image = [], []
        for v in views:
            src = full if v.from_full and full is not None else image
            x0, y0, x1, y1 = v.box
            prepared.append(self.model.preprocess(src[y0:y1, x0:x1]))
            to_image.append((w / src.shape[1], h / src.shape[0]))
        # min_face_size is in pixels of the frame faces are cropped from
        full_per_image = 1.0 if full is None else full.shape[1] / w
        source = image if full is None else full
        return RegionsPrepared(tuple(views), tuple(prepared), tuple(to_image), (w, h), full_per_image, source)

    def invoke(self, prepared: RegionsPrepared) -> list[list[np.ndarray]]:
        return [self.model.invoke(p) for p in prepared.prepared]

    def postprocess(self, raw: list[list[np.ndarray]], prepared: RegionsPrepared) -> list[Face]:
        boxes, scores, kps = [], [], []
        w, h = prepared.size
        for view, prep, out, (sx, sy) in zip(prepared.views, prepared.prepared, raw, prepared.to_image, strict=True):
            faces = self.model.postprocess(out, prep)
            x0, y0 = view.box[:2]
            for f in faces:
                boxes.append((f.box + np.array([x0, y0, x0, y0], np.float32)) * np.array([sx, sy, sx, sy], np.float32))
                kps.append((f.keypoints + np.array([x0, y0], np.float32)) * np.array([sx, sy], np.float32))
                scores.append(f.score)
        if not scores:
            return []
        b, s, k = weighted_nms(np.stack(boxes), np.asarray(scores, np.float32), np.stack(kps), self.nms_iou)
        assert k is not None
        faces = [
            Face(box=bb.astype(np.float32), score=float(ss), keypoints=kk.astype(np.float32))
            for bb, ss, kk in zip(b, s, k, strict=True)
            if (bb[2] - bb[0]) * prepared.full_per_image >= self.min_face_size
        ]
        faces = _drop_parts(faces)
        if self.verify_threshold > 0:
            faces = [f for f in faces if self.looks_again(f, prepared)]
        faces.sort(key=lambda f: -f.score)
        return faces

    def looks_again(self, face: Face, prepared: RegionsPrepared) -> bool:
        """Whether the re-look scores ``face`` at least ``verify_threshold`` (from the full frame
        when there is one). A face so large that a square of ``VERIFY_CONTEXT`` x its size would
        not be smaller than the frame is kept as it is.

        "blazeface": the model must find it again in that square: seen that close, a face fills a
        quarter of the model's input, and most false faces of the far pass (textures at a few
        model pixels) are not found again. "mesh": the face-mesh model's face-presence score on
        the face's landmark crop.
        """
        src = prepared.source
        f = prepared.full_per_image
        box = face.box.astype(np.float64) * f
        side = VERIFY_CONTEXT * max(box[2] - box[0], box[3] - box[1])
        H, W = src.shape[:2]
        if side >= min(H, W):
            return True
        self.relooks += 1
        if self.mesh is not None:
            full = Face(box=box.astype(np.float32), score=face.score, keypoints=(face.keypoints * f).astype(np.float32))
            return self.mesh.presence(src, full) >= self.verify_threshold
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
        x1, y1 = min(W, round(cx + side / 2)), min(H, round(cy + side / 2))
        local = box - np.array([x0, y0, x0, y0])
        again = self.model.detect(src[y0:y1, x0:x1])
        return any(
            g.score >= self.verify_threshold and iou(local, g.box[np.newaxis].astype(np.float64))[0] >= VERIFY_IOU
            for g in again
        )

    def detect(self, image: np.ndarray, full: np.ndarray | None = None) -> list[Face]:
        prepared = self.preprocess(image, full)
        return self.postprocess(self.invoke(prepared), prepared)

    def detect_all(self, image: np.ndarray, full: np.ndarray | None = None) -> list[Face]:
        """One frame with every far-pass tile (what ``far_every`` frames see together)."""
        every, self.far_every = self.far_every, 1
        try:
            return self.detect(image, full)
        finally:
            self.far_every = every

    def reset(self) -> None:
        """Start the far-pass cycle again at its first tile."""
        self._frames = 0

    def describe(self, image_shape: tuple[int, ...], full_shape: tuple[int, ...] | None = None) -> str:
        near, far = self.views(image_shape, full_shape)
        text = f"{type(self.model).__name__} on the region {near[0].box}"
        if far:
            every = "every frame" if self.far_every == 1 else f"each once in {self.far_every} frames"
            text += f" + a far pass of {len(far)} tiles of {far[0].box[2] - far[0].box[0]} px, {every}"
        if self.verify_threshold > 0:
            text += f", re-look {'mesh' if self.mesh is not None else 'blazeface'} >= {self.verify_threshold}"
        return text


def _drop_parts(faces: list[Face]) -> list[Face]:
    """``faces`` less those lying at least ``INSIDE`` within a larger one (see ``INSIDE``)."""
    if len(faces) < 2:
        return faces
    boxes = np.stack([f.box for f in faces]).astype(np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inter = intersection_matrix(boxes, boxes)  # [i, j]: i's area inside j
    part = (inter >= INSIDE * area[:, None]) & (area[None, :] > area[:, None])
    return [f for f, p in zip(faces, part.any(axis=1), strict=True) if not p]


def _check_fractions(name: str, frac: tuple[float, ...]) -> None:
    if len(frac) != 4 or not all(0.0 <= float(v) <= 1.0 for v in frac) or not (frac[0] < frac[2] and frac[1] < frac[3]):
        raise ConfigError(
            f"{name} must be [x0, y0, x1, y1], fractions of the frame between 0 and 1 with x0 < x1 and "
            f"y0 < y1, got {list(frac)}"
        )


def detector_model_file(cfg: Config, name: str | None = None, model: str | None = None) -> Path:
    """The detector file `masknet run` loads for this config and `masknet doctor` checks:
    ``detector.model`` when set, else the named model's file in the --models folder, else in the
    default models folder."""
    name = cfg.detector.name if name is None else name
    model = cfg.detector.model if model is None else model
    cls = DETECTORS.get(name)  # an unknown name is refused by create_detector
    file_name = cls.spec.model_file if cls is not None else DETECTOR_MODEL
    folder = configured_models_dir(cfg.classifier.models_dir)
    return detector_path(model, folder, file_name)


def detector_from_config(cfg: Config, **overrides: Any) -> RegionDetector:
    """The door's detector as ``masknet run`` builds it: the model, its region and far pass.

    ``overrides`` replace [detector] settings by name (``masknet detect --detector NAME``).
    """
    d = {**{k: getattr(cfg.detector, k) for k in cfg.detector.__dataclass_fields__}, **overrides}
    options: dict[str, Any] = {
        "score_threshold": d["score_threshold"],
        "nms_iou": d["nms_iou"],
        "num_threads": cfg.runtime.threads,
    }
    # the file `masknet doctor` checks for this config
    options["model_path"] = detector_model_file(cfg, d["name"], d["model"])
    model = create_detector(d["name"], **options)
    if not isinstance(model, BlazeFaceDetector):  # pragma: no cover - the registry holds BlazeFace only
        raise ConfigError(f"detector {d['name']!r} cannot run over regions")
    mesh = None
    if d["relook"] == "mesh" and d["verify_threshold"] > 0:
        folder = configured_models_dir(cfg.classifier.models_dir)
        # presence_threshold 0: the re-look compares the score itself with verify_threshold
        mesh = FaceLandmarker(detector_path("", folder, LANDMARK_MODEL), num_threads=cfg.runtime.threads, presence_threshold=0.0)
    return RegionDetector(
        model,
        roi=tuple(d["roi"]),
        far_region=tuple(d["far_region"]),
        far_tile=d["far_tile"],
        far_every=d["far_every"],
        min_face_size=d["min_face_size"],
        verify_threshold=d["verify_threshold"],
        mesh=mesh,
    )
