"""Where the int8 Mask-net loses against its float self: in the shared trunk or in the tail?

    python tools/int8_where.py RUN DATA_SPLIT [--origin real] [--face-px 24,96,160]
                               [--calibration calibration/calibration.txt] [--json OUT]

RUN is a trained Mask-net run as `masknet quantize` leaves it (`model.keras`, `config.json`,
`masknet_int8.tflite`); DATA_SPLIT a data set split folder (e.g. data/build/val). The model is
cut where training cut it (the shared trunk / the tail), and every image is classified four ways:

- ``float``: float trunk, float tail (the Keras model);
- ``int8 trunk``: the int8 file's own trunk features (dequantized), the float tail;
- ``int8 tail``: the float trunk, the tail alone quantized on the calibration images' features;
- ``int8``: the int8 file.

Printed per face size: balanced accuracy of each and the share of images where each agrees with
float. The trunk is the frozen ImageNet trunk every retrain shares (its int8 ranges come from the
calibration images alone), so the two middle rows say which half a fix has to address
(docs/training.md, "Where the int8 error comes from").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.evaluate import face_px_sizes, list_images, shrink_face  # noqa: E402
from convert.files import load_rgb  # noqa: E402
from convert.metrics import classification_report  # noqa: E402
from edge.classes import MASKNET_CLASSES, masknet_label  # noqa: E402
from edge.crop import CROP_MARGIN, to_model_input  # noqa: E402
from edge.errors import ConfigError  # noqa: E402
from edge.litert import TFLiteModel  # noqa: E402

WAYS = ("float", "int8 trunk", "int8 tail", "int8")


def where(run: Path, data: Path, origin: str | None, sizes: list[int | None], calibration: Path) -> list[dict]:
    import keras

    from convert.model import cut_saved
    from convert.quantize import calibration_images, quantize_keras, read_calibration

    cut = json.loads((run / "config.json").read_text())["cut"]
    model = keras.models.load_model(run / "model.keras", compile=False)
    trunk, tail = cut_saved(model, cut)
    int8 = TFLiteModel(run / "masknet_int8.tflite")
    size = int8.input_shape[1]
    feat_out = next(i for i, d in enumerate(int8.output_details) if len(d["shape"]) == 4)
    prob_out = 1 - feat_out

    calib = calibration_images(read_calibration(calibration, data.parent), size)
    calib_feats = trunk.predict(calib, batch_size=32, verbose=0)
    path = run / "masknet_tail_int8.tflite"  # the tail alone, quantized as I-Mask-net's reader is
    path.write_bytes(quantize_keras(tail, lambda: iter(calib_feats)))
    tail_int8 = TFLiteModel(path)

    items = list_images(data, origin=origin)
    truth = np.array([MASKNET_CLASSES.index(masknet_label(c)) for _, c in items])
    crops = [load_rgb(p) for p, _ in items]
    rows = []
    for px in sizes:
        x = np.stack([to_model_input(c if px is None else shrink_face(c, px, CROP_MARGIN), size) for c in crops])
        f_float = trunk.predict(x.astype(np.float32), batch_size=32, verbose=0)
        preds = {w: [] for w in WAYS}
        preds["float"] = tail.predict(f_float, batch_size=64, verbose=0).argmax(1)
        f_int8 = []
        for i in range(len(x)):
            outs = int8.run(x[i : i + 1])
            preds["int8"].append(int(np.asarray(outs[prob_out]).argmax()))
            f_int8.append(outs[feat_out])  # run() dequantizes with the tensor's scale and zero point
            q = tail_int8.run(f_float[i : i + 1])[0]
            preds["int8 tail"].append(int(np.asarray(q).argmax()))
        preds["int8 trunk"] = tail.predict(np.concatenate(f_int8), batch_size=64, verbose=0).argmax(1)
        row: dict = {"face_px": px or "crop", "n": len(items)}
        for w in WAYS:
            p = np.asarray(preds[w])
            row[w] = round(classification_report(truth, p, 3)["balanced_accuracy"], 4)
            row[f"{w} agrees"] = round(float(np.mean(p == preds["float"])), 4)
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="Mask-net run folder (model.keras, masknet_int8.tflite)")
    ap.add_argument("data", type=Path, help="data set split folder, e.g. data/build/val")
    ap.add_argument("--origin", default=None, help="only images of this origin (index.csv), e.g. real")
    ap.add_argument("--face-px", default="", help="also with faces shrunk to these widths, e.g. 24,96,160")
    ap.add_argument("--calibration", type=Path, default=Path("calibration/calibration.txt"))
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args(argv)
    try:
        sizes: list[int | None] = [None, *face_px_sizes(args.face_px)] if args.face_px else [None]
    except ConfigError as exc:
        ap.error(str(exc))
    for name, how in (("model.keras", "masknet train"), ("masknet_int8.tflite", "masknet quantize")):
        if not (args.run / name).is_file():
            ap.error(f"{args.run / name}: not found; make it with `{how}` first")
    rows = where(args.run, args.data, args.origin, sizes, args.calibration)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
