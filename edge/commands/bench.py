"""``masknet bench``: how many frames per second will this device do, and where does the time go?

Runs the door's own pipeline (``edge.pipeline.build_pipeline``: the detector, the cascade, the
tracker and mock LED/buzzer pins) frame after frame and reports every stage's latency, the
end-to-end frame time, frames per second and the peak resident memory. The frames come from any
source ``masknet run`` accepts or, by default, from a generated scene at the camera resolution
with a real face (scikit-image's astronaut) pasted in K times, so it runs with no data and no
camera. Warm-up frames are run first and not counted.

By default I-Mask-net runs on every face: Mask-net's answer is still computed (and timed) for
real, but the cascade is told "mask_incorrect" so the second model always runs, the worst case
of a door where everyone wears the mask wrong. ``--real-cascade`` keeps the real decision.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.device import cpu_model, peak_rss_mb, reset_peak_rss
from edge.errors import ConfigError, MasknetError, ModelError
from edge.timing import (
    CAPTURE,
    DETECTOR_INVOKE,
    IMASKNET_INVOKE,
    MASKNET_INVOKE,
    STAGES,
    StageTimer,
)

STAT_FIELDS = ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "count")
INVOKE_STAGES = (DETECTOR_INVOKE, MASKNET_INVOKE, IMASKNET_INVOKE)
# Faces (the head with hair and chin) are pasted this big relative to the frame height: someone
# close to the door camera. Big enough that BlazeFace short-range finds every pasted face on the
# Pi's 320x180 low-resolution stream in every scene variant (at 0.35 it misses some).
FACE_HEIGHT_FRACTION = 0.45


# -- arguments -------------------------------------------------------------------------------


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} must be a comma-separated list of whole numbers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{what} must list numbers of at least 1, got {text!r}")
    return list(dict.fromkeys(values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frames", type=int, default=300, metavar="N", help="frames to time (default 300)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, metavar="N", help="untimed frames first (default 20)"
    )
    parser.add_argument(
        "--faces",
        default="1",
        metavar="K[,K...]",
        help="faces pasted into the generated scene; a list (1,4) compares how cost grows (default 1)",
    )
    parser.add_argument(
        "--source",
        metavar="SRC",
        help="time real frames instead: anything `masknet run --source` accepts (camera, video, folder)",
    )
    parser.add_argument(
        "--single-stream",
        action="store_true",
        help="generated scene: detect on the full-resolution frame (as a webcam or video file does) "
        "instead of the Pi camera's low-resolution stream",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config (camera size, threads, detector, models)"
    )
    parser.add_argument(
        "--models",
        action="append",
        metavar="DIR",
        help="folder with manifest.json (default: the config's, else models/); repeat to compare "
        "exports, e.g. of different input sizes",
    )
    parser.add_argument(
        "--threads",
        metavar="N[,N...]",
        help="interpreter threads per model; a list (1,2,4) compares them (default: the config's)",
    )
    parser.add_argument(
        "--real-cascade",
        action="store_true",
        help="run I-Mask-net only when Mask-net says mask_incorrect (default: on every face)",
    )
    parser.add_argument(
        "--compare-float",
        action="store_true",
        help="also time the float32 exports of the same models (<task>_float.tflite)",
    )
    parser.add_argument(
        "--float-models",
        action="append",
        metavar="DIR",
        help="where to look for <task>_float.tflite (default: the export staging folder "
        "runs/**/export/float/ whose int8 twin matches the shipped sha256, then models/, runs/<task>/)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every combination N times, in turn (1 face, 4 faces, 1 face, ...), and report "
        "the spread of the ratios; the tables show the first round (default 1)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print Markdown tables for pasting into an issue"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON to FILE ('-' = stdout)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the generated scene (default 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# -- the generated scene -------------------------------------------------------------------------


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


# -- statistics ----------------------------------------------------------------------------------


def stats(samples_ms: Sequence[float] | np.ndarray, count: int | None = None) -> dict[str, Any]:
    """mean/p50/p95/p99/max in ms and the count; every figure None when there are no samples."""
    a = np.asarray(samples_ms, dtype=np.float64)
    n = int(a.size if count is None else count)
    if a.size == 0:
        return {
            "mean_ms": None,
            "p50_ms": None,
            "p95_ms": None,
            "p99_ms": None,
            "max_ms": None,
            "count": n,
        }
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "mean_ms": float(a.mean()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(a.max()),
        "count": n,
    }


# -- models ----------------------------------------------------------------------------------------


def _model_entry(
    role: str,
    path: Path,
    sha256: str | None = None,
    input_size: int | None = None,
    reads: str | None = None,
) -> dict[str, Any]:
    from edge.paths import sha256_file

    entry: dict[str, Any] = {"role": role, "file": path.name, "sha256": sha256 or sha256_file(path)}
    if input_size is not None:
        entry["input_size"] = input_size
    if reads is not None:
        entry["reads"] = reads
    return entry


def float_search_dirs(manifest: Any, runs: Path) -> list[Path]:
    """Where the float twins of the manifest's models may be, most trustworthy first.

    ``masknet export --runs R`` stages the shipped int8 files in ``R/export/int8/`` and their float
    versions in ``R/export/float/``: a staging folder whose int8 Mask-net has the shipped sha256
    holds exactly the twins. Then the models folder itself, and ``masknet quantize``'s run folders.
    """
    from edge.paths import sha256_file

    first = manifest.classifier_models[0]
    twins = []
    for int8 in sorted(runs.glob(f"**/export/int8/{first.path.name}")):
        if sha256_file(int8) == first.sha256:
            twins.append(int8.parent.parent / "float")
    return [*twins, manifest.path.parent, runs / "export" / "float", runs]


def float_manifest(manifest: Any, search: Sequence[Path]) -> Any:
    """The same manifest with every model swapped for its float32 export (<task>_float.tflite)."""
    from edge.paths import sha256_file

    models = {}
    for spec in manifest.classifier_models:
        name = spec.name
        wanted = f"{spec.task}_float.tflite"
        candidates = [d / wanted for d in search] + [d / spec.task / wanted for d in search]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            looked = ", ".join(str(d) for d in search)
            raise ModelError(
                f"--compare-float: no {wanted} in {looked}; `masknet quantize RUN_DIR` writes it next to "
                "the int8 model (runs/<task>/) and `masknet export` stages it in runs/export/float/; or pass --float-models DIR"
            )
        as_float = {"dtype": "float32", "scale": 0.0, "zero_point": 0}
        models[name] = dataclasses.replace(
            spec,
            path=found.resolve(),
            sha256=sha256_file(found),
            input_dtype="float32",
            input_scale=0.0,
            input_zero_point=0,
            features=spec.features and dataclasses.replace(spec.features, **as_float),
            input_features=spec.input_features and dataclasses.replace(spec.input_features, **as_float),
        )
    return dataclasses.replace(manifest, models=models)


# -- one measured configuration ---------------------------------------------------------------------


@dataclasses.dataclass
class RunSpec:
    variant: str  # "int8" (the manifest's models) or "float"
    manifest: Any
    threads: int
    faces: int  # faces pasted (0 for a --source run: whatever the frames hold)


def _progress(total: int, label: str, disabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the pi extra; without it, run quietly
        return None
    return tqdm(
        total=total, desc=label, unit="frame", leave=False, disable=disabled, file=sys.stderr
    )


def measure(
    cfg: Any, run: RunSpec, scene: Scene | None, args: argparse.Namespace, round_no: int = 1
) -> dict[str, Any]:
    from edge.config import load_config
    from edge.indicators import Indicators
    from edge.pipeline import build_pipeline, load_models
    from edge.sources import Frame, make_source

    frames = args.frames
    per_frame = max(run.faces, 1) + 4  # room for extra detections without losing samples
    timer = StageTimer(capacity=max(1024, frames * per_frame))
    run_cfg = load_config(
        args.config,
        {
            "runtime.threads": run.threads,
            "classifier.models_dir": str(run.manifest.path.parent),
            "camera.loop": True,
            "indicators.pins": "mock",
        },
    )
    indicators = Indicators(run_cfg.indicators, pins="mock", echo=None)
    source = None
    try:
        # the worst case unless --real-cascade: I-Mask-net on every face
        models = load_models(run_cfg, timer, run.manifest, imasknet_on_every_face=not args.real_cascade)
        pipeline = build_pipeline(run_cfg, indicators, None, timer, models)
        if scene is None:
            source = make_source(args.source, run_cfg.camera)
            source.open()
            generated = None
        else:
            generated = scene.frames()

        frame_ms: list[float] = []
        found: list[int] = []
        reset_peak_rss()
        total = args.warmup + frames
        label = f"{run.variant} {run.threads}t {run.faces or 'src'}f"
        if args.repeat > 1:
            label += f" round {round_no}/{args.repeat}"
        bar = _progress(total, label, args.no_progress)
        for i in range(total):
            if i == args.warmup:
                timer.reset()
            if generated is not None:
                # rendering stands in for the camera's own work: outside the timed frame
                image, full = next(generated)
                t0 = time.perf_counter_ns()
                frame = Frame(image=image, full=full, timestamp=time.monotonic(), number=i + 1)
            else:
                t0 = time.perf_counter_ns()
                assert source is not None
                frame = source.read()
                if frame is None:
                    break
                timer.stop(CAPTURE, t0)
            results = pipeline.process(frame)
            elapsed = time.perf_counter_ns() - t0
            if i >= args.warmup:
                frame_ms.append(elapsed / 1e6)
                found.append(len(results))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if not frame_ms:
            raise MasknetError(
                f"--source {args.source}: the source ended during the {args.warmup} warm-up frames; "
                "use a longer video or a folder, or lower --warmup"
            )
        summary = timer.summary()
        stages = {}
        per_frame_ms = {}
        for name in STAGES:
            st = summary.get(name)
            stages[name] = stats(timer.samples_ms(name) if st else [], st.count if st else 0)
            per_frame_ms[name] = (st.total_ms / len(frame_ms)) if st else 0.0
        frame_block = stats(frame_ms)
        frame_block["fps"] = 1000.0 / frame_block["mean_ms"]
        cascade = pipeline.cascade
        models = [_model_entry("detector", Path(pipeline.detector.model.path))]
        for role, clf in (("masknet", cascade.first), ("imasknet", cascade.imasknet)):
            if clf is not None:
                models.append(
                    _model_entry(
                        clf.spec.name if role == "masknet" else role,
                        clf.spec.path,
                        clf.spec.sha256,
                        clf.spec.input_size,
                        # a reader's input is the provider's features, not a crop of its own
                        f"{clf.spec.features_of} {clf.spec.input_features.layer}"
                        if clf.spec.input_features is not None
                        else None,
                    )
                )
        invoke_per_frame = sum(per_frame_ms[s] for s in INVOKE_STAGES)
        return {
            "variant": run.variant,
            "threads": run.threads,
            "faces": run.faces if scene is not None else None,
            "frames": len(frame_ms),
            "faces_detected_mean": float(np.mean(found)),
            "input_size": cascade.first.spec.input_size,
            "models": models,
            "stages": stages,
            "per_frame_ms": per_frame_ms,
            "frame": frame_block,
            "overhead_ratio": frame_block["mean_ms"] / invoke_per_frame
            if invoke_per_frame
            else None,
            "rss_peak_mb": peak_rss_mb(),
        }
    finally:
        indicators.close()
        if source is not None:
            source.close()


# -- output ----------------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def stage_table(block: dict[str, Any], markdown: bool) -> str:
    rows = []
    for name in STAGES:
        s = block["stages"][name]
        rows.append(
            [
                name,
                *(_fmt(s[k]) for k in STAT_FIELDS[:-1]),
                str(s["count"]),
                _fmt(block["per_frame_ms"][name]),
            ]
        )
    f = block["frame"]
    rows.append(
        [
            "frame (end to end)",
            *(_fmt(f[k]) for k in STAT_FIELDS[:-1]),
            str(f["count"]),
            _fmt(f["mean_ms"]),
        ]
    )
    headers = ["stage", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "count", "ms/frame"]
    return _table(headers, rows, markdown)


def comparison_table(runs: list[dict[str, Any]], markdown: bool) -> str:
    rows = []
    for r in runs:
        rows.append(
            [
                r["variant"],
                str(r["threads"]),
                "-" if r["faces"] is None else str(r["faces"]),
                str(r["input_size"]),
                _fmt(r["frame"]["mean_ms"]),
                _fmt(r["frame"]["p95_ms"]),
                _fmt(r["frame"]["fps"], 1),
                _fmt(r["stages"][DETECTOR_INVOKE]["mean_ms"]),
                _fmt(r["stages"][MASKNET_INVOKE]["mean_ms"]),
                _fmt(r["stages"][IMASKNET_INVOKE]["mean_ms"]),
                _fmt(r["overhead_ratio"]),
            ]
        )
    headers = [
        "models",
        "threads",
        "faces",
        "input",
        "frame ms",
        "p95 ms",
        "FPS",
        "detector ms",
        "Mask-net ms",
        "I-Mask-net ms",
        "frame/invokes",
    ]
    return _table(headers, rows, markdown)


def float_twin(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The float run measured like the first run (same threads, faces and input size), if any."""
    main = runs[0]
    return next(
        (
            r
            for r in runs
            if r["variant"] == "float"
            and r["threads"] == main["threads"]
            and r["faces"] == main["faces"]
            and r["input_size"] == main["input_size"]
        ),
        None,
    )


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue asks about, from the runs that allow them."""
    main = runs[0]
    out: dict[str, Any] = {"overhead": main["overhead_ratio"]}
    same = [
        r for r in runs if r["threads"] == main["threads"] and r["input_size"] == main["input_size"]
    ]
    flt = float_twin(runs)
    if flt is not None:
        a, b = main["stages"][MASKNET_INVOKE]["mean_ms"], flt["stages"][MASKNET_INVOKE]["mean_ms"]
        out["int8_vs_float_masknet_invoke"] = a / b if a and b else None
    by_faces = {r["faces"]: r for r in same if r["variant"] == main["variant"] and r["faces"]}
    if 1 in by_faces and len(by_faces) > 1:
        one = by_faces[1]["frame"]["mean_ms"]
        out["frame_vs_one_face"] = {
            str(k): r["frame"]["mean_ms"] / one for k, r in sorted(by_faces.items()) if k != 1
        }
        # a straight line through 1 face and the most faces: what a person costs, what the
        # frame costs anyway, so a user can work out the frame rate for any crowd
        most = max(by_faces)
        per_face = (by_faces[most]["frame"]["mean_ms"] - one) / (most - 1)
        out["cost_split_ms"] = {"per_face": per_face, "per_frame": one - per_face}
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif v is not None:
            out[f"{prefix}{k}"] = float(v)
    return out


def spread(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """min / median / max of every ratio over the rounds ({"frame_vs_one_face.4": {...}})."""
    flat = [_flat(r) for r in rounds]
    keys = [k for k in flat[0] if all(k in f for f in flat)]
    return {
        k: {
            "min": min(f[k] for f in flat),
            "median": float(np.median([f[k] for f in flat])),
            "max": max(f[k] for f in flat),
        }
        for k in keys
    }


def rounds_table(rounds: list[dict[str, Any]], markdown: bool) -> str:
    """One row of ratios per round of --repeat."""
    cols: list[tuple[str, str, int]] = [("frame/invokes", "overhead", 3)]
    cols += [
        (f"{k} faces / 1 face", f"frame_vs_one_face.{k}", 2) for k in rounds[0].get("frame_vs_one_face", {})
    ]
    if "cost_split_ms" in rounds[0]:
        cols += [
            ("each face adds ms", "cost_split_ms.per_face", 2),
            ("frame's own work ms", "cost_split_ms.per_frame", 2),
        ]
    if "int8_vs_float_masknet_invoke" in rounds[0]:
        cols.append(("int8/float Mask-net", "int8_vs_float_masknet_invoke", 2))
    rows = []
    for i, r in enumerate(rounds, 1):
        flat = _flat(r)
        rows.append([str(i), *(_fmt(flat.get(key), digits) for _, key, digits in cols)])
    return _table(["round", *(c[0] for c in cols)], rows, markdown)


def render(result: dict[str, Any], markdown: bool) -> str:
    h = result["header"]
    def describe(m: dict[str, Any]) -> str:
        if "reads" in m:
            return f", reads {m['reads']}"
        return f", {m['input_size']} px" if "input_size" in m else ""

    models = ", ".join(f"{m['file']} ({m['sha256'][:12]}{describe(m)})" for m in h["models"])
    lines = [
        ("### " if markdown else "") + "masknet bench",
        "",
        f"- CPU: {h['cpu']} ({h['cores']} cores), {h['machine']}, Python {h['python']}",
        f"- runtime: {h['runtime']} {h['runtime_version']}, {h['threads']} thread(s) per model",
        f"- models: {models}",
        f"- input: {h['input']}; {result['frames']} frames timed after {h['warmup']} warm-up frames; "
        f"{h['cascade']}",
        f"- faces detected per frame: {result['faces_detected_mean']:.2f}; peak RSS {result['rss_peak_mb']:.1f} MB "
        f"(this process, all runs{'' if len(result['runs']) == 1 else '; per run in the JSON'})",
        "",
    ]
    for r in result["runs"]:
        if r["faces"] and r["faces_detected_mean"] < r["faces"] - 0.01:
            lines.append(
                f"note: the detector found {r['faces_detected_mean']:.2f} of the {r['faces']} pasted faces per "
                "frame, so the classifier stages ran less often than asked (fewer --faces fit better)"
            )
    if not markdown:
        lines = [line[2:] if line.startswith("- ") else line for line in lines]
    lines.append(stage_table(result, markdown))
    r = result["ratios"]
    lines.append("")
    lines.append(
        f"frame / (detector + Mask-net + I-Mask-net invokes) = {_fmt(r['overhead'])}; "
        f"{result['frame']['fps']:.1f} FPS"
    )
    if "int8_vs_float_masknet_invoke" in r:
        lines.append(f"int8 / float Mask-net invoke = {_fmt(r['int8_vs_float_masknet_invoke'])}")
    for k, v in r.get("frame_vs_one_face", {}).items():
        lines.append(f"frame time with {k} faces / with 1 face = {_fmt(v)}")
    if "cost_split_ms" in r:
        split = r["cost_split_ms"]
        lines.append(
            f"each face adds {split['per_face']:.2f} ms to a frame whose own work is {split['per_frame']:.2f} ms "
            "(classifiers, crop and tracking per face; detector, decode and tracking per frame)"
        )
    if len(result["runs"]) > 1:
        lines += ["", comparison_table(result["runs"], markdown)]
    rounds = result.get("rounds", [])
    if len(rounds) > 1:
        lines += [
            "",
            f"{len(rounds)} rounds, each running every combination in turn (the tables above are round 1):",
            "",
            rounds_table(rounds, markdown),
            "",
        ]
        headline = [("overhead", "frame / invokes")] + [
            (f"frame_vs_one_face.{k}", f"{k} faces / 1 face") for k in rounds[0].get("frame_vs_one_face", {})
        ]
        for key, label in headline:
            sp = result["ratios_spread"].get(key)
            if sp:
                lines.append(
                    f"{label}: median {sp['median']:.3f}, min {sp['min']:.3f}, max {sp['max']:.3f}"
                )
    return "\n".join(lines)


# -- command ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.litert import load_runtime
    from edge.manifest import load_manifest
    from edge.paths import models_dir, repo_root

    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    if args.warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, got {args.repeat}")
    cfg = load_config(args.config)
    threads = _int_list(args.threads, "--threads") if args.threads else [cfg.runtime.threads]
    faces = _int_list(args.faces, "--faces")
    dirs = [
        Path(d).expanduser() for d in (args.models or [cfg.classifier.models_dir or models_dir()])
    ]
    manifests = [load_manifest(d, verify=True) for d in dirs]
    runtime = load_runtime()

    scenes: dict[int, Scene | None] = {}
    if args.source:
        scenes[0] = None
        faces = [0]
    else:
        from edge.detector import create_detector

        detector = create_detector(
            cfg.detector.name,
            **({"model_path": Path(cfg.detector.model).expanduser()} if cfg.detector.model else {}),
        )
        patch = face_patch(detector)
        del detector
        size = (cfg.camera.width, cfg.camera.height)
        lores = None if args.single_stream else (cfg.camera.lores_width, cfg.camera.lores_height)
        for k in faces:
            scenes[k] = Scene(patch, k, size, lores, args.seed)

    plan: list[RunSpec] = []
    for manifest in manifests:
        variants = [("int8", manifest)]
        if args.compare_float:
            search = (
                [Path(d).expanduser() for d in args.float_models]
                if args.float_models
                else float_search_dirs(manifest, repo_root() / "runs")
            )
            variants.append(("float", float_manifest(manifest, search)))
        for n in threads:
            for k in faces:
                for variant, m in variants:
                    plan.append(RunSpec(variant, m, n, k))

    # round after round of the whole plan, so that a slow spell of a shared machine lands on
    # every combination instead of on one of them
    rounds = [
        [measure(cfg, spec, scenes[spec.faces], args, n) for spec in plan] for n in range(1, args.repeat + 1)
    ]
    runs = rounds[0]
    main = runs[0]
    source_desc = f"--source {args.source}" if args.source else scenes[faces[0]].description  # type: ignore[union-attr]
    result: dict[str, Any] = {
        "header": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "machine": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(),
            "runtime": runtime.name,
            "runtime_version": runtime.version,
            "threads": main["threads"],
            "models": main["models"],
            "input": source_desc,
            "warmup": args.warmup,
            "cascade": "I-Mask-net on every face (worst case)"
            if not args.real_cascade
            else "I-Mask-net only when Mask-net says mask_incorrect",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "faces": main["faces"],
        "frames": main["frames"],
        "faces_detected_mean": main["faces_detected_mean"],
        "stages": main["stages"],
        "per_frame_ms": main["per_frame_ms"],
        "frame": main["frame"],
        "rss_peak_mb": max(r["rss_peak_mb"] for rnd in rounds for r in rnd),
        "runs": runs,
    }
    flt = float_twin(runs)
    if flt is not None:
        result["float"] = {
            k: flt[k] for k in ("models", "stages", "per_frame_ms", "frame", "frames")
        }
    result["ratios"] = ratios(runs)
    if args.repeat > 1:
        result["rounds"] = [ratios(rnd) for rnd in rounds]
        result["ratios_spread"] = spread(result["rounds"])

    text = json.dumps(result, indent=2)
    if args.json == "-":
        # stdout is for the machine then: the table would break its JSON
        print(text)
        return 0
    print(render(result, args.markdown))
    if args.json:
        try:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise MasknetError(f"--json {args.json}: cannot write ({exc.strerror})") from None
    return 0
