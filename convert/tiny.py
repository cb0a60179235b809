"""Tiny random classifiers with a valid manifest, for tests of the runtime and the evaluator.

They have the exact interface of the shipped models (uint8 HxWx3 input, in-model [-1, 1]
rescaling, full-integer int8 inside, uint8 softmax output, a manifest with sha256) but a few
thousand random weights, so they build in seconds. Their verdicts are meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.crop import CropSpec
from edge.manifest import TASK_CLASSES, ModelSpec, write_manifest

# the tiny models answer the real tasks' classes, in the same output order
TINY_TASKS: dict[str, tuple[str, ...]] = TASK_CLASSES


TINY_CUT = "cut"


def tiny_trunk(input_size: int, seed: int) -> Any:
    """The shared part of tiny models: image (float 0..255) -> activation at layer ``cut``."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name=TINY_CUT)(x)
    return keras.Model(inp, x, name="tiny_trunk")


def tiny_keras_model(input_size: int, n_classes: int, seed: int, trunk: Any = None) -> Any:
    """A small CNN with the shipped models' input convention (float 0..255 in, softmax out).

    Models built on the same ``trunk`` share its layers, as the cascade's classifiers share
    their frozen ImageNet trunk.
    """
    import keras

    trunk = trunk if trunk is not None else tiny_trunk(input_size, seed)
    keras.utils.set_random_seed(seed)
    x = keras.layers.Conv2D(16, 1, strides=2, activation="relu")(trunk.output)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(trunk.input, out, name="tiny")


def build_tiny_models(
    out_dir: Path,
    input_size: int = 32,
    seed: int = 0,
    fiveclass: bool = False,
    pipeline: str = "cascade",
    shared_features: bool = True,
    float_twins: bool = False,
    crop: CropSpec | None = None,
) -> Path:
    """Write tiny int8 masknet/imasknet (and fiveclass if asked) models + manifest.json to out_dir.

    With ``shared_features`` (the shipped layout) Mask-net exposes its trunk features and
    I-Mask-net reads them; without, both take the face crop (a version-1 style cascade).
    ``float_twins`` also writes each model's float32 TFLite as ``<task>_float.tflite``.
    ``crop`` is the crop the manifest says the models were trained on (default ``CropSpec()``).
    Returns the manifest path. Needs TensorFlow.
    """
    from convert.quantize import (
        convert_float,
        export_form,
        export_role,
        feature_fields,
        io_quantization,
        quantize_keras,
        write_bytes,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    calib = rng.integers(0, 256, size=(16, input_size, input_size, 3)).astype(np.float32)
    tasks = ["masknet", "imasknet"] + (["fiveclass"] if fiveclass or pipeline == "fiveclass" else [])
    trunk = tiny_trunk(input_size, seed)
    specs: dict[str, ModelSpec] = {}
    for i, task in enumerate(tasks):
        classes = TINY_TASKS[task]
        role = export_role(task, TINY_CUT, standalone=not shared_features)
        model = tiny_keras_model(input_size, len(classes), seed + i, trunk if role != "standalone" else None)
        export, representative, shared = export_form(model, calib, task, role, TINY_CUT)
        data = quantize_keras(export, lambda r=representative: iter(r), output_dtype="uint8")
        path = write_bytes(out_dir / f"{task}_int8.tflite", data)
        if float_twins:
            write_bytes(out_dir / f"{task}_float.tflite", convert_float(export))
        q = io_quantization(path)
        specs[task] = ModelSpec(
            name=task,
            path=path,
            sha256="",  # write_manifest hashes the file
            task=task,
            classes=classes,
            input_size=input_size,
            input_dtype=q["input"]["dtype"],
            input_scale=q["input"]["scale"],
            input_zero_point=q["input"]["zero_point"],
            output_dtype=q["output"]["dtype"],
            output_scale=q["output"]["scale"],
            output_zero_point=q["output"]["zero_point"],
            backbone="tiny-cnn (random weights, tests only)",
            trainable_layers=None,
            metrics={},
            **feature_fields(shared, q),
        )
    return write_manifest(out_dir, pipeline, specs, crop or CropSpec())


# colour (RGB) and band (top row fraction) of the pattern that marks each class in tiny data sets
_PATTERNS: dict[str, tuple[tuple[int, int, int], float]] = {
    "mask": ((40, 110, 220), 0.45),
    "mask_incorrect": ((220, 60, 60), 0.70),
    "no_mask": ((230, 190, 150), 0.95),
    "mask_over_chin": ((40, 200, 80), 0.80),
    "mask_over_mouth_chin": ((200, 200, 40), 0.60),
    "mask_over_nose_mouth": ((160, 60, 200), 0.30),
}


def make_tiny_dataset(
    out_dir: Path,
    per_class: dict[str, int] | int = 6,
    size: int = 64,
    seed: int = 0,
    classes: tuple[str, ...] = tuple(_PATTERNS),
) -> Path:
    """A generated data set in the `masknet dataset` layout, easy to learn, for pipeline tests.

    Writes ``{train,val,test}/<class>/*.jpg`` (``per_class`` images per split and class),
    ``index.csv`` (half the images "real", half "synthetic"), ``dataset.json`` and
    ``calibration.txt`` (train paths). Each class is a flat colour of its own with a dark band at its own height.
    """
    import csv
    import json

    import cv2

    out_dir = Path(out_dir)
    rows = []
    for split in ("train", "val", "test"):
        for c in classes:
            n = per_class[c] if isinstance(per_class, dict) else per_class
            colour, top = _PATTERNS[c]
            folder = out_dir / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # one flat prototype per class (its colour, a dark band at its height; the images
                # differ only by JPEG noise): a random-weight trunk amplifies small differences
                # (noisy or brightness-jittered copies landed on the wrong side of the float
                # model's boundary and training collapsed to one class on AVX2-only CPUs), so the
                # tiny pipeline tests learn six prototypes, which any CPU's kernels get right
                img = np.empty((size, size, 3), np.float32)
                img[:] = np.array(colour, np.float32)
                y0 = int(top * size) - size // 4
                img[max(0, y0) : y0 + size // 4, :] = 30.0
                # black and white edges, as in any photo, so int8 calibration sees the full 0..255
                img[:, :2], img[:, -2:] = 0.0, 255.0
                img = np.clip(img, 0, 255).astype(np.uint8)
                rel = f"{split}/{c}/{c}_{i:03d}.jpg"
                cv2.imwrite(str(out_dir / rel), img[..., ::-1])
                origin = "real" if i % 2 == 0 else "synthetic"
                rows.append({"path": rel, "split": split, "label": c, "origin": origin,
                             "source": "tiny", "group": f"{c}_{i}", "base": f"tiny/{rel}#0"})
    with open(out_dir / "index.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "split", "label", "origin", "source", "group", "base"])
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "dataset.json").write_text(json.dumps({"generator": "convert.tiny", "seed": seed, "n": len(rows)}))
    (out_dir / "calibration.txt").write_text("\n".join(r["path"] for r in rows if r["split"] == "train") + "\n")
    return out_dir
