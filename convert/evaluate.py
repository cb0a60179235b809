"""``masknet evaluate DATA_DIR``: score the exported classifiers on a folder of labelled faces.

Runs on the edge install (LiteRT, OpenCV, numpy; never TensorFlow). DATA_DIR holds class-id
subfolders (any subset of the six ids). Every image is a face crop, resized with the runtime's
own ``to_model_input``; with ``--detect`` BlazeFace finds the largest face first and it is
cropped with the manifest's crop, exactly as the door does.

Scoring levels (JSON keys are flat: ``masknet.accuracy`` ...):

- ``masknet.*``: every image, true label = its Mask-net class (sub-types count as mask_incorrect).
- ``imasknet.*``: sub-type images only, I-Mask-net on every one whatever Mask-net says (the
  paper's Table 2); when it reads Mask-net's features, Mask-net's trunk still computes them.
- ``cascade.*``: images with a 5-class label (mask, no_mask, sub-types): the door's final verdict,
  i.e. Mask-net's answer, replaced by I-Mask-net's sub-type when Mask-net says mask_incorrect.
  A sub-type image is right only if Mask-net says mask_incorrect AND I-Mask-net names the sub-type.
- ``fiveclass.*``: the same images through the single 5-class model, when the manifest has one;
  ``fiveclass_as_masknet.*``: its answers mapped to the Mask-net classes, over every image (the
  5-class level cannot score sub-type-less mask_incorrect photos; this level can).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from convert.files import IMAGE_EXTS, load_rgb
from convert.metrics import classification_report, format_report, save_confusion_png
from edge.cascade import Classifier
from edge.classes import (
    ALL_CLASSES,
    FIVE_CLASSES,
    MASK_INCORRECT,
    MASKNET_CLASSES,
    SUBTYPES,
    masknet_label,
)
from edge.cli_io import parse_number_list
from edge.crop import CropSpec, to_model_input
from edge.errors import MasknetError
from edge.manifest import load_manifest


def list_images(
    data_dir: Path, origin: str | None = None, source: str | None = None, exclude: frozenset[str] = frozenset()
) -> list[tuple[Path, str]]:
    """(image, class id) for every image in DATA_DIR/<class_id>/, optionally of one origin and/or
    one data-set source (index.csv's `source` column: real, diverse, rwmfd, ...) only, and
    without the images made from the photos in ``exclude`` (index.csv's `base` column)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MasknetError(f"{data_dir}: evaluation folder not found")
    items: list[tuple[Path, str]] = []
    # hidden folders (.ipynb_checkpoints, .cache) are tools' leftovers, not classes
    for sub in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name not in ALL_CLASSES:
            raise MasknetError(f"{sub}: unknown class folder; expected one of {', '.join(ALL_CLASSES)}")
        items += [(f.resolve(), sub.name) for f in sorted(sub.iterdir()) if f.suffix.lower() in IMAGE_EXTS]
    if not items:
        raise MasknetError(f"{data_dir}: no images in class folders ({', '.join(ALL_CLASSES)})")
    filters = [(column, wanted) for column, wanted in (("origin", origin), ("source", source)) if wanted is not None]
    if not filters and not exclude:
        return items
    # one read of index.csv for every filter (31,000 rows in the default build)
    rows = read_index(data_dir, filters[0][0] if filters else "exclude")
    for column, wanted in filters:
        items = [(p, c) for p, c in items if rows.get(p, {}).get(column) == wanted]
        if not items:
            raise MasknetError(f"{data_dir}: no images of {column} {wanted!r} (from index.csv)")
    if exclude:
        items = [(p, c) for p, c in items if rows.get(p, {}).get("base") not in exclude]
        if not items:
            raise MasknetError(f"{data_dir}: every image is made from an excluded photo")
    return items


def read_photo_list(path: Path) -> frozenset[str]:
    """The `base` column of a CSV (photo file + face number, as in index.csv), e.g. the photos a
    set of models was trained on (convert/recipes/shipped_v2_train_photos.csv). A CSV with a
    `split` column too (an index.csv, convert/recipes/split_pins.csv) gives its train rows."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise MasknetError(f"{path}: cannot read the photo list ({exc.strerror})") from None
    if not rows or "base" not in rows[0]:
        raise MasknetError(f"{path}: expected a CSV with a 'base' column (photo#face, as in index.csv)")
    return frozenset(r["base"] for r in rows if r.get("split", "train") == "train")


def empty_class_folders(data_dir: Path) -> list[str]:
    """Class folders of DATA_DIR that hold no image: their report rows are 0 for want of images."""
    return [
        p.name
        for p in sorted(Path(data_dir).iterdir())
        if p.is_dir() and p.name in ALL_CLASSES and not any(f.suffix.lower() in IMAGE_EXTS for f in p.iterdir())
    ]


def read_index(data_dir: Path, wanted_by: str) -> dict[Path, dict[str, str]]:
    """image -> its row of the data set's index.csv (in DATA_DIR or the folder above it);
    ``wanted_by`` names the option that needs it, for the error."""
    for index in (data_dir / "index.csv", data_dir.parent / "index.csv"):
        if index.is_file():
            with open(index, newline="", encoding="utf-8") as f:
                return {
                    (Path(r["path"]) if Path(r["path"]).is_absolute() else index.parent / r["path"]).resolve(): r
                    for r in csv.DictReader(f)
                }
    raise MasknetError(f"{data_dir}: --{wanted_by} needs index.csv in this folder or the one above it")


def read_index_column(data_dir: Path, column: str) -> dict[Path, str]:
    """image -> one column of the data set's index.csv (in DATA_DIR or the folder above it)."""
    return {p: r.get(column, "") for p, r in read_index(data_dir, column).items()}


def read_origins(data_dir: Path) -> dict[Path, str]:
    """image -> origin from the data set's index.csv (in DATA_DIR or the folder above it)."""
    return read_index_column(data_dir, "origin")


def shrink_face(crop: np.ndarray, face_px: int, margin: float | None = None) -> np.ndarray:
    """The crop as the door would make it of a face `face_px` pixels wide: shrunk to that size
    (the crop's face is its side / (1 + margin), the crop contract's margin) and blown back up
    linearly, as crop_face enlarges a small frame region."""
    import cv2

    from edge.crop import CROP_MARGIN

    margin = CROP_MARGIN if margin is None else margin
    h, w = crop.shape[:2]
    side = max(2, round(face_px * (1.0 + margin)))
    if side >= min(h, w):
        return crop
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def largest_face_crop(detector: Any, image: np.ndarray, crop: CropSpec) -> np.ndarray | None:
    """The largest face ``detector`` finds, cut as the door cuts it (the manifest's crop)."""
    from edge.crop import pad_image

    # tight face crops fill the frame, where BlazeFace misses them: look in a padded copy
    padded, (dx, dy) = pad_image(image)
    faces = [f.translated(-dx, -dy) for f in detector.detect(padded)]
    if not faces:
        return None
    face = max(faces, key=lambda f: f.width * f.height)
    return crop.cut(image, face.box, face.keypoints)


def evaluate(
    data_dir: Path,
    models_dir: Path,
    detect: bool = False,
    num_threads: int | None = None,
    origin: str | None = None,
    progress: bool = True,
    source: str | None = None,
    face_px: int | None = None,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Run every model of the manifest over DATA_DIR and return the flat metrics dict.

    `face_px`: every crop is first shrunk so its face is that many pixels wide and blown back up
    (`shrink_face`): how the models fare on faces that far from the camera."""
    manifest = load_manifest(models_dir)
    items = list_images(data_dir, origin, source, exclude)
    # models that read another's features run after it, on what its last call exposed
    order = sorted(manifest.models, key=lambda n: manifest.models[n].features_of is not None)
    nets = {name: Classifier(manifest.models[name], num_threads, manifest.path) for name in order}
    raw = {name: net.reads_raw(nets[net.spec.features_of]) for name, net in nets.items() if net.takes_features}
    detector = None
    if detect:
        from edge.detector import create_detector

        detector = create_detector("blazeface_short", num_threads=num_threads)
    bar: Any = items
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(items, desc="evaluate", unit="img", mininterval=5)
        except ImportError:  # the edge install has no tqdm; run quietly
            pass
    rows: list[dict[str, str]] = []
    root = Path(data_dir).resolve()  # list_images gives resolved paths: answers are keyed relative to it
    unreadable: list[str] = []
    no_face = 0
    for path, label in bar:
        try:
            image = load_rgb(path)
        except MasknetError:
            unreadable.append(str(path))
            continue
        crop = image
        if detector is not None:
            found = largest_face_crop(detector, image, manifest.crop)
            if found is None:
                # scored on the whole image so a miss still counts against the pipeline's input
                no_face += 1
            else:
                crop = found
        if face_px is not None:
            crop = shrink_face(crop, face_px, manifest.crop.margin)
        row = {"label": label, "image": _relative(path, root)}
        for name, net in nets.items():
            if net.takes_features:
                x = nets[net.spec.features_of].features(raw=raw[name])
            else:
                x = to_model_input(crop, net.spec.input_size)
            row[name] = net(x)[0]
        rows.append(row)
    if not rows:
        raise MasknetError(f"{data_dir}: none of the images could be read")
    result: dict[str, Any] = {
        "n": len(rows),
        "counts": dict(sorted(Counter(r["label"] for r in rows).items())),
        "models": str(Path(models_dir)),
        "pipeline": manifest.classifiers,
        "detect": detect,
        "origin": origin,
        "source": source,
        "face_px": face_px,
        "excluded_photos": len(exclude),
        "unreadable": unreadable,
    }
    if detect:
        result["no_face"] = no_face

    def put(prefix: str, y_true: list[str], y_pred: list[str], classes: tuple[str, ...], pred_classes: tuple[str, ...]) -> None:
        if not y_true:
            return
        rep = classification_report(
            np.array([classes.index(t) for t in y_true]),
            np.array([pred_classes.index(p) for p in y_pred]),
            len(classes), pred_classes, len(pred_classes),
        )
        for key, value in rep.items():
            result[f"{prefix}.{key}"] = value

    if "masknet" in nets:
        put("masknet", [masknet_label(r["label"]) for r in rows], [r["masknet"] for r in rows],
            MASKNET_CLASSES, MASKNET_CLASSES)
        # per image, so that two sets of models can be compared on the same images (the export gate)
        result["masknet.answers"] = {r["image"]: r["masknet"] for r in rows}
    if "imasknet" in nets:
        sub = [r for r in rows if r["label"] in SUBTYPES]
        put("imasknet", [r["label"] for r in sub], [r["imasknet"] for r in sub], SUBTYPES, SUBTYPES)
    five = [r for r in rows if r["label"] != MASK_INCORRECT]
    if "masknet" in nets and "imasknet" in nets:
        put("cascade", [r["label"] for r in five],
            [r["imasknet"] if r["masknet"] == MASK_INCORRECT else r["masknet"] for r in five],
            FIVE_CLASSES, FIVE_CLASSES)
    if "fiveclass" in nets:
        put("fiveclass", [r["label"] for r in five], [r["fiveclass"] for r in five], FIVE_CLASSES, FIVE_CLASSES)
        # the 5-class level leaves out mask_incorrect photos without a sub-type (real ones, mostly);
        # at the Mask-net level every image counts, so both pipelines answer the same question
        put("fiveclass_as_masknet", [masknet_label(r["label"]) for r in rows],
            [masknet_label(r["fiveclass"]) for r in rows], MASKNET_CLASSES, MASKNET_CLASSES)
    return result


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def report_of(result: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """The nested report of one level back out of the flat result."""
    if f"{prefix}.accuracy" not in result:
        return None
    keys = ("accuracy", "balanced_accuracy", "per_class", "confusion", "classes", "n")
    return {k: result[f"{prefix}.{k}"] for k in keys}


TITLES = {
    "masknet": "Mask-net (all images, 3 classes)",
    "imasknet": "I-Mask-net (sub-type images only)",
    "cascade": "Cascade, final verdict (5 classes)",
    "fiveclass": "Single 5-class model",
    "fiveclass_as_masknet": "Single 5-class model at the Mask-net level (sub-types count as mask_incorrect; all images)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder of class-id subfolders of face images")
    p.add_argument("--models", type=Path, default=None, metavar="DIR", help="folder with manifest.json (default: models/)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the numbers as JSON")
    p.add_argument("--detect", action="store_true", help="run the face detector and classify the largest face")
    p.add_argument("--confusion-png", type=Path, default=None, metavar="FILE", help="save the confusion matrices as a PNG")
    p.add_argument("--origin", default=None, help="only images of this origin (real, recoloured, synthetic) per index.csv")
    p.add_argument("--source", default=None, help="only images of this data-set source (real, diverse, rwmfd, ...) per index.csv")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="LiteRT threads per model (default: runtime's choice)")
    p.add_argument("--face-px", default=None, metavar="N,N,...",
                   help="resolution curve: shrink each crop's face to N px and back before the models, for each N "
                        "(e.g. 24,32,48,64,96,160); prints balanced accuracy and per-class recall per size")
    p.add_argument("--exclude", type=Path, default=None, metavar="CSV",
                   help="leave out the images made from the photos listed in CSV (column 'base', as in index.csv), "
                        "e.g. the photos some models were trained on")


CURVE_LEVELS = ("masknet", "cascade", "imasknet")


def resolution_curve(data_dir: Path, models: Path, sizes: list[int], **kwargs: Any) -> dict[str, Any]:
    """{"sizes": [...], "<size>": evaluate(..., face_px=size)} for every size."""
    return {"sizes": sizes, **{str(n): evaluate(data_dir, models, face_px=n, **kwargs) for n in sizes}}


def curve_table(curve: dict[str, Any], level: str = "masknet") -> str:
    """One row per face size: balanced accuracy and each class's recall at one scoring level."""
    rows = [curve[str(n)] for n in curve["sizes"] if f"{level}.accuracy" in curve[str(n)]]
    if not rows:
        return ""
    classes = list(rows[0][f"{level}.per_class"])
    lines = [f"{level}: face px  balanced acc  " + "  ".join(f"{c[:14]:>14}" for c in classes) + "       n"]
    for r in rows:
        per = r[f"{level}.per_class"]
        recalls = "  ".join(f"{per[c]['recall']:>14.4f}" if per[c]["support"] else f"{'-':>14}" for c in classes)
        lines.append(f"{r['face_px']:>16}  {r[f'{level}.balanced_accuracy']:>12.4f}  {recalls}  {r[f'{level}.n']:>6}")
    return "\n".join(lines)


def face_px_sizes(text: str) -> list[int]:
    """``--face-px 24,48,96``: the face widths of a resolution curve, 4 to 1024 px."""
    return parse_number_list(text, "--face-px", int, 4, 1024, " pixels")


def run(args: argparse.Namespace) -> int:
    from edge.paths import models_dir

    models = args.models if args.models is not None else models_dir()
    exclude = read_photo_list(args.exclude) if args.exclude else frozenset()
    if args.face_px:
        sizes = face_px_sizes(args.face_px)
        curve = resolution_curve(args.data_dir, models, sizes, detect=args.detect, num_threads=args.threads,
                                 origin=args.origin, source=args.source, exclude=exclude)
        first = curve[str(sizes[0])]
        print(f"{first['n']} images from {args.data_dir} ({', '.join(f'{k} {v}' for k, v in first['counts'].items())})"
              f"; models {models}; each crop's face shrunk to N px and back")
        for level in CURVE_LEVELS:
            table = curve_table(curve, level)
            if table:
                print()
                print(table)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(curve, indent=2) + "\n", encoding="utf-8")
            print(f"\nwrote {args.json}")
        return 0
    result = evaluate(args.data_dir, models, detect=args.detect, num_threads=args.threads, origin=args.origin,
                      source=args.source, exclude=exclude)
    print(f"{result['n']} images from {args.data_dir} ({', '.join(f'{k} {v}' for k, v in result['counts'].items())})"
          f"; models {models} ({result['pipeline']})")
    for name in empty_class_folders(args.data_dir):
        print(f"note: {Path(args.data_dir) / name} has no images: its rows read 0.0000 for want of images, not errors")
    if result["unreadable"]:
        print(f"skipped {len(result['unreadable'])} unreadable image(s), e.g. {result['unreadable'][0]}")
    if args.detect:
        print(f"no face found in {result['no_face']} image(s); those were classified whole")
    panels = []
    for prefix, title in TITLES.items():
        rep = report_of(result, prefix)
        if rep is not None:
            print()
            print(format_report(title, rep))
            panels.append((prefix, rep))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    if args.confusion_png:
        print(f"wrote {save_confusion_png(args.confusion_png, panels)}")
    return 0
