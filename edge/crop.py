"""THE face crop: the same pixels go into training (convert/) and into the classifiers at the door.

Any change here changes what the models were trained on, so it is deliberately small and
deterministic: a square around the detector box, widened by a margin, optionally rolled so the
eyes are level, cut out with one affine warp.

Its parameters are a contract, ``CropSpec(size, margin, align)``: the data set build records it
in ``dataset.json``, training copies it into the run's ``summary.json``, ``masknet export``
writes it into ``models/manifest.json``, and the door, ``masknet evaluate`` and ``masknet bench``
take it from the manifest. Nothing else picks crop parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Side of the crop = longest side of the detector box * (1 + CROP_MARGIN). BlazeFace boxes stop at
# the brows and just below the lips; 0.25 brings the chin, the forehead and the cheeks (where a
# mask's edges sit) into the crop without adding much background.
CROP_MARGIN = 0.25
# Side of the square crop before it is resized to a model's input (the training crop).
CROP_SIZE = 224

# Downscaling by more than this with one bilinear warp aliases (sparkly edges on high-resolution
# training photos that the low-resolution door camera never produces), so the warp then renders
# larger and INTER_AREA shrinks it.
_MAX_SUPERSAMPLE = 4


def _roll(keypoints: np.ndarray) -> float:
    """Angle (radians, image y down) of the line between the first two keypoints (the eyes)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    dx, dy = kp[1] - kp[0]
    # Either eye order (mirrored camera or not) must give a small roll, never a flip by 180 degrees.
    if dx < 0:
        dx, dy = -dx, -dy
    return math.atan2(dy, dx)


def crop_matrix(
    box: tuple[float, float, float, float] | np.ndarray,
    size: int,
    margin: float = CROP_MARGIN,
    roll: float = 0.0,
) -> np.ndarray:
    """The 2x3 affine matrix from image pixel indices to crop pixel indices.

    Box coordinates are continuous (pixel i covers [i, i+1)), so the half-pixel shifts keep a box
    of integers mapping exactly onto whole pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    if not side > 0:
        raise ValueError(f"empty face box {tuple(box)}")
    s = size / side
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    c, sn = math.cos(roll), math.sin(roll)
    # dst = s * R(-roll) @ (src + 0.5 - centre) + size/2 - 0.5
    a = np.array([[c, sn], [-sn, c]]) * s
    t = a @ np.array([0.5 - cx, 0.5 - cy]) + (size / 2.0 - 0.5)
    return np.hstack([a, t[:, None]]).astype(np.float64)


def crop_face(
    image: np.ndarray,
    box: tuple[float, float, float, float] | np.ndarray,
    size: int = CROP_SIZE,
    margin: float = CROP_MARGIN,
    keypoints: np.ndarray | None = None,
    align: bool = False,
) -> np.ndarray:
    """Square ``size`` x ``size`` RGB uint8 crop centred on ``box`` (x0, y0, x1, y1 pixels).

    Side = max(box width, box height) * (1 + margin). Parts outside the image repeat the border
    pixels (a face at the frame edge still gives a plausible crop). With ``align`` the crop is
    rotated about the box centre so the line between ``keypoints[0]`` and ``keypoints[1]`` (the
    eyes, as the detector returns them) is horizontal.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    roll = 0.0
    if align:
        if keypoints is None or len(keypoints) < 2:
            raise ValueError("align=True needs the eye keypoints")
        roll = _roll(keypoints)
    m = crop_matrix(box, size, margin, roll)
    scale = math.hypot(m[0, 0], m[0, 1])
    k = min(_MAX_SUPERSAMPLE, int(1.0 / scale)) if scale < 0.5 else 1
    if k > 1:
        big = k * size
        mk = crop_matrix(box, big, margin, roll)
        out = cv2.warpAffine(image, mk, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class CropSpec:
    """How faces were cut for training, and so how the door must cut them.

    The defaults are the crop of every model exported before the crop was recorded (manifest
    versions 1 and 2, data sets without ``dataset.json``).
    """

    size: int = CROP_SIZE
    margin: float = CROP_MARGIN
    align: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 32 <= self.size <= 1024:
            raise ValueError(f"crop size must be a whole number of pixels between 32 and 1024, not {self.size!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not 0 <= self.margin <= 4:
            raise ValueError(f"crop margin must be a number between 0 and 4, not {self.margin!r}")
        if not isinstance(self.align, bool):
            raise ValueError(f"crop align must be true or false, not {self.align!r}")
        object.__setattr__(self, "margin", float(self.margin))

    def cut(
        self,
        image: np.ndarray,
        box: tuple[float, float, float, float] | np.ndarray,
        keypoints: np.ndarray | None = None,
    ) -> np.ndarray:
        """The crop of the face at ``box`` (``keypoints``: the detector's, needed with align)."""
        return crop_face(image, box, self.size, self.margin, keypoints=keypoints, align=self.align)

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "margin": self.margin, "align": self.align}

    @classmethod
    def from_json(cls, obj: Any) -> CropSpec:
        """Read ``{"size": .., "margin": .., "align": ..}``; ValueError says what is wrong."""
        if not isinstance(obj, dict) or not {"size", "margin", "align"} <= set(obj):
            raise ValueError(f"crop must be an object with size, margin and align, got {obj!r}")
        return cls(size=obj["size"], margin=obj["margin"], align=obj["align"])

    def describe(self) -> str:
        return f"size {self.size}, margin {self.margin:g}, align {str(self.align).lower()}"


def to_model_input(crop: np.ndarray, input_size: int | tuple[int, int]) -> np.ndarray:
    """Resize a crop to a classifier's input (``int`` or ``(height, width)``), uint8 RGB."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    if crop.shape[:2] == (h, w):
        return np.ascontiguousarray(crop, dtype=np.uint8)
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA).astype(np.uint8, copy=False)


def pad_image(image: np.ndarray, ratio: float = 0.5, value: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """Surround ``image`` by ``ratio`` * its longest side on every side.

    Face detectors miss faces that fill the whole frame (tight face crops in data sets). Returns
    the padded image and the ``(dx, dy)`` offset of the original inside it: subtract it from
    coordinates found in the padded image.
    """
    h, w = image.shape[:2]
    pad = int(round(ratio * max(h, w)))
    if pad <= 0:
        return image, (0, 0)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(value,) * 3)
    return padded, (pad, pad)
