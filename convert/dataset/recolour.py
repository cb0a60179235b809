"""The paper's colour augmentation: find the light-blue surgical mask and give it another colour.

Most real masks in the data are light-blue surgical masks, so a model could learn "light blue
lower face = mask". Light-blue pixels are found in HSV inside the lower face only (sky, shirts and
walls stay as they are) and replaced by a dark, light, random solid colour or a fabric texture,
multiplied by the original brightness so folds and shadows survive.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge.detector import Face

from .recipe import RECOLOUR_STYLES

# OpenCV hue runs 0..180. Surgical-mask blue sits around 95..115; the band is widened for
# white balance drift, and the saturation floor keeps grey skin shadows out.
BLUE_HUE = (85, 128)
BLUE_MIN_SAT = 45
BLUE_MIN_VAL = 110  # light blue: navy and black masks stay out
# below this share of the lower face there is no surgical mask worth recolouring
MIN_MASK_FRACTION = 0.12
# and a worn mask covers the mouth: at least this share of a patch around the mouth keypoint
# must be blue, else the blue is a shirt, a shadow on a white mask or a mask under the chin
MIN_MOUTH_FRACTION = 0.5


def lower_face_region(shape: tuple[int, ...], face: Face) -> np.ndarray:
    """Boolean HxW map of where a worn mask can be: from just above the nose tip to below the chin.

    BlazeFace boxes end just under the lips, so the region reaches 40% of the box height below
    it. Uses the nose keypoint when present, else the box's middle.
    """
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in face.box)
    bw, bh = x1 - x0, y1 - y0
    kp = np.asarray(face.keypoints, dtype=np.float64)
    nose_y = float(kp[2, 1]) if kp.shape[0] > 2 and np.any(kp) else y0 + 0.55 * bh
    top = nose_y - 0.15 * bh
    bottom = y1 + 0.4 * bh
    left, right = x0 - 0.15 * bw, x1 + 0.15 * bw
    region = np.zeros((h, w), bool)
    r0, r1 = int(max(0, np.floor(top))), int(min(h, np.ceil(bottom)))
    c0, c1 = int(max(0, np.floor(left))), int(min(w, np.ceil(right)))
    if r1 > r0 and c1 > c0:
        region[r0:r1, c0:c1] = True
    return region


def blue_pixels(image: np.ndarray) -> np.ndarray:
    """Boolean HxW map of light-blue (surgical-mask) pixels of an RGB image."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (h >= BLUE_HUE[0]) & (h <= BLUE_HUE[1]) & (s >= BLUE_MIN_SAT) & (v >= BLUE_MIN_VAL)


def find_blue_mask(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The light-blue mask inside `region`.

    Hysteresis, as in edge detection: clearly blue pixels seed the mask, and paler or greyer
    blue pixels join when they touch a seed (highlights and shadowed folds of a surgical mask are
    barely saturated). Specks are removed and enclosed holes (print, folds, glare) filled, so
    the whole mask changes colour, not a patchwork of it.
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hue_ok = (h >= BLUE_HUE[0] - 5) & (h <= BLUE_HUE[1] + 5)
    seed = (blue_pixels(image) & region).astype(np.uint8)
    if not seed.any():
        return seed.astype(bool)
    weak = ((hue_ok & (s >= 20) & (v >= 80)) | seed.astype(bool)) & region
    side = max(3, int(round(0.012 * max(image.shape[:2]))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    weak = cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    seeded = np.unique(labels[(seed > 0) & (weak > 0)])
    blue = np.isin(labels, seeded[seeded > 0]).astype(np.uint8)
    blue = cv2.morphologyEx(blue, cv2.MORPH_CLOSE, kernel)
    # keep the large blobs only: a mask is one or two pieces (a strap can split it), not confetti
    n, labels, stats, _ = cv2.connectedComponentsWithStats(blue, connectivity=8)
    if n <= 1:
        return blue.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.nonzero(areas >= 0.15 * areas.max())[0]
    blue = np.isin(labels, keep).astype(np.uint8)
    contours, _ = cv2.findContours(blue, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(blue)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool) & region


def load_textures(folder: Path | None) -> list[np.ndarray]:
    """Every fabric texture (RGB uint8) under `folder`, sorted by path; [] when there is none."""
    if folder is None or not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def _hsv_colour(h: float, s: float, v: float) -> np.ndarray:
    """RGB 0..255 of hue, saturation, value in 0..1."""
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def pick_paint(
    style: str, shape: tuple[int, int], rng: np.random.Generator, textures: Sequence[np.ndarray]
) -> np.ndarray:
    """An HxWx3 float32 RGB layer (0..255) for `style`: one colour or a tiled, scaled texture."""
    h, w = shape
    if style == "pattern" and textures:
        tex = textures[int(rng.integers(len(textures)))]
        # a pattern repeat a few times across the mask, like printed fabric
        scale = float(rng.uniform(0.25, 0.6)) * max(h, w) / max(tex.shape[:2])
        tex = cv2.resize(tex, (max(4, int(tex.shape[1] * scale)), max(4, int(tex.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        reps = (h // tex.shape[0] + 2, w // tex.shape[1] + 2, 1)
        tiled = np.tile(tex, reps)
        oy, ox = int(rng.integers(tex.shape[0])), int(rng.integers(tex.shape[1]))
        return tiled[oy : oy + h, ox : ox + w].astype(np.float32)
    if style == "dark":
        colour = _hsv_colour(rng.uniform(0, 1), rng.uniform(0.0, 0.7), rng.uniform(0.08, 0.35))
    elif style == "light":
        colour = _hsv_colour(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.8, 1.0))
    else:  # random solid, or pattern without any textures
        colour = _hsv_colour(rng.uniform(0, 1), rng.uniform(0.3, 1.0), rng.uniform(0.35, 0.95))
    return np.broadcast_to(colour.astype(np.float32), (h, w, 3)).copy()


def repaint(
    image: np.ndarray, where: np.ndarray, paint: np.ndarray, feather: float = 1.2
) -> np.ndarray:
    """Replace the colour of `where` by `paint`, keeping the original's shading, with soft edges.

    Shading = the pixel's luminance over the median luminance of the region, so a fold that was
    20% darker than the rest of the mask stays 20% darker in the new colour.
    """
    img = image.astype(np.float32)
    lum = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ref = float(np.median(lum[where])) if where.any() else 1.0
    shade = np.clip(lum / max(ref, 1.0), 0.0, 1.6)[..., None]
    new = np.clip(paint * shade, 0, 255)
    alpha = where.astype(np.float32)
    if feather > 0:
        # blur spreads outward too; limit it to a 1-pixel rim so pixels away from the mask stay exact
        rim = cv2.dilate(where.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        alpha = np.where(rim, cv2.GaussianBlur(alpha, (0, 0), feather), 0.0).astype(np.float32)
        alpha[where] = np.maximum(alpha[where], 0.5)
    a = alpha[..., None]
    return np.clip(img * (1 - a) + new * a + 0.5, 0, 255).astype(np.uint8)


def recolour_face(
    image: np.ndarray,
    face: Face,
    rng: np.random.Generator,
    styles: Sequence[str] = RECOLOUR_STYLES,
    textures: Sequence[np.ndarray] = (),
    min_fraction: float = MIN_MASK_FRACTION,
) -> tuple[np.ndarray, str] | None:
    """A copy of `image` with the light-blue mask on `face` recoloured, and the style used.

    None when the lower face holds too little light blue (a black, white or patterned mask is
    left alone rather than painting skin). Only pixels inside the lower face can change.
    """
    region = lower_face_region(image.shape, face)
    area = int(region.sum())
    if area == 0:
        return None
    if (blue_pixels(image) & region).sum() < 0.5 * min_fraction * area:
        return None
    mask = find_blue_mask(image, region)
    if mask.sum() < min_fraction * area:
        return None
    kp = np.asarray(face.keypoints, dtype=np.float64)
    if kp.shape[0] > 3 and np.any(kp):
        r = max(2, int(0.08 * float(face.width)))
        mx, my = int(round(kp[3, 0])), int(round(kp[3, 1]))
        patch = mask[max(0, my - r) : my + r + 1, max(0, mx - r) : mx + r + 1]
        if patch.size == 0 or patch.mean() < MIN_MOUTH_FRACTION:
            return None
    style = str(styles[int(rng.integers(len(styles)))])
    if style == "pattern" and not textures:
        style = "random"
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    paint = np.zeros(image.shape, np.float32)
    paint[y0:y1, x0:x1] = pick_paint(style, (int(y1 - y0), int(x1 - x0)), rng, textures)
    out = repaint(image, mask, paint)
    # the soft rim may reach one pixel past the region; the promise is "lower face only"
    out[~region] = image[~region]
    return out, style


def recolour_template(
    rgba: np.ndarray, rng: np.random.Generator, styles: Sequence[str], textures: Sequence[np.ndarray]
) -> tuple[np.ndarray, str]:
    """Recolour a whole RGBA mask template (its opaque part), keeping its shading and alpha."""
    where = rgba[..., 3] > 127
    style = str(styles[int(rng.integers(len(styles)))])
    if style == "pattern" and not textures:
        style = "random"
    paint = pick_paint(style, rgba.shape[:2], rng, textures)
    rgb = repaint(np.ascontiguousarray(rgba[..., :3]), where, paint, feather=0)
    return np.dstack([rgb, rgba[..., 3]]), style
