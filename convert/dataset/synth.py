"""Synthetic wearing states: a mask template warped onto a real unmasked face by its landmarks.

This is how MaskedFace-Net / MaskTheFace made their data: a photo of a mask (RGBA) has six anchor
points in `masks.cfg` (a, b, c along its top edge with b on the nose, d, e, f along its bottom edge
with e under the chin); the same six points are found on the face from the 468-point mesh and a
homography carries the template over. The wearing state only moves where those six points go:

- `mask`: top edge on the nose bridge, bottom edge under the chin
- `mask_over_nose_mouth`: as `mask`, but the bottom edge between lower lip and chin (chin bare)
- `mask_over_mouth_chin`: top edge between nose tip and upper lip (nose bare)
- `mask_over_chin`: top edge under the lower lip (mouth and nose bare), hanging under the chin

Positions are measured along the face's own vertical axis (bridge top -> chin), so the mask
follows head roll; a left/right template is picked to match yaw.
"""

from __future__ import annotations

import configparser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ConfigError
from edge.face_mesh import (
    CHIN,
    FACE_OVAL,
    LOWER_LIP,
    NOSE_BRIDGE,
    NOSE_TIP,
    UPPER_LIP,
    Landmarks,
)

from .recipe import RECOLOUR_STYLES, WEARING_STATES
from .recolour import recolour_template

# Mesh points used here beyond those edge.face_mesh names.
BRIDGE_TOP = NOSE_BRIDGE[0]  # 168, between the eyes: origin of the face frame
BRIDGE_MID = NOSE_BRIDGE[2]  # 197, where a worn mask's top edge sits
SUBNASALE = 2  # where the nose meets the upper lip
LIP_TOP = UPPER_LIP[0]  # 0, outer top edge of the upper lip
LIP_BOTTOM = LOWER_LIP[1]  # 17, outer bottom edge of the lower lip
# Skin points away from any mask (forehead, upper cheeks, between the eyes) for brightness.
SKIN_POINTS: tuple[int, ...] = (10, 151, 50, 280, 168, 117, 346)
# The midline, top to bottom, for the nose/mouth position at any height.
MIDLINE: tuple[int, ...] = (168, 6, 197, 195, 4, 1, 2, 0, 13, 14, 17, 200, 199, 175, 152)

# Below about this depth (face frame units, chin = 1) the oval narrows to the chin point; a mask
# hanging there still spans the jaw, so widths are read no lower than this.
WIDTH_FLOOR = 0.8

# What each wearing state covers, checked on the mesh points under the drawn mask.
PARTS: dict[str, tuple[int, ...]] = {"nose": NOSE_TIP, "mouth": (*UPPER_LIP, *LOWER_LIP), "chin": (CHIN,)}
COVERS: dict[str, dict[str, bool]] = {
    "mask": {"nose": True, "mouth": True, "chin": True},
    "mask_over_nose_mouth": {"nose": True, "mouth": True, "chin": False},
    "mask_over_mouth_chin": {"nose": False, "mouth": True, "chin": True},
    "mask_over_chin": {"nose": False, "mouth": False, "chin": True},
}

ANCHOR_KEYS = ("mask_a", "mask_b", "mask_c", "mask_d", "mask_e", "mask_f")


@dataclass(frozen=True)
class Template:
    """One RGBA mask picture with its six anchors (a, b, c, d, e, f) in its own pixels."""

    name: str
    family: str  # name without _left/_right
    rgba: np.ndarray  # HxWx4 uint8, RGB order
    anchors: np.ndarray  # (6, 2) float32: a, b, c, d, e, f

    @property
    def levels(self) -> tuple[float, float]:
        """Depth of a/c and of d/f between b (0) and e (1), from this template's own anchors."""
        a, b, c, d, e, f = self.anchors
        span = max(1e-6, e[1] - b[1])
        return float(((a[1] + c[1]) / 2 - b[1]) / span), float(((d[1] + f[1]) / 2 - b[1]) / span)

    @property
    def nose_ratio(self) -> float:
        """Where the nose anchor b sits between a and c (0.5: frontal; < 0.5: nose on the image's left)."""
        a, b, c = self.anchors[0], self.anchors[1], self.anchors[2]
        return float((b[0] - a[0]) / max(1e-6, c[0] - a[0]))


def load_templates(folder: Path, families: Sequence[str] = ()) -> dict[str, list[Template]]:
    """Templates from a MaskTheFace `masks` folder (`masks.cfg`, `templates/*.png`), by family
    (`surgical` holds surgical, surgical_left, surgical_right); `families` empty: all of them.

    Sections without a template (MaskTheFace's `empty`, `inpaint`) are left out. Raises
    ConfigError naming the file when masks.cfg is missing or an anchor cannot be read.
    """
    cfg_path = folder / "masks.cfg"
    if not cfg_path.is_file():
        raise ConfigError(f"mask templates: {cfg_path} not found; set [synthetic] templates to MaskTheFace's masks folder")
    cfg = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), comment_prefixes=(";", "#"))
    try:
        cfg.read(cfg_path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"mask templates: {cfg_path} cannot be parsed ({exc.__class__.__name__})") from None
    wanted = set(families)
    out: dict[str, list[Template]] = {}
    for name in cfg.sections():
        section = cfg[name]
        if "template" not in section:
            continue
        family = name.removesuffix("_left").removesuffix("_right")
        if wanted and family not in wanted:
            continue
        png = folder / "templates" / Path(section["template"]).name
        rgba = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ConfigError(f"mask templates: {png} (section [{name}] of {cfg_path}) is missing or not an RGBA PNG")
        try:
            anchors = np.array(
                [[float(v) for v in section[k].split(",")] for k in ANCHOR_KEYS], np.float32
            )
        except (KeyError, ValueError):
            raise ConfigError(f"mask templates: section [{name}] of {cfg_path} needs {', '.join(ANCHOR_KEYS)} as 'x, y'") from None
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        out.setdefault(family, []).append(Template(name, family, rgba, anchors))
    missing = wanted - set(out)
    if families and missing:
        raise ConfigError(f"mask templates: {', '.join(sorted(missing))} not in {cfg_path}; known: {', '.join(sorted(out))}")
    if not out:
        raise ConfigError(f"mask templates: no usable [section] with template and anchors in {cfg_path}")
    for variants in out.values():
        variants.sort(key=lambda t: t.name)
    return out


class FaceFrame:
    """Coordinates along the face: origin between the eyes, u down to the chin (chin at u = 1),
    v across to the image's right, both in units of the bridge-to-chin distance."""

    def __init__(self, landmarks: Landmarks) -> None:
        pts = landmarks.points[:, :2].astype(np.float64)
        self.origin = pts[BRIDGE_TOP]
        down = pts[CHIN] - self.origin
        self.height = float(np.hypot(*down))
        if self.height < 4.0:
            raise ValueError("degenerate landmarks: chin and nose bridge coincide")
        self.u = down / self.height
        self.v = np.array([self.u[1], -self.u[0]])
        self.pts = self.to_face(pts)
        oval = self.pts[list(FACE_OVAL)]
        self.oval = np.vstack([oval, oval[:1]])
        mid = self.pts[list(MIDLINE)]
        order = np.argsort(mid[:, 1])
        self.mid_u, self.mid_v = mid[order, 1], mid[order, 0]

    def to_face(self, xy: np.ndarray) -> np.ndarray:
        d = np.asarray(xy, np.float64) - self.origin
        return np.stack([d @ self.v, d @ self.u], axis=-1) / self.height

    def to_image(self, vu: np.ndarray) -> np.ndarray:
        vu = np.asarray(vu, np.float64)
        return self.origin + self.height * (vu[..., :1] * self.v + vu[..., 1:2] * self.u)

    def level(self, index: int) -> float:
        return float(self.pts[index, 1])

    def midline(self, u: float) -> float:
        return float(np.interp(u, self.mid_u, self.mid_v))

    def extent(self, u: float) -> tuple[float, float]:
        """Leftmost and rightmost v of the face outline at depth u (clamped into the outline)."""
        u = float(np.clip(u, self.oval[:, 1].min() + 1e-3, min(WIDTH_FLOOR, self.oval[:, 1].max() - 1e-3)))
        a, b = self.oval[:-1], self.oval[1:]
        du = b[:, 1] - a[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (u - a[:, 1]) / du
        hit = (du != 0) & (t >= 0) & (t <= 1)
        if not hit.any():
            return float(self.oval[:, 0].min()), float(self.oval[:, 0].max())
        xs = a[hit, 0] + t[hit] * (b[hit, 0] - a[hit, 0])
        return float(xs.min()), float(xs.max())


def band(frame: FaceFrame, state: str, rng: np.random.Generator) -> tuple[float, float]:
    """Top (nose anchor b) and bottom (chin anchor e) depth of the mask for a wearing state."""
    bridge, sub, lip_top, lip_bottom = (frame.level(i) for i in (BRIDGE_MID, SUBNASALE, LIP_TOP, LIP_BOTTOM))
    nose_tip = max(frame.level(i) for i in NOSE_TIP)
    if state == "mask":
        return bridge + rng.uniform(-0.05, 0.03), 1.0 + rng.uniform(0.06, 0.12)
    if state == "mask_over_nose_mouth":
        return bridge + rng.uniform(-0.06, 0.02), lip_bottom + (1.0 - lip_bottom) * rng.uniform(0.3, 0.5)
    if state == "mask_over_mouth_chin":
        top = max(sub, nose_tip + 0.05) + max(0.0, lip_top - sub) * rng.uniform(0.15, 0.5)
        return top, 1.0 + rng.uniform(0.06, 0.14)
    if state == "mask_over_chin":
        return lip_bottom + (1.0 - lip_bottom) * rng.uniform(0.2, 0.4), 1.0 + rng.uniform(0.2, 0.35)
    raise ValueError(f"unknown wearing state {state!r}; expected one of {', '.join(WEARING_STATES)}")


def six_points(
    frame: FaceFrame, top: float, bottom: float, rng: np.random.Generator, levels: tuple[float, float] = (0.17, 0.67)
) -> np.ndarray:
    """The face's a, b, c, d, e, f (image pixels) for a mask spanning depths top..bottom.

    `levels`: where a/c and d/f sit between b and e on the template (surgical: 0.17, 0.67), so
    the template is not sheared when it is mapped.
    """
    span = bottom - top
    widen = rng.uniform(0.94, 1.08)
    shift = rng.uniform(-0.025, 0.025)
    pts = []
    for level, centre_u in ((top + levels[0] * span, top), (top + levels[1] * span, bottom)):
        left, right = frame.extent(level)
        mid = frame.midline(min(level, 1.0))
        # widen around the nose line, not the outline's centre, so a turned face keeps its nose on b
        left = mid + (left - mid) * widen
        right = mid + (right - mid) * widen
        centre = frame.midline(min(centre_u, 1.0)) + shift
        pts.append(((left, level), (centre, centre_u), (right, level)))
    (a, b, c), (d, e, f) = pts
    return frame.to_image(np.array([a, b, c, d, e, f], np.float64)).astype(np.float32)


def pick_variant(variants: Sequence[Template], frame: FaceFrame) -> Template:
    """The left / front / right template whose nose position matches the face's yaw best."""
    tip = frame.level(NOSE_TIP[0])
    left, right = frame.extent(tip)
    ratio = (frame.pts[NOSE_TIP[0], 0] - left) / max(1e-6, right - left)
    return min(variants, key=lambda t: abs(t.nose_ratio - ratio))


def _skin_tone(image: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """Mean RGB of small patches at forehead and upper-cheek landmarks."""
    h, w = image.shape[:2]
    r = max(1, int(0.04 * frame.height))
    patches = []
    for x, y in frame.to_image(frame.pts[list(SKIN_POINTS)]):
        xi, yi = int(round(x)), int(round(y))
        if r <= xi < w - r and r <= yi < h - r:
            patches.append(image[yi - r : yi + r + 1, xi - r : xi + r + 1].reshape(-1, 3))
    if not patches:
        return np.full(3, 160.0)
    return np.concatenate(patches).astype(np.float64).mean(axis=0)


def coverage(alpha: np.ndarray, points: np.ndarray) -> dict[str, float]:
    """Share of each part's mesh points (nose tip, lips, chin) under the mask (alpha > 0.5)."""
    h, w = alpha.shape[:2]
    out = {}
    for part, idx in PARTS.items():
        xy = np.round(points[list(idx), :2]).astype(int)
        inside = [alpha[y, x] > 0.5 if 0 <= x < w and 0 <= y < h else False for x, y in xy]
        out[part] = float(np.mean(inside))
    return out


def state_is_right(alpha: np.ndarray, points: np.ndarray, state: str) -> bool:
    """Whether the drawn mask covers exactly what `state` promises (all or none of each part)."""
    cov = coverage(alpha, points)
    return all(cov[p] == (1.0 if covered else 0.0) for p, covered in COVERS[state].items())


@dataclass
class Synthetic:
    image: np.ndarray  # RGB uint8, the photo with the mask drawn on
    alpha: np.ndarray  # HxW float32 0..1, where the mask now is
    state: str
    template: str
    style: str  # recolour style, or "original"


def draw_mask(
    image: np.ndarray,
    landmarks: Landmarks,
    state: str,
    templates: dict[str, list[Template]],
    rng: np.random.Generator,
    recolour_p: float = 0.5,
    styles: Sequence[str] = RECOLOUR_STYLES,
    textures: Sequence[np.ndarray] = (),
    family: str | None = None,
) -> Synthetic:
    """`image` with a mask template drawn on the face in the given wearing state."""
    frame = FaceFrame(landmarks)
    top, bottom = band(frame, state, rng)
    families = sorted(templates)
    fam = family if family is not None else families[int(rng.integers(len(families)))]
    tpl = pick_variant(templates[fam], frame)
    dst = six_points(frame, top, bottom, rng, tpl.levels)
    rgba, anchors = tpl.rgba, tpl.anchors.copy()
    # shrink the template near its final size first: one perspective warp from 600 px down to a
    # 60 px face aliases the mask's edges and folds into noise
    target_w = float(np.hypot(*(dst[2] - dst[0])))
    tpl_w = float(np.hypot(*(anchors[2] - anchors[0])))
    k = 1.5 * target_w / max(tpl_w, 1.0)
    if k < 1.0:
        size = (max(8, int(rgba.shape[1] * k)), max(8, int(rgba.shape[0] * k)))
        rgba = cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)
        anchors = anchors * np.array([size[0] / tpl.rgba.shape[1], size[1] / tpl.rgba.shape[0]], np.float32)
    style = "original"
    if recolour_p > 0 and rng.random() < recolour_p:
        rgba, style = recolour_template(rgba, rng, styles, textures)
    hmat, _ = cv2.findHomography(anchors, dst, 0)
    if hmat is None:
        raise ValueError("could not fit the template to the face (degenerate anchor points)")
    h, w = image.shape[:2]
    warped = cv2.warpPerspective(rgba, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3].astype(np.float32) / 255.0
    # a printed cut-out has a razor edge no camera produces; soften it a little
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.6, 0.006 * frame.height))
    rgb = warped[..., :3].astype(np.float32)
    # light the mask like the face: same brightness and a hint of the photo's colour cast
    skin = _skin_tone(image, frame)
    grey = float(skin.mean())
    gain = float(np.clip(grey / 165.0, 0.35, 1.2)) ** 0.8
    cast = 1.0 + 0.3 * (skin / max(grey, 1.0) - 1.0)
    rgb = np.clip(rgb * gain * cast, 0, 255)
    a = alpha[..., None]
    out = np.clip(image.astype(np.float32) * (1 - a) + rgb * a + 0.5, 0, 255).astype(np.uint8)
    return Synthetic(out, alpha, state, tpl.name, style)
