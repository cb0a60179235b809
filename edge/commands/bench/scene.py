"""The generated scene: a hallway at the camera's resolution with the astronaut's face pasted in K
times, rendered frame by frame outside the timed region."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import MasknetError, ModelError

# Faces (the head with hair and chin) are pasted this big relative to the frame height: someone
# close to the door camera. Big enough that BlazeFace short-range finds every pasted face on the
# Pi's 320x180 low-resolution stream in every scene variant (at 0.35 it misses some).
FACE_HEIGHT_FRACTION = 0.45


def _astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (public domain, NASA), RGB, read without importing skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.origin:
        raise MasknetError(
            "the generated scene needs scikit-image for its test face (skimage.data.astronaut): "
            "run `.venv/bin/pip install scikit-image`, or time real frames with --source"
        )
    import cv2

    path = Path(spec.origin).parent / "data" / "astronaut.png"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        from skimage import data  # newer releases may keep it elsewhere

        return np.ascontiguousarray(data.astronaut()[:, :, :3])
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def face_patch(detector: Any) -> np.ndarray:
    """The astronaut's face with hair and chin, as a square RGB patch, found by the detector."""
    image = _astronaut()
    faces = detector.detect(image)
    if not faces:
        raise ModelError(
            "the face detector finds no face in the astronaut test image; check it with `masknet doctor`"
        )
    x0, y0, x1, y1 = (float(v) for v in faces[0].box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # BlazeFace boxes stop at the brows and the lips; twice the box keeps the whole head
    half = max(x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    half = min(half, cx, cy, w - cx, h - cy)
    return image[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)].copy()


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A plain hallway: a lit wall gradient, a darker door frame, mild sensor noise."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    wall = 150 + 50 * (1 - y) - 25 * np.abs(x - 0.5)
    scene = np.repeat(wall[:, :, None], 3, axis=2) * np.array([1.0, 0.97, 0.9], np.float32)
    fx0, fx1 = int(width * 0.08), int(width * 0.92)
    scene[:, fx0 : fx0 + max(4, width // 60)] *= 0.55
    scene[:, fx1 - max(4, width // 60) : fx1] *= 0.55
    scene += rng.standard_normal(scene.shape, dtype=np.float32) * np.float32(3.0)
    return np.clip(scene, 0, 255).astype(np.uint8)


def face_layout(k: int, width: int, height: int) -> tuple[int, list[tuple[int, int]]]:
    """Side and top-left corners of ``k`` equal faces placed on a grid that fits the frame."""
    best: tuple[int, int, int] | None = None
    for cols in range(1, k + 1):
        rows = math.ceil(k / cols)
        side = int(min(FACE_HEIGHT_FRACTION * height, 0.85 * width / cols, 0.85 * height / rows))
        if best is None or side > best[0]:
            best = (side, cols, rows)
    assert best is not None
    side, cols, rows = best
    corners = []
    for i in range(k):
        r, c = divmod(i, cols)
        n_in_row = min(cols, k - r * cols)
        cx = width * (c + 0.5 + (cols - n_in_row) / 2) / cols
        cy = height * (r + 0.5) / rows
        corners.append((int(cx - side / 2), int(cy - side / 2)))
    return side, corners


class Scene:
    """Frames as the camera delivers them (``full`` for crops, ``image`` to detect on), rendered
    one at a time outside the timed region, so the scene costs no time and little memory."""

    def __init__(
        self,
        patch: np.ndarray,
        faces: int,
        size: tuple[int, int],
        lores: tuple[int, int] | None,
        seed: int = 0,
    ) -> None:
        import cv2

        self.faces = faces
        self.size = size
        self.lores = lores
        self.seed = seed
        width, height = size
        self.side, self.corners = face_layout(faces, width, height)
        self.face = cv2.resize(patch, (self.side, self.side), interpolation=cv2.INTER_AREA)
        self.background = _background(width, height, np.random.default_rng(seed))
        where = (
            f"detector on the {lores[0]}x{lores[1]} low-resolution stream"
            if lores
            else "detector on the full frame"
        )
        noun = "face" if faces == 1 else "faces"
        self.description = (
            f"generated {width}x{height} scene, {faces} {noun} of {self.side} px, {where}"
        )

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """One frame: the faces moved by a few pixels, as a person standing at a door moves."""
        import cv2

        width, height = self.size
        side = self.side
        full = self.background.copy()
        for x, y in self.corners:
            dx, dy = (int(v) for v in rng.integers(-6, 7, size=2))
            x = int(np.clip(x + dx, 0, width - side))
            y = int(np.clip(y + dy, 0, height - side))
            full[y : y + side, x : x + side] = self.face
        if self.lores is None:
            return full, None
        return cv2.resize(full, self.lores, interpolation=cv2.INTER_AREA), full

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        # the same seed for every run, so int8/float/thread runs see the same frame sequence
        rng = np.random.default_rng(self.seed)
        while True:
            yield self.render(rng)
