"""``masknet detect``: the door's face detector alone, on an image, a folder, a video or a camera.

One JSON line per image or frame: ``{"file", "frame", "width", "height", "faces": [{"box",
"score", "keypoints"}]}`` with boxes and keypoints in the pixels of the image as stored (the Pi
camera's main stream for ``picamera``). The detector is built and fed exactly as ``masknet run``
builds and feeds it (same config, region of interest, far pass and streams). ``--draw DIR``
saves every frame with its boxes, the region of interest and the far-pass tiles, for aiming the
camera. ``--bench`` runs the recall-by-face-size benchmark instead (bench.py in this package).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge.config import load_config
from edge.errors import ConfigError, MasknetError, SourceError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", metavar="IMAGE|FOLDER|VIDEO",
                        help="an image, a folder of images, a video file, or any `masknet run --source` value")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: the documented defaults)")
    parser.add_argument("--detector", metavar="NAME", action="append",
                        help="detector from the registry instead of detector.name (--bench: repeat to compare)")
    parser.add_argument("--json", metavar="FILE", help="write the JSON lines (--bench: the table as JSON) to FILE; '-' = stdout")
    parser.add_argument("--draw", metavar="DIR", help="save each frame with its boxes as DIR/<name>.jpg")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--threads", type=int, metavar="N", help="interpreter threads")
    from edge.commands.detect.bench import add_bench_arguments

    add_bench_arguments(parser)


def _frames(spec: str, cfg: Any) -> Iterator[tuple[Any, str]]:
    """(Frame, file name) for every image or frame of the input, read as `masknet run` reads it."""
    from edge.reopening import ReopeningSource
    from edge.sources import IMAGE_SUFFIXES, Frame, make_source

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(f"{path}: not a readable image")
        yield Frame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), timestamp=0.0, number=1, name=path.name), path.name
        return
    source = ReopeningSource(make_source(spec, cfg.camera), max_failures=cfg.camera.max_failures,
                             backoff_s=cfg.camera.reopen_backoff_s, backoff_max_s=cfg.camera.reopen_backoff_max_s)
    source.open()
    try:
        while (frame := source.read()) is not None:
            yield frame, frame.name or (path.name if path.is_file() else source.description)
    finally:
        source.close()


def face_record(face: Any, sx: float, sy: float) -> dict[str, Any]:
    box = face.box * np.array([sx, sy, sx, sy], np.float32)
    kps = face.keypoints * np.array([sx, sy], np.float32)
    return {
        "box": [round(float(v), 1) for v in box],
        "score": round(float(face.score), 4),
        "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in kps],
    }


def draw(image: np.ndarray, records: list[dict[str, Any]], regions: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]) -> np.ndarray:
    """A BGR copy of an RGB frame with the regions (thin) and the faces (thick, with the score)."""
    import cv2

    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    for (x0, y0, x1, y1), colour in regions:
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, 1)
    for r in records:
        x0, y0, x1, y1 = (round(v) for v in r["box"])
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 255, 0), 2)
        cv2.putText(out, f"{r['score']:.2f} {x1 - x0}px", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0), 1)
    return out


def _open_output(name: str) -> IO[str]:
    if name == "-":
        return sys.stdout
    try:
        return open(name, "w", encoding="utf-8")
    except OSError as exc:
        raise MasknetError(f"--json {name}: cannot write ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    overrides = {"runtime.threads": args.threads} if args.threads is not None else {}
    cfg = load_config(args.config, overrides)
    if args.bench:
        from edge.commands.detect.bench import run_bench

        return run_bench(args, cfg)
    if args.input is None:
        raise ConfigError("give an image, a folder or a video to detect faces in (or --bench)")
    if args.detector and len(args.detector) > 1:
        raise ConfigError("--detector: give one detector (several are compared only with --bench)")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    from edge.regions import detector_from_config

    detector = detector_from_config(cfg, **({"name": args.detector[0]} if args.detector else {}))
    draw_dir = Path(args.draw).expanduser() if args.draw else None
    if draw_dir is not None:
        try:
            draw_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MasknetError(f"--draw {draw_dir}: cannot create the folder ({exc.strerror})") from None
    out = _open_output(args.json or "-")
    count = 0
    try:
        for frame, name in _frames(args.input, cfg):
            faces = detector.detect(frame.image, frame.full)
            image = frame.crop_image
            h, w = image.shape[:2]
            sx, sy = w / frame.image.shape[1], h / frame.image.shape[0]
            records = [face_record(f, sx, sy) for f in faces]
            count += 1
            out.write(json.dumps({"file": name, "frame": frame.number or count, "width": w, "height": h,
                                  "faces": records}) + "\n")
            out.flush()
            if draw_dir is not None:
                _save_drawing(draw_dir, name, frame.number or count, image, records, detector, frame)
            if args.max_frames is not None and count >= args.max_frames:
                break
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _save_drawing(folder: Path, name: str, number: int, image: np.ndarray, records: list[dict[str, Any]], detector: Any, frame: Any) -> None:
    import cv2

    near, far = detector.views(frame.image.shape, None if frame.full is None else frame.full.shape)
    ih, iw = frame.image.shape[:2]
    h, w = image.shape[:2]

    def to_image(box: tuple[int, int, int, int], from_full: bool) -> tuple[int, int, int, int]:
        if from_full:
            return box
        sx, sy = w / iw, h / ih
        return round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)

    regions = [(to_image(v.box, v.from_full), (255, 160, 0)) for v in far] + [(to_image(near[0].box, False), (0, 200, 255))]
    stem = Path(name).stem if frame.name else f"{Path(name).stem}_{number:06d}"
    target = folder / f"{stem}.jpg"
    if not cv2.imwrite(str(target), draw(image, records, regions)):
        raise MasknetError(f"--draw: cannot write {target}")
