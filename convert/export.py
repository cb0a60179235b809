"""``masknet export``: evaluate the quantized runs, pick the pipeline, write models/ and REPORT.md.

Steps (each number in the report comes from here and names the command that reproduces it):

1. stage every quantized run (``runs/<task>/<task>_int8.tflite`` and ``_float.tflite``) with a
   manifest each under ``runs/export/{int8,float}/``, with Mask-net's ``class_bias`` chosen on
   the real validation photos for each (``masknet decide``; ``--class-bias``);
2. ``masknet evaluate`` both on the validation and test splits, and on the real-photo part of
   the test split (``--origin real``);
3. choose the pipeline by VALIDATION 5-class balanced accuracy (cascade vs single 5-class
   model; the test split is only reported, never used to choose);
4. measure LiteRT latency of each file on this machine;
5. copy the shipped int8 files to ``models/``, write ``models/manifest.json`` and ``models/REPORT.md``.

``masknet export --latency-sweep 128,160,224`` instead times random-weight int8 Mask-nets at
those input sizes (timing does not depend on the weights) for the input-size choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from convert import decide
from convert.evaluate import (
    TITLES,
    evaluate,
    read_index_column,
    read_photo_list,
    report_of,
    resolution_curve,
)
from convert.files import (
    EXPORT_DIR,
    SUMMARY_JSON,
    export_dir,
    model_file,
    read_quantize,
    read_summary,
    run_crop,
)
from convert.metrics import markdown_report, measure_latency
from edge.classes import MASKNET_CLASSES, masknet_label
from edge.crop import CropSpec
from edge.errors import MasknetError
from edge.manifest import MAX_CLASS_BIAS, ModelSpec, load_manifest, write_manifest

TASKS = ("masknet", "imasknet", "fiveclass")
MAX_BYTES = 3_500_000
CURVE_PX = (24, 32, 48, 64, 96, 160)


def _spec(run_dir: Path, task: str, file: Path, kind: str) -> ModelSpec:
    from convert.quantize import feature_fields, io_quantization

    summary = read_summary(run_dir)
    quant = read_quantize(run_dir)
    q = io_quantization(file)
    return ModelSpec(
        name=task,
        path=file,
        sha256="",
        task=task,
        classes=tuple(summary["classes"]),
        input_size=int(summary["input_size"]),
        input_dtype=q["input"]["dtype"],
        input_scale=q["input"]["scale"] if kind == "int8" else 0.0,
        input_zero_point=q["input"]["zero_point"],
        output_dtype=q["output"]["dtype"],
        output_scale=q["output"]["scale"],
        output_zero_point=q["output"]["zero_point"],
        backbone=summary["backbone"],
        trainable_layers=int(summary["trainable_layers"]),
        dataset_sha256=summary["dataset_sha256"],
        calibration_sha256=quant["calibration_sha256"] if kind == "int8" else None,
        float_layers=tuple(quant.get("float_layers", ())) if kind == "int8" else (),
        metrics={},
        **feature_fields(quant.get("shared") or {}, q),
    )


def runs_crop(runs: Path, tasks: list[str]) -> CropSpec:
    """The one crop every run was trained on; the door can cut only one."""
    crops = {task: run_crop(runs / task) for task in tasks}
    if len(set(crops.values())) > 1:
        listed = "; ".join(f"{task}: {crop.describe()}" for task, crop in crops.items())
        raise MasknetError(
            f"{runs}: the runs were trained on differently cut faces ({listed}); "
            "train them all on the same data set build"
        )
    return next(iter(crops.values()))


def stage(runs: Path, tasks: list[str], kind: str, dest: Path, crop: CropSpec | None = None) -> dict[str, ModelSpec]:
    """Copy each run's ``<task>_<kind>.tflite`` to ``dest`` and write a manifest there (with the
    runs' crop: ``runs_crop`` unless given)."""
    crop = crop or runs_crop(runs, tasks)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    specs = {}
    for task in tasks:
        src = model_file(runs / task, task, kind)
        if not src.is_file():
            raise MasknetError(f"{src}: not found; run `masknet quantize {runs / task}` first")
        dst = dest / src.name
        shutil.copy2(src, dst)
        specs[task] = _spec(runs / task, task, dst, kind)
    classifiers = "cascade" if {"masknet", "imasknet"} <= set(specs) else "fiveclass"
    write_manifest(dest, classifiers, specs, crop)
    return specs


def _bal(result: dict[str, Any] | None, prefix: str) -> float | None:
    return None if not result or f"{prefix}.balanced_accuracy" not in result else float(result[f"{prefix}.balanced_accuracy"])


def _brief(result: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    rep = report_of(result, prefix)
    if rep is None:
        return None
    return {"accuracy": round(rep["accuracy"], 5), "balanced_accuracy": round(rep["balanced_accuracy"], 5), "n": rep["n"]}


def latency_sweep(sizes: list[int], config: Path, threads: list[int], runs: int, out: Path) -> dict[str, Any]:
    """Time random-weight int8 (and float) Mask-nets at each input size with LiteRT."""
    from convert.model import build_model, load_config
    from convert.quantize import convert_float, quantize_keras, write_bytes

    results: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "config": str(config), "sizes": {}}
    tmp = out.parent / "latency_models"
    for size in sizes:
        cfg = load_config(config, {"model.weights": "none", "model.input_size": size})
        built = build_model(cfg)
        rng = np.random.default_rng(0)
        calib = rng.integers(0, 256, (8, size, size, 3)).astype(np.float32)
        int8 = write_bytes(tmp / f"masknet_{size}_int8.tflite", quantize_keras(built.model, lambda c=calib: iter(c)))
        flt = write_bytes(tmp / f"masknet_{size}_float.tflite", convert_float(built.model))
        entry: dict[str, Any] = {"int8_bytes": int8.stat().st_size, "float_bytes": flt.stat().st_size}
        for t in threads:
            entry[f"int8_threads{t}"] = measure_latency(int8, runs=runs, num_threads=t)
            entry[f"float_threads{t}"] = measure_latency(flt, runs=runs, num_threads=t)
        results["sizes"][str(size)] = entry
        print(f"{size}px: " + ", ".join(
            f"{k} {v['median_ms']:.2f} ms" for k, v in entry.items() if isinstance(v, dict)), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0.5 and 1, got {text!r}") from None
    if not 0.5 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0.5 and 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=Path, default=Path("runs"), help="training runs folder (default runs/)")
    p.add_argument("--data", type=Path, default=Path("data/build"), help="data set with val/ and test/ (default data/build)")
    p.add_argument("--out", type=Path, default=None, help="models folder to write (default models/)")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=None, help="runs to consider (default: all quantized)")
    p.add_argument("--pipeline", choices=("auto", "cascade", "fiveclass"), default="auto",
                   help="auto: cascade unless the 5-class model wins on validation")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="LiteRT thread counts to time")
    p.add_argument("--latency-runs", type=int, default=50, metavar="N",
                   help="timed invokes per model and thread count for the latency table, after warm-up (default 50)")
    p.add_argument("--latency-sweep", default=None, metavar="SIZES",
                   help="only time random-weight Mask-nets at these input sizes, e.g. 128,160,224")
    p.add_argument("--config", type=Path, default=Path("convert/configs/masknet.toml"),
                   help="model config for --latency-sweep")
    p.add_argument("--latency-json", type=Path, default=Path("runs/latency.json"),
                   help="where --latency-sweep writes / export reads the sweep")
    p.add_argument("--compare-runs", type=Path, nargs="*", default=[], metavar="RUNS",
                   help="other runs folders (e.g. other input sizes) whose validation results the report lists")
    p.add_argument("--before-evals", type=Path, default=None, metavar="JSON",
                   help="the shipped models' real-photo evaluations made earlier (real_views 'before'), instead of rerunning them")
    p.add_argument("--gate-unseen", type=Path, default=None, metavar="CSV",
                   help="the photos the shipped models were trained on (column 'base', as in index.csv): the gate then "
                        "compares old and new models on the real validation photos outside that list, which neither "
                        "has trained on (needed once after a rebuild re-splits the photos)")
    p.add_argument("--gate-confidence", type=_confidence, default=0.9, metavar="P",
                   help="replace the shipped models only when the new Mask-net has the higher balanced accuracy in "
                        "at least this share of paired bootstrap resamples of the gate's photos (default 0.9; 0.5 "
                        "would be a coin flip: real val moves a few points between epochs and seeds)")
    p.add_argument("--class-bias", type=_class_bias, default="auto", metavar="auto|none|OFFSET",
                   help="Mask-net's prior shift for mask_incorrect (manifest class_bias): auto chooses it per set of "
                        "models on the real validation photos (`masknet decide`, the default), none keeps the plain "
                        "arg-max, a number sets it")
    p.add_argument("--force", action="store_true",
                   help="replace the models in --out even when they score higher on the real validation photos")


def _class_bias(text: str) -> str | float:
    if text in ("auto", "none"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not abs(value) <= MAX_CLASS_BIAS:
        raise argparse.ArgumentTypeError(f"--class-bias {text!r}: expected auto, none or a number from "
                                         f"-{MAX_CLASS_BIAS:g} to {MAX_CLASS_BIAS:g}")
    return value


def apply_class_bias(models: Path, data: Path, setting: str | float) -> dict[str, ModelSpec]:
    """Record Mask-net's class_bias in the staged manifest of MODELS as ``--class-bias`` says."""
    if setting == "auto":
        offset, rows, n = decide.choose(models, data / "val", progress=False)
        print(f"class_bias for {models}: {n} real val photos\n{decide.sweep_table(rows, offset)}", flush=True)
    else:
        offset = 0.0 if setting == "none" else float(setting)
    decide.record_class_bias(models, offset)
    return dict(load_manifest(models).models)


def real_views(data: Path, models: Path, kind: str, evals: dict[str, dict[str, Any]], staging: Path) -> None:
    """The real-photo yardstick of one set of models: val and test real, test real per source,
    and the resolution curve on the real test photos; results go into ``evals`` as
    ``<kind>_val_real``, ``<kind>_test_real``, ``<kind>_test_real_<source>``, ``<kind>_curve``."""
    jobs: list[tuple[str, str, str | None]] = [("val", f"{kind}_val_real", None), ("test", f"{kind}_test_real", None)]
    origins = read_index_column(data / "test", "origin")
    sources = sorted({s for p, s in read_index_column(data / "test", "source").items() if origins.get(p) == "real"})
    jobs += [("test", f"{kind}_test_real_{src}", src) for src in sources]
    for split, name, source in jobs:
        if name in evals:
            continue
        print(f"evaluating {name} ...", flush=True)
        try:
            evals[name] = evaluate(data / split, models, origin="real", source=source, num_threads=2, progress=False)
        except MasknetError as exc:
            print(f"  skipped: {exc}")
            continue
        (staging / f"eval_{name}.json").write_text(json.dumps(evals[name], indent=2))
    print(f"resolution curve {kind} ...", flush=True)
    evals[f"{kind}_curve"] = resolution_curve(data / "test", models, list(CURVE_PX), origin="real", num_threads=2, progress=False)
    (staging / f"curve_{kind}.json").write_text(json.dumps(evals[f"{kind}_curve"], indent=2))


GATE_RESAMPLES = 2000


def gate_share_ahead(new: dict[str, Any] | None, old: dict[str, Any] | None) -> float | None:
    """How sure the gate can be that the new Mask-net is better: the share of paired bootstrap
    resamples of the photos both were scored on in which it has the higher balanced accuracy.
    None when either evaluation lacks per-image answers (made by an older `masknet evaluate`)."""
    from convert.metrics import share_ahead

    a, b = (r.get("masknet.answers") if r else None for r in (new, old))
    if not a or not b:
        return None
    images = sorted(set(a) & set(b))
    if not images:
        return None
    truth = [MASKNET_CLASSES.index(masknet_label(Path(i).parent.name)) for i in images]
    return share_ahead(np.array(truth), np.array([MASKNET_CLASSES.index(a[i]) for i in images]),
                       np.array([MASKNET_CLASSES.index(b[i]) for i in images]), GATE_RESAMPLES)


def unseen_by_before(data: Path, seen_csv: Path, models: dict[str, Path], evals: dict[str, dict[str, Any]],
                     staging: Path) -> None:
    """``<kind>_val_real_unseen``: the real validation photos outside ``seen_csv`` (the photos the
    shipped models were trained on), for each set of ``models``. After a rebuild that splits the
    photos anew, many validation photos were the shipped models' training photos: compared on
    all of them, the shipped models would win on memory."""
    seen = read_photo_list(seen_csv)
    for kind, folder in models.items():
        name = f"{kind}_val_real_unseen"
        if name in evals or not (folder / "manifest.json").is_file():
            continue
        print(f"evaluating {name} (without the {len(seen)} photos of {seen_csv}) ...", flush=True)
        evals[name] = evaluate(data / "val", folder, origin="real", exclude=seen, num_threads=2, progress=False)
        (staging / f"eval_{name}.json").write_text(json.dumps(evals[name], indent=2))


def run(args: argparse.Namespace) -> int:
    from edge.paths import models_dir

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.latency_sweep:
        sizes = [int(s) for s in args.latency_sweep.split(",") if s.strip()]
        latency_sweep(sizes, args.config, args.threads, args.latency_runs, args.latency_json)
        return 0
    out = args.out if args.out is not None else models_dir()
    tasks = args.tasks or [t for t in TASKS if model_file(args.runs / t, t, "int8").is_file()]
    if not {"masknet", "imasknet"} <= set(tasks) and "fiveclass" not in tasks:
        raise MasknetError(f"{args.runs}: need quantized masknet + imasknet runs (or fiveclass); found {tasks or 'none'}")
    staging = args.runs / EXPORT_DIR
    crop = runs_crop(args.runs, tasks)
    evals: dict[str, dict[str, Any]] = {}
    staged: dict[str, dict[str, ModelSpec]] = {}
    for kind in ("int8", "float"):
        staged[kind] = stage(args.runs, tasks, kind, export_dir(args.runs, kind), crop)
        if "masknet" in staged[kind]:
            staged[kind] = apply_class_bias(export_dir(args.runs, kind), args.data, args.class_bias)
        for split, origin in (("val", None), ("test", None), ("test", "real")):
            name = f"{kind}_{split}" + (f"_{origin}" if origin else "")
            print(f"evaluating {name} ...", flush=True)
            try:
                result = evaluate(args.data / split, export_dir(args.runs, kind), origin=origin, num_threads=2)
            except MasknetError as exc:
                if origin is None:
                    raise
                print(f"  skipped: {exc}")
                continue
            (staging / f"eval_{name}.json").write_text(json.dumps(result, indent=2))
            evals[name] = result
        real_views(args.data, export_dir(args.runs, kind), kind, evals, staging)
    # the models shipped until now, on the same real photos: the "before" of the report and the gate
    if args.before_evals is not None:
        # the same evaluations made earlier by `convert.export.real_views(..., "before", ...)`
        evals.update({k: v for k, v in json.loads(args.before_evals.read_text()).items() if k.startswith("before_")})
    elif (out / "manifest.json").is_file():
        real_views(args.data, out, "before", evals, staging)
    gate = "val_real"
    if args.gate_unseen is not None:
        gate = "val_real_unseen"
        unseen_by_before(args.data, args.gate_unseen, {"int8": export_dir(args.runs, "int8"), "before": out},
                         evals, staging)
    refuse = None
    gate_note = ""
    if f"before_{gate}" in evals:
        new_bal = _bal(evals.get(f"int8_{gate}"), "masknet")
        old_bal = _bal(evals.get(f"before_{gate}"), "masknet")
        photos = "real validation photos" + (" the shipped models never trained on" if args.gate_unseen else "")
        ahead = gate_share_ahead(evals.get(f"int8_{gate}"), evals.get(f"before_{gate}"))
        gate_note = (f"new {new_bal:.4f}, shipped {old_bal:.4f}" if new_bal is not None and old_bal is not None else "")
        if ahead is not None:
            gate_note += (f"; the new Mask-net is ahead in {ahead:.0%} of {GATE_RESAMPLES:,} paired bootstrap resamples "
                          f"of the photos (needs {args.gate_confidence:.0%})")
        print(f"Mask-net balanced accuracy on the {photos}: {gate_note}")
        if ahead is not None:
            beaten = ahead >= args.gate_confidence
        else:  # evaluations from before per-image answers were kept: plain comparison
            beaten = new_bal is not None and old_bal is not None and new_bal > old_bal
        if new_bal is not None and old_bal is not None and not beaten and not args.force:
            refuse = (f"the new Mask-net ({new_bal:.4f}) does not beat the shipped one ({old_bal:.4f}) on the {photos}"
                      + (f" (ahead in {ahead:.0%} of bootstrap resamples, needs {args.gate_confidence:.0%})" if ahead is not None else "")
                      + f"; {out} is left as it is (staged files, evaluations and REPORT.md in {staging}; "
                      "--force replaces anyway)")
    # choose by validation only
    pipeline = args.pipeline
    val = evals["int8_val"]
    choice_note = f"forced by --pipeline {pipeline}"
    if pipeline == "auto":
        casc, five = _brief(val, "cascade"), _brief(val, "fiveclass")
        casc3, five3 = _brief(val, "masknet"), _brief(val, "fiveclass_as_masknet")
        # the 5-class model must win on both questions: the sub-type verdict (5-class level) and
        # mask / incorrect / none over every image, real sub-type-less mask_incorrect photos included
        wins = bool(casc and five and casc3 and five3
                    and five["balanced_accuracy"] > casc["balanced_accuracy"]
                    and five3["balanced_accuracy"] >= casc3["balanced_accuracy"])
        pipeline = "fiveclass" if wins or not casc else "cascade"
        choice_note = (
            "validation balanced accuracy, 5-class level: cascade "
            f"{casc and casc['balanced_accuracy']}, 5-class model {five and five['balanced_accuracy']}; "
            f"Mask-net level (all images): cascade {casc3 and casc3['balanced_accuracy']}, "
            f"5-class model {five3 and five3['balanced_accuracy']}; the 5-class model ships only if it wins both"
        )
    # the cascade always ships (when trained); the 5-class model too when it is the pipeline
    ship = [t for t in tasks if t in ("masknet", "imasknet")]
    if "fiveclass" in tasks and pipeline == "fiveclass":
        ship.append("fiveclass")

    latency: dict[str, Any] = {}
    for kind in ("int8", "float"):
        for task in tasks:
            f = model_file(export_dir(args.runs, kind), task, kind)
            latency[f"{task}_{kind}"] = {f"threads{t}": measure_latency(f, runs=args.latency_runs, num_threads=t)
                                         for t in args.threads}
    (staging / "latency.json").write_text(json.dumps(latency, indent=2))

    # the report is made before anything in OUT changes, so a fault in it leaves the shipped set whole
    report_text = render_report(args, tasks, ship, pipeline, choice_note, evals, latency, staging, gate_note)
    if refuse is not None:
        (staging / "REPORT.md").write_text(report_text, encoding="utf-8")
        raise MasknetError(refuse)
    out.mkdir(parents=True, exist_ok=True)
    specs = {}
    for task in ship:
        src = model_file(export_dir(args.runs, "int8"), task, "int8")
        size = src.stat().st_size
        if size > MAX_BYTES:
            raise MasknetError(f"{src}: {size / 1e6:.2f} MB exceeds the {MAX_BYTES / 1e6} MB limit")
        dst = out / src.name
        shutil.copy2(src, dst)
        metrics = {}
        for kind in ("float", "int8"):
            m: dict[str, Any] = {"split": "test"}
            for key, name in (("test", f"{kind}_test"), ("test_real", f"{kind}_test_real"), ("val", f"{kind}_val")):
                if name in evals:
                    # each task's own level: masknet -> masknet.*, imasknet -> imasknet.*, ...
                    m[key] = _brief(evals[name], task)
            metrics[kind] = m
        # the staged int8 spec describes the same bytes; only the place and the metrics differ
        specs[task] = dataclasses.replace(staged["int8"][task], path=dst, metrics=metrics)
    # leave models the new manifest does not name out of the folder, so nothing stale ships
    for task in TASKS:
        stale = model_file(out, task, "int8")
        if task not in ship and stale.exists():
            stale.unlink()
    manifest = write_manifest(out, pipeline, specs, crop)
    print(f"wrote {manifest} (pipeline {pipeline}: {', '.join(ship)}; crop {crop.describe()})")
    report = out / "REPORT.md"
    report.write_text(report_text, encoding="utf-8")
    print(f"wrote {report}")
    return 0


# --------------------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:.4f}"  # x != x: NaN (no real photos in that split)


def _float_vs_int8(evals: dict[str, dict[str, Any]], split: str, delta: bool) -> list[str]:
    """Float and int8 accuracies of every level on one split; ``delta`` adds the int8 - float column."""
    d_head, d_rule = (" Δ (points) |", "---:|") if delta else ("", "")
    rows = [f"| level | float acc | int8 acc |{d_head} float bal. acc | int8 bal. acc | n |",
            f"|---|---:|---:|{d_rule}---:|---:|---:|"]
    for prefix in TITLES:
        f = _brief(evals.get(f"float_{split}", {}), prefix)
        q = _brief(evals.get(f"int8_{split}", {}), prefix)
        if f and q:
            d = f" {100 * (q['accuracy'] - f['accuracy']):+.2f} |" if delta else ""
            rows.append(f"| {prefix} | {f['accuracy']:.4f} | {q['accuracy']:.4f} |{d} "
                        f"{f['balanced_accuracy']:.4f} | {q['balanced_accuracy']:.4f} | {q['n']} |")
    return rows


def _confusion_block(rep: dict[str, Any]) -> list[str]:
    """The confusion matrix as a fenced block, one row per true class."""
    rows = ["```"]
    for name, row in zip(rep["per_class"], rep["confusion"], strict=True):
        rows.append(f"{name:<22}" + "".join(f"{v:>8d}" for v in row))
    return [*rows, "```"]


def render_report(
    args: argparse.Namespace,
    tasks: list[str],
    ship: list[str],
    pipeline: str,
    choice_note: str,
    evals: dict[str, dict[str, Any]],
    latency: dict[str, Any],
    staging: Path,
    gate_note: str = "",
) -> str:
    data = args.data
    runs = args.runs
    L: list[str] = []
    L.append("# Mask-net Edge: model report")
    L.append("")
    L.append(f"Generated by `masknet export --runs {runs} --data {data}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"({platform.machine()}, {os.cpu_count()} CPUs). Shipped pipeline: **{pipeline}** ({', '.join(ship)}); "
             f"chosen by {choice_note}.")
    L.append("")
    staged = {kind: load_manifest(export_dir(runs, kind)).models for kind in ("int8", "float")
              if (export_dir(runs, kind) / "manifest.json").is_file()}
    biases = {kind: m["masknet"].class_bias for kind, m in staged.items() if "masknet" in m}
    if biases:
        L.append("Mask-net's prior shift (manifest `class_bias`, added to log p before the answer; chosen per set of "
                 f"models on the real val photos, `masknet decide {data}/val --models <dir>`): "
                 + "; ".join(f"{kind} {b or 'none'}" for kind, b in biases.items()) + ".")
        L.append("")
    L.append("## Training runs (picked by validation)")
    L.append("")
    L.append("| model | input | trainable layers | train images | best epoch / run | val loss | val acc | val bal. acc | val real acc | val real bal. acc |")
    L.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for task in tasks:
        s = read_summary(runs / task)
        v = s.get("val")
        if v is None:
            # a run rebuilt from int8 files (tools/float_from_int8.py) has weights but no training log
            L.append(f"| {task} | {s['input_size']} | {s['trainable_layers']} | rebuilt from {s.get('rebuilt_from', '?')} "
                     "(tools/float_from_int8.py): no training log | | | | | | |")
            continue
        L.append(f"| {task} | {s['input_size']} | {s['trainable_layers']} | {s['train_counts']} | {s['best_epoch']} / {s['epochs_run']} "
                 f"| {v['val_loss']:.4f} | {v['val_accuracy']:.4f} | {v['val_balanced_accuracy']:.4f} | {_fmt(v['val_real_accuracy'])} "
                 f"| {_fmt(v.get('val_real_balanced_accuracy'))} |")
    L.append("")
    L.append(f"Reproduce: `masknet train convert/configs/<task>.toml --data {data} --runs {runs}` then "
             f"`masknet quantize {runs}/<task> --data {data} --calibration calibration/calibration.txt`; per-epoch logs in "
             f"`{runs}/<task>/train.log`.")
    L.append("")
    L.append("## Float vs int8 on the same test split")
    L.append("")
    L += _float_vs_int8(evals, "test", delta=True)
    L.append("")
    L.append("Real photos only (`origin == real` in index.csv):")
    L.append("")
    L += _float_vs_int8(evals, "test_real", delta=False)
    L.append("")
    L.append("Reproduce (int8 = shipped files; float = the unquantized TFLite of the same runs):")
    L.append("")
    L.append("```")
    L.append(f"masknet evaluate {data}/test --models {staging}/int8 --json int8_test.json")
    L.append(f"masknet evaluate {data}/test --models {staging}/float --json float_test.json")
    L.append(f"masknet evaluate {data}/test --models {staging}/int8 --origin real")
    L.append(f"masknet evaluate {data}/val --models {staging}/int8")
    L.append("```")
    L.append("")
    L += render_real(evals, data, staging)
    if "int8_val_real_unseen" in evals:
        n = evals["int8_val_real_unseen"].get("n")
        L.append(f"**The gate** (new vs shipped Mask-net, real validation photos) used the {n} real validation photos "
                 f"that the shipped models never trained on (`val_real_unseen` above; `--gate-unseen {args.gate_unseen}`, "
                 f"`masknet evaluate {data}/val --origin real --exclude {args.gate_unseen}`): the data build splits "
                 "the photos anew, so on `val_real` as a whole the shipped models are scored partly on their own "
                 "training photos.")
        L.append("")
    if gate_note:
        L.append(f"Gate figures (Mask-net balanced accuracy, int8): {gate_note}.")
        L.append("")
    L.append("## int8 test tables (like the paper's Tables 1 and 2)")
    for prefix, title in TITLES.items():
        rep = report_of(evals.get("int8_test", {}), prefix)
        if rep is None:
            continue
        L.append("")
        L.append(f"### {title}")
        L.append("")
        L.append(markdown_report(rep))
        L.append("")
        L.append("Confusion (rows true, columns predicted: " + ", ".join(rep["classes"]) + "):")
        L.append("")
        L += _confusion_block(rep)
    rep = report_of(evals.get("int8_test_real", {}), "masknet")
    if rep is not None:
        L.append("")
        L.append("### Mask-net on the real photos of the test split (int8)")
        L.append("")
        L.append(markdown_report(rep))
        L.append("")
        L += _confusion_block(rep)
    L.append("")
    L.append("## Cascade vs single 5-class model")
    L.append("")
    L.append("| split | cascade 5-class acc | cascade bal. acc | 5-class model acc | 5-class model bal. acc |")
    L.append("|---|---:|---:|---:|---:|")
    for name in ("int8_val", "int8_test", "int8_test_real"):
        c = _brief(evals.get(name, {}), "cascade")
        f = _brief(evals.get(name, {}), "fiveclass")
        if c or f:
            L.append(f"| {name} | {_fmt(c and c['accuracy'])} | {_fmt(c and c['balanced_accuracy'])} | "
                     f"{_fmt(f and f['accuracy'])} | {_fmt(f and f['balanced_accuracy'])} |")
    L.append("")
    L.append("The 5-class level leaves out `mask_incorrect` photos that have no sub-type (the real photos of "
             "wrongly worn masks: the 5-class model cannot be trained or scored on them). At the Mask-net level "
             "every image counts (the 5-class model's sub-types count as mask_incorrect):")
    L.append("")
    L.append("| split | cascade (Mask-net) acc | bal. acc | 5-class model acc | bal. acc |")
    L.append("|---|---:|---:|---:|---:|")
    for name in ("int8_val", "int8_test", "int8_test_real"):
        c = _brief(evals.get(name, {}), "masknet")
        f = _brief(evals.get(name, {}), "fiveclass_as_masknet")
        if c:  # without a 5-class model the row still gives the cascade's figures
            five = f"{f['accuracy']:.4f} | {f['balanced_accuracy']:.4f}" if f else "– | –"
            L.append(f"| {name} | {c['accuracy']:.4f} | {c['balanced_accuracy']:.4f} | {five} |")
    for name in ("int8_val", "int8_test", "int8_test_real"):
        rep = report_of(evals.get(name, {}), "fiveclass_as_masknet")
        if rep:
            r = rep["per_class"]["mask_incorrect"]
            L.append("")
            L.append(f"{name}: the 5-class model finds {r['recall']:.4f} of the mask_incorrect images at the Mask-net level "
                     f"(support {r['support']}).")
    L.append("")
    L.append("## Latency (LiteRT on this workstation, one image, median of "
             f"{args.latency_runs} runs after warm-up)")
    L.append("")
    L.append("| model | size (MB) | " + " | ".join(f"{t} thread(s) ms" for t in args.threads) + " |")
    L.append("|---|---:|" + "---:|" * len(args.threads))
    for key, v in latency.items():
        task, kind = key.rsplit("_", 1)
        f = staging / kind / f"{task}_{kind}.tflite"
        L.append(f"| {key} | {f.stat().st_size / 1e6:.2f} | " + " | ".join(f"{v[f'threads{t}']['median_ms']:.2f}" for t in args.threads) + " |")
    L.append("")
    L.append("A cascade costs Mask-net on every face plus I-Mask-net on mask_incorrect faces only. I-Mask-net "
             "reads Mask-net's trunk features, so its rows time only its layers after the cut.")
    L.append("Whole-pipeline figures (every stage, frames per second, memory) and the command to run on a Pi: "
             "[README: Benchmarking on the device](../README.md#benchmarking-on-the-device).")
    L.append("")
    if args.latency_json.is_file():
        sweep = json.loads(args.latency_json.read_text())
        L.append("## Input size: measured latency")
        L.append("")
        L.append(f"Random-weight Mask-nets (timing does not depend on the weights), `masknet export --latency-sweep "
                 f"{','.join(sweep['sizes'])}` ({sweep['machine']}):")
        L.append("")
        keys = [k for k in next(iter(sweep["sizes"].values())) if k.endswith(tuple(f"threads{t}" for t in range(1, 65)))]
        L.append("| input | int8 MB | " + " | ".join(f"{k} ms" for k in keys) + " |")
        L.append("|---:|---:|" + "---:|" * len(keys))
        for size, e in sweep["sizes"].items():
            L.append(f"| {size} | {e['int8_bytes'] / 1e6:.2f} | " + " | ".join(f"{e[k]['median_ms']:.2f}" for k in keys) + " |")
        L.append("")
    compare = [r for r in [runs, *args.compare_runs] if r.is_dir()]
    if len(compare) > 1:
        L.append("## Runs compared: the paper's configuration beside the alternatives")
        L.append("")
        L.append("Validation results of each training run (the first is the one exported). The paper's configuration "
                 "is 23 trainable layers + Dense 512 head for Mask-net, 34 + dropout head for I-Mask-net. Runs on "
                 "different builds of the data set (dataset.json hash) are not comparable with each other, only "
                 "within one build.")
        L.append("")
        L.append("| runs | data set | model | input | trainable layers | real-photo weight | best epoch | val loss "
                 "| val acc | val bal. acc | val real acc | val real bal. acc |")
        L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in compare:
            for task in TASKS:
                if (r / task / SUMMARY_JSON).is_file():
                    s = read_summary(r / task)
                    v = s["val"]
                    cfg_file = r / task / "config.json"
                    weight = json.loads(cfg_file.read_text())["train"].get("origin_weight", {}).get("real", 1.0) if cfg_file.is_file() else None
                    L.append(f"| {r} | {s['dataset_sha256'][:12]} | {task} | {s['input_size']} | {s.get('trainable_layers', '')} "
                             f"| {'–' if weight is None else f'{weight:g}'} | {s['best_epoch']} | {v['val_loss']:.4f} | {v['val_accuracy']:.4f} "
                             f"| {v['val_balanced_accuracy']:.4f} | {_fmt(v['val_real_accuracy'])} "
                             f"| {_fmt(v.get('val_real_balanced_accuracy'))} |")
        L.append("")
    return "\n".join(L) + "\n"


def _subtype_rate(result: dict[str, Any] | None) -> tuple[float | None, float | None, int]:
    """From the cascade's confusion on sub-type photos: the share whose final verdict names the
    right sub-type, and the share of mask_over_mouth_chin photos called a correctly worn mask."""
    rep = report_of(result or {}, "cascade")
    if rep is None:
        return None, None, 0
    classes, cm = rep["classes"], rep["confusion"]
    subs = [i for i, c in enumerate(classes) if c.startswith("mask_over_")]
    n = sum(sum(cm[i]) for i in subs)
    right = sum(cm[i][i] for i in subs)
    k, m = classes.index("mask_over_mouth_chin"), classes.index("mask")
    under = sum(cm[k])
    return (right / n if n else None), (cm[k][m] / under if under else None), n


def render_real(evals: dict[str, dict[str, Any]], data: Path, staging: Path) -> list[str]:
    """Before (the models shipped until now) / after tables on the real photos only."""
    L: list[str] = []
    kinds = [k for k in ("before", "int8", "float") if f"{k}_test_real" in evals]
    if not kinds:
        return L
    head = {"before": "before (shipped until now, int8)", "int8": "after, int8", "float": "after, float"}
    L.append("## Real photos only: the yardstick (issue 11)")
    L.append("")
    L.append("Only photos (`origin == real` in index.csv: no drawn or recoloured masks); val chooses, test reports. "
             "`diverse` = the UTKFace / LFW unmasked faces, `real` = the class-folder photos incl. the real sub-type "
             "photos, `rwmfd` = scene faces after the audit.")
    L.append("")
    L.append("| photos | level | " + " | ".join(f"{head[k]} bal. acc" for k in kinds) + " | n |")
    L.append("|---|---|" + "---:|" * len(kinds) + "---:|")
    names = sorted({n.split("_", 1)[1] for n in evals if n.startswith(("int8_val_real", "int8_test_real"))},
                   key=lambda n: (not n.startswith("val"), n))
    for name in names:
        for level in ("masknet", "cascade", "imasknet"):
            vals = [_bal(evals.get(f"{k}_{name}"), level) for k in kinds]
            if all(v is None for v in vals):
                continue
            n = (evals.get(f"int8_{name}") or {}).get(f"{level}.n", "")
            L.append(f"| {name} | {level} | " + " | ".join(_fmt(v) for v in vals) + f" | {n} |")
    L.append("")
    L.append("Mask-net recall per class on the real test photos, and the cascade on the real sub-type photos:")
    L.append("")
    L.append("| figure | " + " | ".join(head[k] for k in kinds) + " |")
    L.append("|---|" + "---:|" * len(kinds))
    for cls in ("mask", "mask_incorrect", "no_mask"):
        vals = []
        for k in kinds:
            rep = report_of(evals.get(f"{k}_test_real") or {}, "masknet")
            vals.append(rep["per_class"][cls]["recall"] if rep and rep["per_class"][cls]["support"] else None)
        L.append(f"| Mask-net {cls} recall (test real) | " + " | ".join(_fmt(v) for v in vals) + " |")
    vals = []
    for k in kinds:
        rep = report_of(evals.get(f"{k}_test_real_diverse") or {}, "masknet")
        vals.append(rep["per_class"]["no_mask"]["recall"] if rep and rep["per_class"]["no_mask"]["support"] else None)
    L.append("| Mask-net no_mask recall, diverse unmasked test faces | " + " | ".join(_fmt(v) for v in vals) + " |")
    rates = [_subtype_rate(evals.get(f"{k}_test_real")) for k in kinds]
    L.append("| cascade: right sub-type on real sub-type photos (test) | " + " | ".join(_fmt(r[0]) for r in rates) + " |")
    L.append("| cascade: mask_over_mouth_chin called mask (test real) | " + " | ".join(_fmt(r[1]) for r in rates) + " |")
    L.append("| real sub-type photos in test | " + " | ".join(str(r[2]) for r in rates) + " |")
    L.append("")
    L.append("### Resolution curve (real test photos, each face shrunk to N px and back)")
    L.append("")
    curves = {k: evals.get(f"{k}_curve") for k in kinds if evals.get(f"{k}_curve")}
    if curves:
        L.append("| face px | " + " | ".join(f"{head[k]} Mask-net bal. acc" for k in curves) + " | after int8: mask / mask_incorrect / no_mask recall |")
        L.append("|---:|" + "---:|" * len(curves) + "---|")
        for px in CURVE_PX:
            vals = [_bal(c.get(str(px)), "masknet") for c in curves.values()]
            after = (curves.get("int8") or {}).get(str(px)) or {}
            per = after.get("masknet.per_class") or {}
            rec = " / ".join(_fmt(per[c]["recall"]) if c in per else "–" for c in ("mask", "mask_incorrect", "no_mask"))
            L.append(f"| {px} | " + " | ".join(_fmt(v) for v in vals) + f" | {rec} |")
        L.append("")
    L.append("Reproduce:")
    L.append("")
    L.append("```")
    L.append(f"masknet evaluate {data}/test --models {staging}/int8 --origin real [--source real|diverse|rwmfd]")
    L.append(f"masknet evaluate {data}/val --models {staging}/int8 --origin real")
    L.append(f"masknet evaluate {data}/test --models {staging}/int8 --origin real --face-px {','.join(map(str, CURVE_PX))} --json curve.json")
    L.append("```")
    L.append("")
    return L
