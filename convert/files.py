"""The files convert's stages hand each other: data set images, ``dataset.json``'s crop, and the
run folder.

A run folder ``RUNS/<task>/`` is written by ``masknet train`` (``model.keras``, ``config.json``,
``summary.json``), completed by ``masknet quantize`` (``<task>_int8.tflite``,
``<task>_float.tflite``, ``quantize.json``) and read by ``masknet export``, which stages the
models of all tasks in ``RUNS/export/<kind>/``. Every stage names these files through this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge.crop import CropSpec
from edge.errors import MasknetError

# what counts as an image in a data set folder (training, calibration, evaluation)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

DATASET_JSON = "dataset.json"
SUMMARY_JSON = "summary.json"
QUANTIZE_JSON = "quantize.json"
CONFIG_JSON = "config.json"
KERAS_MODEL = "model.keras"
AVERAGE_NPZ = "average.npz"  # the running mean of the epochs' head weights (train.average_from)
EXPORT_DIR = "export"  # RUNS/export/<kind>/: the models export stages and evaluates


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (MasknetError naming the file when it cannot be read)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MasknetError(f"{path}: cannot read image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def model_file(run_dir: Path, task: str, kind: str) -> Path:
    """``<task>_<kind>.tflite`` in a run folder (kind: int8 or float)."""
    return Path(run_dir) / f"{task}_{kind}.tflite"


def export_dir(runs: Path, kind: str) -> Path:
    return Path(runs) / EXPORT_DIR / kind


def _read_json(path: Path, remedy: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MasknetError(f"{path}: not found; {remedy}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise MasknetError(f"{path}: cannot read it ({exc}); {remedy}") from None
    if not isinstance(data, dict):
        raise MasknetError(f"{path}: expected a JSON object; {remedy}")
    return data


def read_summary(run_dir: Path) -> dict[str, Any]:
    """``summary.json`` of a trained run (task, classes, input size, crop, validation results)."""
    return _read_json(Path(run_dir) / SUMMARY_JSON, f"run `masknet train CONFIG --runs {Path(run_dir).parent}` first")


def read_quantize(run_dir: Path) -> dict[str, Any]:
    """``quantize.json`` of a quantized run (file names, I/O quantization, shared features)."""
    return _read_json(Path(run_dir) / QUANTIZE_JSON, f"run `masknet quantize {run_dir}` first")


def _crop_of(record: Any, where: Path) -> CropSpec:
    try:
        return CropSpec.from_json(record)
    except ValueError as exc:
        raise MasknetError(f"{where}: {exc}") from None


def dataset_crop(data_dir: Path) -> CropSpec:
    """The crop a data set was cut with, from its ``dataset.json`` (``CropSpec()`` for a folder of
    face images that records none: the crop every data set had before it was recorded)."""
    meta = Path(data_dir) / DATASET_JSON
    if not meta.is_file():
        return CropSpec()
    info = _read_json(meta, "rebuild it with `masknet dataset build`")
    return _crop_of(info["crop"], meta) if "crop" in info else CropSpec()


def run_crop(run_dir: Path) -> CropSpec:
    """The crop a run was trained on (its summary.json; ``CropSpec()`` for runs trained before it
    was recorded)."""
    summary = read_summary(run_dir)
    if "crop" not in summary:
        return CropSpec()
    return _crop_of(summary["crop"], Path(run_dir) / SUMMARY_JSON)
