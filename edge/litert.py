"""One TFLite interpreter loader for the whole package, and a model wrapper that owns quantization.

The Pi runs ``ai_edge_litert`` (or the older ``tflite_runtime``); a workstation may only have
TensorFlow. TensorFlow is tried last, and only imported when neither runtime is installed, so the
door never pays for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import MasknetError, ModelError

# (module that holds `Interpreter`, runtime name, distribution to read the version from)
_CANDIDATES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ai_edge_litert.interpreter", "ai_edge_litert", ("ai-edge-litert", "ai-edge-litert-nightly")),
    ("tflite_runtime.interpreter", "tflite_runtime", ("tflite-runtime", "tflite_runtime")),
    ("tensorflow.lite", "tensorflow.lite", ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64")),
)


@dataclass(frozen=True)
class Runtime:
    interpreter_class: type
    name: str
    version: str


def _version(module_name: str, dists: tuple[str, ...]) -> str:
    top = importlib.import_module(module_name.split(".")[0])
    version = getattr(top, "__version__", None)
    if isinstance(version, str):
        return version
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def load_runtime() -> Runtime:
    """The first installed of ai_edge_litert, tflite_runtime, tensorflow.lite."""
    tried = []
    for module_name, name, dists in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            tried.append(name)
            continue
        return Runtime(interpreter_class=module.Interpreter, name=name, version=_version(module_name, dists))
    raise MasknetError(
        f"no TFLite runtime found (tried {', '.join(tried)}); "
        "run ./install.sh or `pip install ai-edge-litert`"
    )


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


class TFLiteModel:
    """A TFLite model with its interpreter, built once and invoked once per frame.

    ``run(x)`` takes float or uint8 input and returns float32 outputs: int8/uint8 tensors are
    quantized / dequantized from each tensor's own scale and zero point, read from the model.
    """

    def __init__(
        self,
        path: Path | str,
        num_threads: int | None = None,
        remedy: str = "re-run ./install.sh",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found; {remedy}")
        self.runtime = load_runtime()
        try:
            # model_path lets the runtime mmap the file instead of holding a second copy in memory.
            self._interp = self.runtime.interpreter_class(
                model_path=str(self.path), num_threads=num_threads
            )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ModelError(f"{self.path}: not a valid TFLite model ({reason}); {remedy}") from None
        self._inputs = self._interp.get_input_details()
        self._outputs = self._interp.get_output_details()

    # -- input description -------------------------------------------------------------------
    @property
    def input_details(self) -> list[dict[str, Any]]:
        return self._inputs

    @property
    def output_details(self) -> list[dict[str, Any]]:
        return self._outputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._inputs[0]["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._inputs[0]["dtype"])

    @property
    def input_quant(self) -> tuple[float, int]:
        """(scale, zero_point) of the first input; scale 0.0 means a float tensor."""
        scale, zero_point = self._inputs[0]["quantization"]
        return float(scale), int(zero_point)

    @property
    def output_names(self) -> list[str]:
        return [d["name"] for d in self._outputs]

    # -- inference ----------------------------------------------------------------------------
    def _prepare(self, detail: dict[str, Any], x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        shape = tuple(int(d) for d in detail["shape"])
        if x.shape == shape[1:]:
            x = x[np.newaxis]
        if x.shape != shape:
            raise ValueError(f"{self.path.name}: input {detail['name']!r} wants shape {shape}, got {x.shape}")
        dtype = np.dtype(detail["dtype"])
        if x.dtype == dtype:
            # a uint8 image into a uint8 input (or float into float) goes straight in
            return np.ascontiguousarray(x)
        scale, zero_point = detail["quantization"]
        if dtype.kind in "iu" and scale:
            return _quantize(x, scale, zero_point, dtype)
        return x.astype(dtype)

    def _fetch(self, detail: dict[str, Any]) -> np.ndarray:
        y = self._interp.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if np.dtype(detail["dtype"]).kind in "iu" and scale:
            return (y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        return y.astype(np.float32, copy=False)

    def invoke(self, *inputs: np.ndarray) -> None:
        """Set one array per model input and invoke; read outputs with ``fetch``."""
        if len(inputs) != len(self._inputs):
            raise ValueError(f"{self.path.name}: expects {len(self._inputs)} input(s), got {len(inputs)}")
        for detail, x in zip(self._inputs, inputs, strict=True):
            self._interp.set_tensor(detail["index"], self._prepare(detail, x))
        self._interp.invoke()

    def fetch(self, index: int, raw: bool = False) -> np.ndarray:
        """Output ``index`` of the last ``invoke``: float32, or with ``raw`` the tensor's own dtype.

        Raw lets one model's quantized activation go into another model's input of the same
        quantization without a dequantize / quantize round trip.
        """
        detail = self._outputs[index]
        return self._interp.get_tensor(detail["index"]) if raw else self._fetch(detail)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Invoke on one array per model input; outputs as float32, in the model's output order."""
        self.invoke(*inputs)
        return [self._fetch(d) for d in self._outputs]

    __call__ = run

    def __repr__(self) -> str:
        return f"TFLiteModel({str(self.path)!r}, runtime={self.runtime.name} {self.runtime.version})"
