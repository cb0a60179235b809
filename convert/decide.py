"""``masknet decide DATA_DIR``: choose Mask-net's prior shift for wrongly worn masks on real photos.

The models are trained mostly on drawn and recoloured wrongly worn masks, so on real photos they
under-call ``mask_incorrect``: a mask under the nose gets the green light. Adding a constant to
the log-probability of ``mask_incorrect`` before the answer is taken (the manifest's
``class_bias``) shifts the class prior towards what the door meets. It is one number, swept over
``GRID`` on the real validation photos of DATA_DIR (index.csv ``origin == real``) and chosen by
Mask-net balanced accuracy there, the project's yardstick; ties go to the smaller shift. All the
images of DATA_DIR (drawn masks too) hold a veto: a shift under which the plain arg-max scores
higher on them in ``VETO`` of paired bootstrap resamples is not taken, because every shift trades
masks called wrong for wrongly worn masks caught, and the drawn ones are where that trade shows
first. Test photos never take part. ``--write`` records it in the manifest (the model files stay as they
are); ``masknet export`` makes the same choice for every set of models it stages.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from convert.evaluate import list_images, read_origins
from convert.files import load_rgb
from convert.metrics import classification_report, resampled_balanced_accuracy
from edge.cascade import Classifier
from edge.classes import MASK_INCORRECT, MASKNET_CLASSES, masknet_label
from edge.crop import to_model_input
from edge.errors import MasknetError
from edge.manifest import load_manifest, write_manifest

TASK = "masknet"
GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(41))  # 0.00 .. 2.00
RESAMPLES = 2000
# the export gate's standard (--gate-confidence): a loss seen in 90 % of the resamples is real
VETO = 0.9


def probabilities(models: Path, data_dir: Path, num_threads: int | None = 2,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask-net's probabilities without any class_bias (n x 3), the true Mask-net class indices,
    and which images are real photos (index.csv origin == real), for every image of DATA_DIR."""
    manifest = load_manifest(models)
    if TASK not in manifest.models:
        raise MasknetError(f"{manifest.path}: no models.{TASK} to choose a class_bias for")
    spec = dataclasses.replace(manifest.models[TASK], class_bias={})
    data_dir = Path(data_dir)
    if data_dir.is_dir() and not any((d / "index.csv").is_file() for d in (data_dir, data_dir.parent)):
        raise MasknetError(f"{data_dir}: no index.csv here or in the folder above; the real photos decide "
                           "(index.csv origin == real), so give a split of `masknet dataset build`, e.g. data/build/val")
    net = Classifier(spec, num_threads, manifest.path)
    items = list_images(data_dir)
    origins = read_origins(data_dir)
    real = np.array([origins.get(path) == "real" for path, _ in items])
    if not real.any():
        raise MasknetError(f"{data_dir}: no real photos (index.csv origin == real) to choose a class_bias on")
    bar: Any = items
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(items, desc="decide", unit="img", mininterval=5)
        except ImportError:
            pass
    probs = np.array([net(to_model_input(load_rgb(path), spec.input_size))[2] for path, _ in bar], dtype=np.float64)
    order = list(spec.classes)
    truth = np.array([order.index(masknet_label(label)) for _, label in items], dtype=np.intp)
    return probs, truth, real


def sweep(probs: np.ndarray, truth: np.ndarray, real: np.ndarray, classes: tuple[str, ...] = MASKNET_CLASSES,
          cls: str = MASK_INCORRECT, grid: tuple[float, ...] = GRID, resamples: int = RESAMPLES) -> list[dict[str, Any]]:
    """Per offset of ``cls``: Mask-net balanced accuracy and recall per class on the real photos;
    balanced accuracy on all the images; and ``whole_behind``, the share of paired bootstrap
    resamples of all the images in which no shift at all scores higher (seeded: the same every run)."""
    logp = np.log(np.maximum(probs, 1e-12))
    k = classes.index(cls)
    answers = []
    for b in grid:
        shifted = logp.copy()
        shifted[:, k] += b
        answers.append(shifted.argmax(1))
    plain = logp.argmax(1)
    # one draw of resamples for the plain arg-max and every offset: the comparison is paired
    resampled = resampled_balanced_accuracy(truth, [plain, *answers], resamples)
    rows = []
    for b, answer, bal in zip(grid, answers, resampled[1:], strict=True):
        rep = classification_report(truth[real], answer[real], len(classes), classes)
        rows.append({
            "offset": b,
            "balanced_accuracy": rep["balanced_accuracy"],
            "recall": {c: rep["per_class"][c]["recall"] for c in classes},
            "whole": classification_report(truth, answer, len(classes), classes)["balanced_accuracy"],
            "whole_behind": 0.0 if b == 0 else float(np.mean(resampled[0] > bal)),
        })
    return rows


def best_offset(rows: list[dict[str, Any]], veto: float = VETO) -> float:
    """The offset with the highest balanced accuracy on the real photos, of those that do not lose
    on all the images beyond the noise (no shift ahead in ``veto`` of the resamples or more);
    of equals, the smallest (the least change)."""
    allowed = [r for r in rows if r["whole_behind"] < veto]
    top = max(r["balanced_accuracy"] for r in allowed)
    return min(r["offset"] for r in allowed if r["balanced_accuracy"] >= top - 1e-12)


def record_class_bias(models: Path, offset: float, cls: str = MASK_INCORRECT) -> Path:
    """Rewrite MODELS/manifest.json with Mask-net's class_bias set ({} for 0); files untouched."""
    manifest = load_manifest(models)
    specs = dict(manifest.models)
    specs[TASK] = dataclasses.replace(specs[TASK], class_bias={cls: offset} if offset else {})
    return write_manifest(models, manifest.classifiers, specs, manifest.crop)


def choose(models: Path, data_dir: Path, progress: bool = True) -> tuple[float, list[dict[str, Any]], int]:
    """(chosen offset, the sweep, number of real photos) for the models in MODELS on DATA_DIR."""
    probs, truth, real = probabilities(models, data_dir, progress=progress)
    classes = load_manifest(models).models[TASK].classes
    rows = sweep(probs, truth, real, classes)
    return best_offset(rows), rows, int(real.sum())


def sweep_table(rows: list[dict[str, Any]], chosen: float, every: float = 0.25) -> str:
    classes = list(rows[0]["recall"])
    lines = ["offset  real: balanced acc  " + "  ".join(f"{c:>14}" for c in classes)
             + "  all: balanced acc  no shift ahead"]
    for r in rows:
        b = r["offset"]
        if b == chosen or abs(b / every - round(b / every)) < 1e-9:
            mark = "  <- chosen" if b == chosen else ("  (vetoed)" if r["whole_behind"] >= VETO else "")
            recalls = "  ".join(f"{r['recall'][c]:>14.4f}" for c in classes)
            lines.append(f"{b:>6.2f}  {r['balanced_accuracy']:>18.4f}  {recalls}  {r['whole']:>17.4f}  "
                         f"{r['whole_behind']:>14.1%}{mark}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                   help="validation folder of class-id subfolders with index.csv (e.g. data/build/val); only its real photos count")
    p.add_argument("--models", type=Path, default=None, metavar="DIR", help="folder with manifest.json (default: models/)")
    p.add_argument("--write", action="store_true", help="record the chosen offset in the manifest (default: only print the sweep)")


def run(args: argparse.Namespace) -> int:
    from edge.paths import models_dir

    models = args.models if args.models is not None else models_dir()
    offset, rows, n = choose(models, args.data_dir)
    print(f"{n} real photos of {args.data_dir} (and all its images for the veto); Mask-net with "
          f"log p({MASK_INCORRECT}) + offset")
    print(sweep_table(rows, offset))
    base, best = rows[0], next(r for r in rows if r["offset"] == offset)
    print(f"chosen offset {offset:.2f}: real photos {best['balanced_accuracy']:.4f} (without: {base['balanced_accuracy']:.4f}), "
          f"all images {best['whole']:.4f} (without: {base['whole']:.4f})")
    if args.write:
        print(f"wrote {record_class_bias(models, offset)}")
    else:
        print("dry run: --write records it in the manifest")
    return 0
