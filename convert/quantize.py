"""Full-integer int8 post-training quantization (``masknet quantize``).

Models are quantized with uint8 input (the camera's pixels go straight in: the model's own
Rescaling layer turns them into [-1, 1], so the input scale is 1.0 and zero point 0), per-channel
int8 weights, int8 activations, and uint8 output (softmax probabilities with scale 1/256). Every
op is integer, so the same file also runs on integer-only accelerators.
"""

from __future__ import annotations

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
