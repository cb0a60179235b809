"""``masknet detect --bench``: which faces each detector finds, by face size, and what it costs.

Faces of a known width are pasted into 1280x720 background frames at several positions and run
through the detector as the door runs it (with the Pi camera: the low-resolution stream for the
whole view, the full frame for far-pass tiles). Reported per detector variant:

* recall by face width: a pasted face counts as found when a detection overlaps its box with
  IoU >= 0.3 (the issue's measure);
* false faces per face-free frame, on the same backgrounds without a face;
* detector time per frame on this machine (far pass averaged over its cycle) and model runs
  per frame (views and re-looks).

Faces: scikit-image's astronaut, plus photos from ``../shared/data`` when present (unmasked
UTKFace crops and real masked faces); no photo there has a face box, so each face's box is
BlazeFace short-range's at the photo's own size, and the photo is scaled so that this box has the
wanted width. A face the reference detector does not find at full size is left out (this
measures range, not the detector's misses at close range). Backgrounds hold no human face:
scikit-image's photos without people (coffee, rocket, motorcycles, brick, grass, gravel),
mosaics of them at their own resolution, and generated door scenes (wall, door frame, floor,
light and sensor noise).

With ``far_every`` N > 1 each far-pass tile runs on one frame in N: recall and false faces are
measured with every tile (what N frames see together; a person stays in view for many frames),
time per frame over the cycle.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.cli_io import emit_report, parse_number_list
from edge.config import Config
from edge.errors import ConfigError, MasknetError
from edge.paths import repo_root

FRAME = (1280, 720)
DEFAULT_SIZES = "24,32,48,64,96,128,160,240,320"
# face centres as fractions of the frame: left, centre and right, at two heights
POSITIONS = ((0.2, 0.35), (0.5, 0.35), (0.8, 0.35), (0.2, 0.65), (0.5, 0.65), (0.8, 0.65))
MATCH_IOU = 0.3
BACKGROUND_PHOTOS = ("coffee", "rocket", "stereo_motorcycle", "brick", "grass", "gravel")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("recall benchmark (--bench)")
    g.add_argument("--bench", action="store_true", help="run the recall-by-face-size benchmark instead of detecting")
    g.add_argument("--face-sizes", default=DEFAULT_SIZES, metavar="LIST", help=f"face widths in 1280x720 pixels (default {DEFAULT_SIZES})")
    g.add_argument("--far-tile", metavar="LIST", help="also try the configured detector with these detector.far_tile values (0 = no far pass)")
    g.add_argument("--data", metavar="DIR", help="shared data folder for real face photos (default ../shared/data when present)")
    g.add_argument("--photos", type=int, default=12, metavar="N", help="real face photos per group (unmasked, masked) from --data (default 12)")
    g.add_argument("--backgrounds", type=int, default=60, metavar="N", help="face-free background frames (default 60)")
    g.add_argument("--holdout", action="store_true",
                   help="other photos (those halfway between the default's) and other background frames: "
                        "checks settings that were chosen on the default's")
    g.add_argument("--single-stream", action="store_true", help="detect on the full frame (webcam, folder, video) instead of the Pi camera's low-resolution stream")
    g.add_argument("--markdown", action="store_true", help="print the table as markdown")
    g.add_argument("--frame-time", type=int, default=0, metavar="N",
                   help="also time the whole door pipeline (detector, classifiers, tracker) over N frames with one face, "
                        "today's configuration against short-range without far pass")


@dataclass(frozen=True)
class FaceSample:
    name: str
    group: str  # "astronaut", "unmasked", "masked"
    image: np.ndarray  # RGB
    box: np.ndarray  # reference face box in the image's pixels


@dataclass(frozen=True)
class Variant:
    label: str
    overrides: dict[str, Any]


# -- faces --------------------------------------------------------------------------------------


def _reference_box(detector: Any, image: np.ndarray) -> np.ndarray | None:
    """The best face's box in ``image``, or None.

    Tried on the photo as it is and padded by reflection (a tight crop's face is then not at the
    edge); a box reaching into the reflection is a reflected twin and does not count.
    """
    h, w = image.shape[:2]
    best: tuple[float, np.ndarray] | None = None
    for p in (0, max(h, w) // 4):
        padded = cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REFLECT) if p else image
        for f in detector.detect(padded):
            box = f.box.astype(np.float64) - p
            inside = box[0] >= -0.1 * w and box[1] >= -0.1 * h and box[2] <= 1.1 * w and box[3] <= 1.1 * h
            if f.score >= 0.6 and inside and (best is None or f.score > best[0]):
                best = (f.score, box)
    return None if best is None else best[1]


def photo_groups(data: Path) -> dict[str, list[Path]]:
    """The shared data's face photos the benchmark draws from, by group, sorted by name."""
    return {
        "unmasked": sorted((data / "real" / "no_mask_diverse").glob("utk_*.jpg")),
        "masked": sorted((data / "real" / "mask").glob("cdeb_*.jpg")),
    }


def face_samples(data: Path | None, per_group: int, holdout: bool = False) -> tuple[list[FaceSample], int]:
    """The astronaut and up to ``per_group`` photos per group from ``data``; and how many were left out.

    ``holdout``: the photos halfway between the default's evenly spread ones, so no photo is in both.
    """
    import skimage.data

    from edge.detector import create_detector

    reference = create_detector("blazeface_short", score_threshold=0.5)
    samples: list[FaceSample] = []
    astro = skimage.data.astronaut()
    box = _reference_box(reference, astro)
    if box is None:  # pragma: no cover - the astronaut's face is found at any threshold
        raise MasknetError("the reference detector found no face in skimage's astronaut: check models/")
    samples.append(FaceSample("astronaut", "astronaut", astro, box))
    skipped = 0
    if data is not None:
        for group, files in photo_groups(data).items():
            if not files:
                continue
            # evenly spread over the sorted names (UTKFace names sort by age; cdeb by source)
            step = max(1, len(files) // (per_group * 3))
            taken = 0
            for path in files[(step // 2 if holdout else 0) :: step]:
                if taken >= per_group:
                    break
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if bgr is None:
                    continue
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                box = _reference_box(reference, rgb)
                if box is None or box[2] - box[0] < 60:
                    skipped += 1
                    continue
                samples.append(FaceSample(path.name, group, rgb, box))
                taken += 1
    return samples, skipped


def paste_face(frame: np.ndarray, sample: FaceSample, width: int, centre: tuple[float, float]) -> np.ndarray:
    """Paste ``sample`` into ``frame`` (in place) so its face box is ``width`` px wide at ``centre``.

    The face and some of its surroundings (1.6 x the box) are blended in with a soft edge, so no
    hard rectangle is left for the detector to key on. Returns the face box in frame pixels.
    """
    s = width / float(sample.box[2] - sample.box[0])
    img = cv2.resize(sample.image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    b = sample.box * s
    bw, bh = b[2] - b[0], b[3] - b[1]
    fcx, fcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    x0, x1 = int(max(0, fcx - 0.8 * bw)), int(min(img.shape[1], fcx + 0.8 * bw))
    y0, y1 = int(max(0, fcy - 0.8 * bh)), int(min(img.shape[0], fcy + 0.8 * bh))
    patch = img[y0:y1, x0:x1].astype(np.float32)
    H, W = frame.shape[:2]
    ox = int(round(centre[0] * W - (fcx - x0)))
    oy = int(round(centre[1] * H - (fcy - y0)))
    # keep the patch inside the frame
    ox = min(max(ox, 0), W - patch.shape[1])
    oy = min(max(oy, 0), H - patch.shape[0])
    ph, pw = patch.shape[:2]
    yy, xx = np.mgrid[0:ph, 0:pw]
    edge = np.minimum.reduce([xx, yy, pw - 1 - xx, ph - 1 - yy]).astype(np.float32)
    alpha = np.clip(edge / max(2.0, 0.12 * min(pw, ph)), 0, 1)[..., None]
    region = frame[oy : oy + ph, ox : ox + pw].astype(np.float32)
    frame[oy : oy + ph, ox : ox + pw] = (alpha * patch + (1 - alpha) * region).astype(np.uint8)
    return np.array([b[0] - x0 + ox, b[1] - y0 + oy, b[2] - x0 + ox, b[3] - y0 + oy], np.float64)


# -- backgrounds ------------------------------------------------------------------------------


def _cover(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``image`` scaled to cover ``size`` (w, h) and cut at a random place."""
    w, h = size
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    s = max(w / image.shape[1], h / image.shape[0]) * rng.uniform(1.0, 1.3)
    big = cv2.resize(image, (math.ceil(image.shape[1] * s), math.ceil(image.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
    x = int(rng.integers(0, big.shape[1] - w + 1))
    y = int(rng.integers(0, big.shape[0] - h + 1))
    return np.ascontiguousarray(big[y : y + h, x : x + w])


def door_scene(rng: np.random.Generator, size: tuple[int, int] = FRAME) -> np.ndarray:
    """A generated door view: lit wall, a door frame and door, floor, a light fall-off and noise."""
    w, h = size
    wall = rng.uniform(90, 200, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = wall
    floor_y = int(h * rng.uniform(0.7, 0.85))
    img[floor_y:] = rng.uniform(40, 120, 3)
    dx0 = int(w * rng.uniform(0.3, 0.45))
    dx1 = dx0 + int(w * rng.uniform(0.2, 0.3))
    dy0 = int(h * rng.uniform(0.05, 0.2))
    img[dy0:floor_y, dx0 - 12 : dx1 + 12] = rng.uniform(30, 230, 3)  # frame
    img[dy0 + 12 : floor_y, dx0:dx1] = rng.uniform(20, 240, 3)  # door or the room behind
    hx = dx1 - 30
    img[(dy0 + floor_y) // 2 : (dy0 + floor_y) // 2 + 10, hx - 25 : hx] = 200  # handle
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.0, 0.4) * h
    light = 1.15 - 0.5 * np.sqrt(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)
    img *= light[..., None]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def backgrounds(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` face-free 1280x720 frames: photos, photo mosaics and generated door scenes, in turn."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos: list[np.ndarray] = []
    for name in BACKGROUND_PHOTOS:
        got = getattr(skimage.data, name)()
        # stereo_motorcycle is (left, right, disparity): two photos
        photos += list(got[:2]) if isinstance(got, tuple) else [got]
    out: list[np.ndarray] = []
    w, h = FRAME
    for i in range(count):
        kind = i % 3
        if kind == 0:
            frame = _cover(photos[(i // 3) % len(photos)], FRAME, rng)
        elif kind == 1:
            # four photos at about their own resolution: real edges and textures at the scale of far faces
            frame = np.empty((h, w, 3), np.uint8)
            picks = rng.choice(len(photos), 4, replace=False)
            for j, p in enumerate(picks):
                y, x = (j // 2) * (h // 2), (j % 2) * (w // 2)
                frame[y : y + h // 2, x : x + w // 2] = _cover(photos[p], (w // 2, h // 2), rng)
        else:
            frame = door_scene(rng)
        if rng.random() < 0.5:
            frame = np.ascontiguousarray(frame[:, ::-1])
        out.append(frame)
    return out


# -- measuring --------------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _Views:
    """What the camera hands the detector for a 1280x720 frame: (image, full)."""

    def __init__(self, lores: tuple[int, int] | None) -> None:
        self.lores = lores

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
        if self.lores is None:
            return frame, None, 1.0
        # the ISP scales the whole sensor image down; INTER_AREA is the closest resampling here
        small = cv2.resize(frame, self.lores, interpolation=cv2.INTER_AREA)
        return small, frame, self.lores[0] / frame.shape[1]


def measure_variant(
    detector: Any, faces: list[FaceSample], sizes: list[int], bgs: list[np.ndarray], views: _Views
) -> dict[str, Any]:
    found: dict[int, list[int]] = {s: [] for s in sizes}
    by_group: dict[str, dict[int, list[int]]] = {}
    detect_s = 0.0
    n_detect = 0
    k = 0
    for size in sizes:
        for sample in faces:
            for pos in POSITIONS:
                frame = bgs[k % len(bgs)].copy()
                k += 1
                truth = paste_face(frame, sample, size, pos)
                image, full, scale = views(frame)
                t = time.perf_counter()
                dets = detector.detect_all(image, full)
                detect_s += time.perf_counter() - t
                n_detect += 1
                hit = int(any(_iou(d.box / scale, truth) >= MATCH_IOU for d in dets))
                found[size].append(hit)
                by_group.setdefault(sample.group, {s: [] for s in sizes})[size].append(hit)
    false_faces = 0
    for bg in bgs:
        image, full, _ = views(bg)
        false_faces += len(detector.detect_all(image, full))
    # time per frame over the far-pass cycle, on the face frames in order
    detector.reset()
    cycle = max(1, detector.far_every) * 8
    frames = []
    for i in range(cycle):
        frame = bgs[i % len(bgs)].copy()
        paste_face(frame, faces[i % len(faces)], sizes[i % len(sizes)], POSITIONS[i % len(POSITIONS)])
        frames.append(views(frame))
    for image, full, _ in frames[:2]:  # warm-up
        detector.detect(image, full)
    detector.reset()
    invokes = -detector.relooks
    t = time.perf_counter()
    for image, full, _ in frames:
        prepared = detector.preprocess(image, full)
        invokes += len(prepared.prepared)
        detector.postprocess(detector.invoke(prepared), prepared)
    per_frame_ms = (time.perf_counter() - t) * 1000 / len(frames)
    invokes += detector.relooks
    return {
        "recall": {str(s): float(np.mean(v)) for s, v in found.items()},
        "trials": {str(s): len(v) for s, v in found.items()},
        "recall_by_group": {g: {str(s): float(np.mean(v)) for s, v in d.items()} for g, d in by_group.items()},
        "false_faces_per_frame": false_faces / len(bgs),
        "face_free_frames": len(bgs),
        "detector_ms_per_frame": per_frame_ms,
        "invokes_per_frame": invokes / len(frames),
        "detect_ms_with_far_pass": detect_s * 1000 / max(1, n_detect),
    }


# today's detector before the far pass: short-range on the whole low-resolution stream
BEFORE = {"detector.name": "blazeface_short", "detector.far_tile": 0.0, "detector.verify_threshold": 0.0}
DETECTOR_STAGES = ("detector_preprocess", "detector_invoke", "decode_nms")


def frame_time(cfg: Config, views: _Views, face: FaceSample, width: int, frames: int, warmup: int = 10) -> dict[str, Any]:
    """The door's whole pipeline (detector, cascade, tracker) on ``frames`` frames with one face of
    ``width`` px: mean frame time, the detector's part of it (its three stages, re-look included)."""
    from edge.pipeline import build_pipeline
    from edge.sources import Frame
    from edge.timing import StageTimer

    timer = StageTimer()
    pipeline = build_pipeline(cfg, None, None, timer=timer)
    frame = door_scene(np.random.default_rng(1))
    # centred a little above the middle, where a face at the door is
    paste_face(frame, face, width, (0.5, 0.4))
    image, full, _ = views(frame)
    found = 0
    total_ns = 0
    for i in range(warmup + frames):
        if i == warmup:
            timer.reset()
            total_ns = 0
        t = time.perf_counter_ns()
        results = pipeline.process(Frame(image=image, full=full, timestamp=i / 15.0, number=i + 1))
        total_ns += time.perf_counter_ns() - t
        found += bool(results) and i >= warmup
    stats = timer.summary()
    frame_ms = total_ns / 1e6 / frames
    detector_ms = sum(stats[s].total_ms for s in DETECTOR_STAGES if s in stats) / frames
    return {
        "detector": cfg.detector.name,
        "far_tile": cfg.detector.far_tile,
        "verify_threshold": cfg.detector.verify_threshold,
        "relook": cfg.detector.relook,
        "face_px": width,
        "frames": frames,
        "frames_with_the_face": found,
        "frame_ms": frame_ms,
        "detector_ms": detector_ms,
        "detector_share": detector_ms / frame_ms if frame_ms > 0 else 0.0,
    }


def _variants(args: argparse.Namespace, cfg: Config) -> list[Variant]:
    from edge.detector import DETECTORS

    names = args.detector or sorted(DETECTORS)
    for n in names:
        if n not in DETECTORS:
            raise ConfigError(f"--detector {n!r}: unknown; known detectors: {', '.join(sorted(DETECTORS))}")
    # each model alone, as the door ran short-range before the far pass: no tiles, no re-look
    out = [Variant(f"{n}, whole frame", {"name": n, "far_tile": 0.0, "verify_threshold": 0.0}) for n in names]
    d = cfg.detector
    relook = f"re-look {d.relook} {d.verify_threshold}" if d.verify_threshold > 0 else "no re-look"
    out.append(Variant(f"config: {d.name}, far_tile {d.far_tile}, every {d.far_every}, {relook}", {}))
    for tile in parse_number_list(args.far_tile, "--far-tile", float, 0.0, 1.0) if args.far_tile else []:
        out.append(Variant(f"{d.name}, far_tile {tile}, every {d.far_every}, {relook}", {"far_tile": tile}))
    return out


def run_bench(args: argparse.Namespace, cfg: Config) -> int:
    from edge.regions import detector_from_config

    sizes = parse_number_list(args.face_sizes, "--face-sizes", int, 8, 700, " pixels")
    if args.photos < 0:
        raise ConfigError(f"--photos must be 0 or more, got {args.photos}")
    data = Path(args.data).expanduser() if args.data else repo_root().parent / "shared" / "data"
    if args.data and not data.is_dir():
        raise ConfigError(f"--data {data}: no such folder")
    if args.holdout and args.photos and data.is_dir():
        # with fewer than 2 photos between the default's picks, "halfway between" would be them again
        for group, files in photo_groups(data).items():
            if len(files) < 6 * args.photos:
                folder = files[0].parent if files else data / "real"
                raise ConfigError(f"--holdout needs at least {6 * args.photos} {group} photos, "
                                  f"{folder} has {len(files)}; use a smaller --photos")
    faces, skipped = face_samples(data if data.is_dir() else None, args.photos, args.holdout)
    if args.backgrounds < 1:
        raise ConfigError(f"--backgrounds must be at least 1, got {args.backgrounds}")
    bgs = backgrounds(args.backgrounds, seed=1 if args.holdout else 0)
    lores = None if args.single_stream else (cfg.camera.lores_width, cfg.camera.lores_height)
    views = _Views(lores)
    rows = []
    for v in _variants(args, cfg):
        detector = detector_from_config(cfg, **v.overrides)
        result = measure_variant(detector, faces, sizes, bgs, views)
        result["variant"] = v.label
        result["views"] = detector.describe(views(bgs[0])[0].shape, None if lores is None else (FRAME[1], FRAME[0], 3))
        rows.append(result)
    timing = []
    if args.frame_time:
        from edge.config import load_config

        before = load_config(args.config, {**BEFORE, **({"runtime.threads": cfg.runtime.threads})})
        for label, c in (("before", before), ("after", cfg)):
            for width in (320, 64):
                timing.append({"config": label, **frame_time(c, views, faces[0], width, args.frame_time)})
    groups: dict[str, int] = {}
    for f in faces:
        groups[f.group] = groups.get(f.group, 0) + 1
    report = {
        "frame": list(FRAME),
        "detection_stream": "full frame" if lores is None else f"{lores[0]}x{lores[1]} low-resolution stream (far-pass tiles from the full frame)",
        "faces": groups,
        "faces_left_out": skipped,
        "holdout": args.holdout,
        "positions": [list(p) for p in POSITIONS],
        "face_free_frames": len(bgs),
        "match_iou": MATCH_IOU,
        "score_threshold": cfg.detector.score_threshold,
        "threads": cfg.runtime.threads,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
        "frame_time": timing,
    }
    emit_report(report, lambda: render(report, sizes, args.markdown), args.json)
    return 0


def render(report: dict[str, Any], sizes: list[int], markdown: bool = True) -> str:
    faces = ", ".join(f"{n} {g}" for g, n in report["faces"].items())
    lines = [
        f"faces: {faces} ({report['faces_left_out']} photos left out: no reference face), "
        f"{len(report['positions'])} positions, {report['face_free_frames']} face-free frames; "
        f"detector on the {report['detection_stream']}; found = IoU >= {report['match_iou']}; "
        f"score threshold {report['score_threshold']}, {report['threads']} threads"
        + ("; held-out photos and backgrounds (--holdout)" if report.get("holdout") else ""),
        "",
    ]
    head = ["detector", *[f"{s} px" for s in sizes], "false/frame", "ms/frame", "invokes"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|" * (len(head) - 1))
    for r in report["rows"]:
        cells = [r["variant"], *[f"{r['recall'][str(s)]:.2f}" for s in sizes],
                 f"{r['false_faces_per_frame']:.3f}", f"{r['detector_ms_per_frame']:.1f}", f"{r['invokes_per_frame']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in report["rows"]:
        groups = "; ".join(
            f"{g}: " + " ".join(f"{v:.2f}" for v in d.values()) for g, d in r["recall_by_group"].items()
        )
        lines.append(f"- {r['variant']}: {r['views']}; by group ({', '.join(str(s) for s in sizes)} px) {groups}")
    if report.get("frame_time"):
        lines += ["", "| pipeline | face px | frames with the face | frame ms | detector ms | detector share |", "|---|---:|---:|---:|---:|---:|"]
        for t in report["frame_time"]:
            lines.append(
                f"| {t['config']}: {t['detector']}, far_tile {t['far_tile']}, re-look {t['relook']} {t['verify_threshold']} | {t['face_px']} | "
                f"{t['frames_with_the_face']}/{t['frames']} | {t['frame_ms']:.2f} | {t['detector_ms']:.2f} | {t['detector_share']:.0%} |"
            )
    text = "\n".join(lines)
    return text if markdown else text.replace("|---|", "").replace("---:|", "")
