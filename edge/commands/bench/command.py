"""``masknet bench``'s arguments, the plan of runs (models x threads x faces x rounds) and ``run``."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from edge.cli_io import emit_report, parse_number_list
from edge.commands.bench.measure import RunSpec, float_manifest, float_search_dirs, measure
from edge.commands.bench.report import float_twin, ratios, render, spread
from edge.commands.bench.scene import Scene, face_patch
from edge.device import cpu_model
from edge.errors import ConfigError


def _distinct(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    """--max-faces as a config override (validated like the config key)."""
    return {} if args.max_faces is None else {"classifier.max_faces_per_frame": args.max_faces}


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
        "--max-faces",
        type=int,
        metavar="N",
        help="faces classified per frame (classifier.max_faces_per_frame; default: the config's); "
        "--faces past it shows the frame time flattening",
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
        help="where to look for <task>_float.tflite (default: the folder under runs/ holding the "
        "shipped int8 file (same sha256), then models/, runs/<task>/)",
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
    cfg = load_config(args.config, _budget(args))
    threads = _distinct(parse_number_list(args.threads, "--threads", int, 1)) if args.threads else [cfg.runtime.threads]
    faces = _distinct(parse_number_list(args.faces, "--faces", int, 1))
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
            "max_faces_per_frame": cfg.classifier.max_faces_per_frame,
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

    emit_report(result, lambda: render(result, args.markdown), args.json)
    return 0
