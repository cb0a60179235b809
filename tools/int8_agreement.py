"""How often an int8 export picks the same class as the float export of the same run.

    python tools/int8_agreement.py RUNS DATA_SPLIT [--origin real] [--face-px 32,48,96]

RUNS holds `masknet/` and `imasknet/` as `masknet quantize` leaves them (`*_int8.tflite` and
`*_float.tflite`); DATA_SPLIT is a data set split folder (e.g. data/build/val). For every image,
and again with each crop shrunk so its face is N px wide (as `masknet evaluate --face-px` does),
both Mask-nets classify it; I-Mask-net (each fed its own Mask-net's trunk features, as at the
door) classifies the sub-type images. Prints, per row, the balanced accuracy of each and the share
of images where the two agree: the figure that says whether a calibration choice matters
(docs/training.md, "Door views in the calibration").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.evaluate import face_px_sizes, list_images, shrink_face  # noqa: E402
from convert.files import load_rgb  # noqa: E402
from convert.metrics import classification_report  # noqa: E402
from edge.classes import MASKNET_CLASSES, SUBTYPES, masknet_label  # noqa: E402
from edge.crop import CROP_MARGIN, to_model_input  # noqa: E402
from edge.errors import ConfigError  # noqa: E402
from edge.litert import TFLiteModel  # noqa: E402


def _split(outputs: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(class probabilities, the other outputs: Mask-net's trunk features)."""
    probs = next(o for o in outputs if o.size == 3)
    return probs.reshape(-1), [o for o in outputs if o.size != 3]


def agreement(runs: Path, data: Path, origin: str | None, sizes: list[int | None]) -> list[dict[str, object]]:
    models = {
        (task, kind): TFLiteModel(runs / task / f"{task}_{kind}.tflite")
        for task in ("masknet", "imasknet")
        for kind in ("float", "int8")
    }
    size = models["masknet", "float"].input_shape[1]
    items = list_images(data, origin=origin)
    rows: list[dict[str, object]] = []
    for px in sizes:
        y, pred, sub_y, sub_pred = [], {"float": [], "int8": []}, [], {"float": [], "int8": []}
        for path, label in items:
            crop = load_rgb(path)
            if px is not None:
                crop = shrink_face(crop, px, CROP_MARGIN)
            x = to_model_input(crop, size)
            y.append(MASKNET_CLASSES.index(masknet_label(label)))
            for kind in ("float", "int8"):
                probs, features = _split(models["masknet", kind].run(x))
                pred[kind].append(int(probs.argmax()))
                if label in SUBTYPES:
                    sub = models["imasknet", kind].run(features[0])[0].reshape(-1)
                    sub_pred[kind].append(int(sub.argmax()))
            if label in SUBTYPES:
                sub_y.append(SUBTYPES.index(label))
        for level, truth, p in (("masknet", y, pred), ("imasknet", sub_y, sub_pred)):
            if not truth:
                continue
            t, f, q = np.array(truth), np.array(p["float"]), np.array(p["int8"])
            rows.append({"level": level, "face_px": px or "crop", "n": len(t),
                         "float": classification_report(t, f, 3)["balanced_accuracy"],
                         "int8": classification_report(t, q, 3)["balanced_accuracy"], "agree": float(np.mean(f == q))})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, help="runs folder with masknet/ and imasknet/ quantized")
    ap.add_argument("data", type=Path, help="data set split folder, e.g. data/build/val")
    ap.add_argument("--origin", default=None, help="only images of this origin (index.csv), e.g. real")
    ap.add_argument("--face-px", default="", help="also with faces shrunk to these widths, e.g. 32,48,96")
    args = ap.parse_args(argv)
    try:
        sizes: list[int | None] = [None, *face_px_sizes(args.face_px)] if args.face_px else [None]
    except ConfigError as exc:
        ap.error(str(exc))
    print(f"{'level':<9} {'face px':>7} {'n':>6} {'float bal.':>10} {'int8 bal.':>10} {'agree':>7}")
    for r in agreement(args.runs, args.data, args.origin, sizes):
        print(f"{r['level']:<9} {r['face_px']!s:>7} {r['n']:>6} {r['float']:>10.4f} {r['int8']:>10.4f} {r['agree']:>7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
