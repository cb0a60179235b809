"""Which layers of an exported classifier lose most to int8: TFLite's quantization debugger.

    python tools/int8_layer_error.py RUN_DIR DATA [--calibration calibration/calibration.txt]
                                     [--split val] [--photos 120] [--top 12]

RUN_DIR is a training run (`model.keras`, `config.json`) as `masknet quantize` reads it; DATA the
data set its calibration list is relative to. The run is converted as `masknet quantize` converts
it (same calibration, same export form, every op integer) and the debugger feeds it real photos of
DATA/SPLIT (seeded pick; every other one shrunk to a 24, 32 or 96 px face as `masknet evaluate
--face-px` does). Printed per op: its output error against the float model given the same input,
as RMS in quantization steps (rounding alone gives 0.29), and the mean error. The figures behind
`--float-layers`' first default, the one depthwise conv (docs/training.md, "Where the int8 error
comes from"); the default now, the stem, was chosen by agreement with float instead
(`tools/int8_agreement.py`; "The stem in float").
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.evaluate import list_images, shrink_face  # noqa: E402
from convert.files import load_rgb  # noqa: E402
from convert.quantize import (  # noqa: E402
    calibration_images,
    export_form,
    export_role,
    int8_converter,
    read_calibration,
)
from edge.crop import CROP_MARGIN, to_model_input  # noqa: E402


def layer_errors(run: Path, data: Path, calibration: Path, split: str, photos: int) -> list[dict[str, object]]:
    import keras
    import tensorflow as tf

    config = json.loads((run / "config.json").read_text())
    model = keras.models.load_model(run / "model.keras", compile=False)
    size = int(model.input.shape[1])
    task, cut = config["task"], config.get("cut")
    role = export_role(task, cut)
    if role == "reader":
        raise SystemExit(f"{run}: exported from the cut on (a feature reader); run this on the Mask-net run")
    calib = calibration_images(read_calibration(calibration, data), size)
    export, representative, _shared = export_form(model, calib, task, role, cut)
    items = list_images(data / split, origin="real")
    pick = np.random.default_rng(0).choice(len(items), min(photos, len(items)), replace=False)
    debug = []
    for k, i in enumerate(pick):
        crop = load_rgb(items[i][0])
        if k % 2:
            crop = shrink_face(crop, (24, 32, 96)[k % 3], CROP_MARGIN)
        debug.append(to_model_input(crop, size).astype(np.float32))

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=int8_converter(export, lambda: iter(representative)),
        debug_dataset=lambda: ([x[None]] for x in debug))
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    rows = []
    for r in csv.DictReader(buf):
        scale = float(r["scale"])
        rows.append({"op": r["op_name"], "layer": r["tensor_name"].split(";")[0],
                     "rms_steps": float(np.sqrt(float(r["mean_squared_error"])) / scale) if scale else 0.0,
                     "mean_error": float(r["mean_error"])})
    return sorted(rows, key=lambda r: -float(r["rms_steps"]))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="training run folder, e.g. runs/final/masknet")
    ap.add_argument("data", type=Path, help="data set folder, e.g. data/build")
    ap.add_argument("--calibration", type=Path, default=Path("calibration/calibration.txt"))
    ap.add_argument("--split", default="val", help="split whose real photos feed the debugger (default val)")
    ap.add_argument("--photos", type=int, default=120, help="photos to feed (default 120)")
    ap.add_argument("--top", type=int, default=12, help="ops to print, worst first (default 12)")
    args = ap.parse_args(argv)
    rows = layer_errors(args.run, args.data, args.calibration, args.split, args.photos)
    print(f"{'op':<18} {'RMS error (steps)':>17} {'mean error':>11}  layer")
    for r in rows[: args.top]:
        print(f"{r['op']:<18} {r['rms_steps']:>17.3f} {r['mean_error']:>11.4f}  {r['layer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
