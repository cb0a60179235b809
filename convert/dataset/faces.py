"""Finding the faces of a photo with the door's detector, and choosing which ones to keep."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from edge.boxes import iou
from edge.crop import CROP_MARGIN, pad_image
from edge.detector import Face, FaceDetector

from .recipe import SourceSpec


@dataclass(frozen=True)
class FoundFace:
    face: Face
    how: str  # "detected", "detected after padding", "whole photo (tight crop)"


def detect(image: np.ndarray, detector: FaceDetector, pad: float) -> tuple[list[Face], bool]:
    """Faces in image pixels, and whether padding was needed to find them.

    BlazeFace misses faces that fill the whole frame (data sets of tight face crops), so a photo
    with no face is tried once more inside a border of `pad` times its size.
    """
    faces = detector.detect(image)
    if faces or pad <= 0:
        return faces, False
    padded, (dx, dy) = pad_image(image, pad)
    return [f.translated(-dx, -dy) for f in detector.detect(padded)], True


def whole_photo_face(shape: tuple[int, ...], margin: float = CROP_MARGIN) -> Face:
    """A face box for a photo that is itself a face crop: its crop (side = box * (1 + margin)) is
    exactly the photo's longer side, centred."""
    h, w = shape[:2]
    side = max(h, w) / (1.0 + margin)
    cx, cy = w / 2.0, h / 2.0
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
    return Face(box=box, score=0.0)


def area(face: Face) -> float:
    x0, y0, x1, y1 = (float(v) for v in face.box)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def choose_faces(
    image: np.ndarray, detector: FaceDetector, spec: SourceSpec, pad: float, counts: Counter[str], margin: float = CROP_MARGIN
) -> list[FoundFace]:
    """The faces of one photo to keep under the source's policy; every drop is counted by reason.

    - `one`: exactly one face, else the photo is skipped ("no face" / "several faces")
    - `dominant`: several faces are fine when the largest is `dominance` times the next
    - `all`: every face (scene photos: one crop per face)
    Faces narrower than `min_face` are dropped first. A photo no larger than `tight_fallback`
    pixels with no face at all is taken whole, as the face crop it already is (counted).
    """
    faces, padded = detect(image, detector, pad)
    how = "detected after padding" if padded else "detected"
    small = [f for f in faces if f.width < spec.min_face]
    if small:
        counts["face smaller than min_face"] += len(small)
        faces = [f for f in faces if f.width >= spec.min_face]
    if not faces:
        if spec.tight_fallback and max(image.shape[:2]) <= spec.tight_fallback:
            counts["no face: used the whole photo (tight crop)"] += 1
            return [FoundFace(whole_photo_face(image.shape, margin), "whole photo (tight crop)")]
        counts["no face found"] += 1
        return []
    if padded:
        counts["face found only after padding"] += 1
    if len(faces) == 1 or spec.faces == "all":
        return [FoundFace(f, how) for f in faces]
    ranked = sorted(faces, key=area, reverse=True)
    if spec.faces == "dominant" and area(ranked[0]) >= spec.dominance * area(ranked[1]):
        counts["several faces: kept the dominant one"] += 1
        return [FoundFace(ranked[0], how)]
    counts["several faces"] += 1
    return []


def best_match(faces: list[Face], target: Face, min_iou: float = 0.3) -> Face | None:
    """The face overlapping `target` most, if it overlaps at least `min_iou`."""
    if not faces:
        return None
    overlaps = iou(np.asarray(target.box, np.float64), np.array([f.box for f in faces], np.float64))
    k = int(np.argmax(overlaps))  # the first of equals, as max() picked
    return faces[k] if overlaps[k] >= min_iou else None
