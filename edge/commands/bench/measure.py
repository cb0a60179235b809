"""One measured configuration: the door's pipeline on the scene or a source, frame after frame,
and the float32 twins of the shipped models for ``--compare-float``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.commands.bench.scene import Scene
from edge.device import peak_rss_mb, reset_peak_rss
from edge.errors import MasknetError, ModelError
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

    ``masknet quantize`` writes a model's float32 twin next to its int8 file, so a folder under
    ``runs`` holding the shipped int8 bytes (same sha256) holds exactly their twin; then the
    models folder itself and ``runs`` (``runs/<task>/``).
    """
    from edge.paths import sha256_file

    twins: list[Path] = []
    for spec in manifest.classifier_models:
        for int8 in sorted(runs.glob(f"**/{spec.path.name}")):
            if int8.parent not in twins and sha256_file(int8) == spec.sha256:
                twins.append(int8.parent)
    return [*twins, manifest.path.parent, runs]


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
                "the int8 model (runs/<task>/); or pass --float-models DIR"
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
