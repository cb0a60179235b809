"""Full-integer int8 post-training quantization (``masknet quantize``).

Models are quantized with uint8 input (the camera's pixels go straight in: the model's own
Rescaling layer turns them into [-1, 1], so the input scale is 1.0 and zero point 0), per-channel
int8 weights, int8 activations, and uint8 output (softmax probabilities with scale 1/256). Every
op is integer, so the same file also runs on integer-only accelerators.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, ModelError


def _tf() -> Any:
    import tensorflow as tf

    return tf


def quantize_keras(
    model: Any,
    representative: Callable[[], Iterable[np.ndarray]],
    output_dtype: str = "uint8",
) -> bytes:
    """Convert a Keras model (float input of 0..255 pixels) to a full-integer TFLite flatbuffer.

    ``representative`` yields single images (HxWx3, 0..255) or batches of one; the converter
    runs them through the float model to pick each activation's range.
    """
    tf = _tf()
    if output_dtype not in ("uint8", "int8", "float32"):
        raise ConfigError(f"output dtype {output_dtype!r}: expected uint8, int8 or float32")

    def gen() -> Iterator[list[np.ndarray]]:
        for x in representative():
            x = np.asarray(x, dtype=np.float32)
            if x.ndim == 3:
                x = x[np.newaxis]
            yield [x]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    if output_dtype != "float32":
        converter.inference_output_type = tf.uint8 if output_dtype == "uint8" else tf.int8
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises many unrelated types; report one line
        raise ModelError(f"int8 conversion failed: {' '.join(str(exc).split())[:300]}") from exc


def convert_float(model: Any) -> bytes:
    """The float32 TFLite model, for the float-vs-int8 comparison on the same runtime."""
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return bytes(converter.convert())


def write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------
# calibration and the `masknet quantize` command
def read_calibration(list_path: Path, data_dir: Path) -> list[Path]:
    """The calibration images: one data-set-relative path per line ('#' starts a comment)."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise ConfigError(
            f"{list_path}: calibration list not found; build it with `masknet dataset build` "
            "or pass --calibration"
        )
    paths = []
    for raw in list_path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split(",")[0].split()[0]
        p = Path(token)
        p = p if p.is_absolute() else Path(data_dir) / p
        if not p.is_file():
            raise ConfigError(f"{list_path}: listed image {token} is not in {data_dir}; is --data the right data set?")
        paths.append(p)
    if not paths:
        raise ConfigError(f"{list_path}: calibration list is empty")
    return paths


def calibration_images(paths: list[Path], input_size: int) -> np.ndarray:
    """Calibration crops exactly as the runtime feeds them (shared crop resize), as float 0..255."""
    from convert.train import load_rgb
    from edge.crop import to_model_input

    return np.stack([to_model_input(load_rgb(p), input_size) for p in paths]).astype(np.float32)


def io_quantization(tflite_path: Path) -> dict[str, Any]:
    """Input/output dtype, scale and zero point as the manifest records them."""
    from edge.litert import TFLiteModel

    m = TFLiteModel(tflite_path)
    inp, out = m.input_details[0], m.output_details[0]
    return {
        "input": {"size": int(inp["shape"][1]), "dtype": str(np.dtype(inp["dtype"])),
                  "scale": float(inp["quantization"][0]),
                  "zero_point": int(inp["quantization"][1])},
        "output": {"dtype": str(np.dtype(out["dtype"])), "scale": float(out["quantization"][0]),
                   "zero_point": int(out["quantization"][1])},
    }


def quantize_run(run_dir: Path, data_dir: Path, calibration: Path, output_dtype: str = "uint8", log: Any = print) -> dict[str, Any]:
    """Quantize ``RUN_DIR/model.keras`` to ``<task>_int8.tflite`` (+ ``<task>_float.tflite``)."""
    import keras

    from edge.paths import sha256_file

    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no trained model; run `masknet train CONFIG` first")
    info = json.loads((run_dir / "summary.json").read_text())
    task, size = info["task"], int(info["input_size"])
    model = keras.models.load_model(model_path, compile=False)
    paths = read_calibration(calibration, data_dir)
    calib = calibration_images(paths, size)
    log(f"[{task}] calibrating on {len(calib)} images from {calibration} ({size}px)")
    int8 = write_bytes(run_dir / f"{task}_int8.tflite", quantize_keras(model, lambda: iter(calib), output_dtype))
    flt = write_bytes(run_dir / f"{task}_float.tflite", convert_float(model))
    q = io_quantization(int8)
    if q["input"]["dtype"] != "uint8":
        raise ModelError(f"{int8}: input is {q['input']['dtype']}, expected uint8")
    result = {
        "task": task,
        "int8": int8.name,
        "float": flt.name,
        "int8_bytes": int8.stat().st_size,
        "float_bytes": flt.stat().st_size,
        "calibration": str(calibration),
        "calibration_sha256": sha256_file(calibration),
        "calibration_images": len(calib),
        **q,
    }
    (run_dir / "quantize.json").write_text(json.dumps(result, indent=2))
    log(f"[{task}] wrote {int8} ({result['int8_bytes'] / 1e6:.2f} MB) and {flt.name} "
        f"({result['float_bytes'] / 1e6:.2f} MB); input {q['input']}, output {q['output']}")
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="training run folder(s), e.g. runs/masknet")
    p.add_argument("--data", type=Path, default=Path("data/build"), help="data set the calibration paths are relative to")
    p.add_argument("--calibration", type=Path, default=Path("calibration/calibration.txt"),
                   help="calibration list (default calibration/calibration.txt)")
    p.add_argument("--output-dtype", choices=("uint8", "int8", "float32"), default="uint8",
                   help="output tensor type (default uint8: every op integer)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for run_dir in args.runs:
        quantize_run(run_dir, args.data, args.calibration, args.output_dtype)
    return 0
