"""Tiny random classifiers with a valid manifest, for tests of the runtime and the evaluator.

They have the exact interface of the shipped models (uint8 HxWx3 input, in-model [-1, 1]
rescaling, full-integer int8 inside, uint8 softmax output, a manifest with sha256) but a few
thousand random weights, so they build in seconds. Their verdicts are meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.classes import FIVE_CLASSES, MASKNET_CLASSES, SUBTYPES
from edge.manifest import ModelSpec, write_manifest

TINY_TASKS: dict[str, tuple[str, ...]] = {
    "masknet": MASKNET_CLASSES,
    "imasknet": SUBTYPES,
    "fiveclass": FIVE_CLASSES,
}


def tiny_keras_model(input_size: int, n_classes: int, seed: int) -> Any:
    """A small CNN with the shipped models' input convention (float 0..255 in, softmax out)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="tiny")


def build_tiny_models(
    out_dir: Path,
    input_size: int = 32,
    seed: int = 0,
    fiveclass: bool = False,
    pipeline: str = "cascade",
) -> Path:
    """Write tiny int8 masknet/imasknet (and fiveclass if asked) models + manifest.json to out_dir.

    Returns the manifest path. Needs TensorFlow.
    """
    from convert.quantize import quantize_keras, write_bytes
    from edge.litert import TFLiteModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    calib = rng.integers(0, 256, size=(16, input_size, input_size, 3)).astype(np.float32)
    tasks = ["masknet", "imasknet"] + (["fiveclass"] if fiveclass or pipeline == "fiveclass" else [])
    specs: dict[str, ModelSpec] = {}
    for i, task in enumerate(tasks):
        classes = TINY_TASKS[task]
        model = tiny_keras_model(input_size, len(classes), seed + i)
        data = quantize_keras(model, lambda: iter(calib), output_dtype="uint8")
        path = write_bytes(out_dir / f"{task}_int8.tflite", data)
        lite = TFLiteModel(path)
        (in_scale, in_zp) = lite.input_quant
        out_scale, out_zp = lite.output_details[0]["quantization"]
        specs[task] = ModelSpec(
            name=task,
            path=path,
            sha256="",  # write_manifest hashes the file
            task=task,
            classes=classes,
            input_size=input_size,
            input_dtype=str(lite.input_dtype),
            input_scale=in_scale,
            input_zero_point=in_zp,
            output_dtype=str(np.dtype(lite.output_details[0]["dtype"])),
            output_scale=float(out_scale),
            output_zero_point=int(out_zp),
            backbone="tiny-cnn (random weights, tests only)",
            trainable_layers=None,
            metrics={},
        )
    return write_manifest(out_dir, pipeline, specs)
