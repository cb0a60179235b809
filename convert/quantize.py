"""Full-integer int8 post-training quantization (``masknet quantize``).

Models are quantized with uint8 input (the camera's pixels go straight in: the model's own
Rescaling layer turns them into [-1, 1], so the input scale is 1.0 and zero point 0), per-channel
int8 weights, int8 activations, and uint8 output (softmax probabilities with scale 1/256).

Every op is integer except the layers named by ``--float-layers``: by default MobileNetV2's stem,
``Conv1..block_2_add`` (the stem convolution and the first three inverted-residual blocks, the
layers at a half and a quarter of the input's resolution). The first depthwise convolution there
has the one int8 output error far above rounding noise (1.3 steps RMS against 0.3-0.8 for the
others, measured with TFLite's quantization debugger on real faces), and keeping the whole stem
float is what brings int8 closest to float on real validation photos, small faces included
(docs/training.md "Where the int8 error comes from"). It runs in float between a dequantize and a
quantize op; input, output and the shared trunk features stay uint8. ``--float-layers none``
gives an all-integer file for integer-only accelerators.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, ModelError
from edge.manifest import FeatureSpec


def _tf() -> Any:
    import tensorflow as tf

    return tf


# ``FIRST..LAST`` in --float-layers: every layer from FIRST to LAST in the model's layer order.
RANGE = ".."
# MobileNetV2's stem: the stem convolution and blocks 0-2 (Keras layer order), chosen by agreement
# with the float model on real validation photos at every face size (docs/training.md).
DEFAULT_FLOAT_LAYERS = ("Conv1..block_2_add",)


def int8_converter(
    model: Any,
    representative: Callable[[], Iterable[np.ndarray]],
    output_dtype: str = "uint8",
) -> Any:
    """The TFLite converter set up for this project's int8 files (uint8 in, ``output_dtype`` out).

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
    return converter


def quantize_keras(
    model: Any,
    representative: Callable[[], Iterable[np.ndarray]],
    output_dtype: str = "uint8",
    float_layers: Iterable[str] = (),
) -> bytes:
    """Convert a Keras model (float input of 0..255 pixels) to an int8 TFLite flatbuffer.

    ``representative`` as for ``int8_converter``. The ops made from ``float_layers`` (Keras
    layer names or ``FIRST..LAST`` ranges of them) stay float; every other op is integer.
    """
    converter = int8_converter(model, representative, output_dtype)
    specs = list(float_layers)
    try:
        if not specs:
            return bytes(converter.convert())
        # Keeping chosen ops float is not part of the public converter API; TFLite's own
        # QuantizationDebugger does it this way: calibrate, then quantize with a denylist.
        from tensorflow.lite.python import convert as tflite_convert

        converter._experimental_calibrate_only = True
        calibrated = converter.convert()
        return bytes(tflite_convert.mlir_quantize(
            calibrated, input_data_type=converter.inference_input_type,
            output_data_type=converter.inference_output_type,  # float32 unless int8_converter set it
            denylisted_nodes=[node for spec in specs for node in float_nodes(
                calibrated, expand_float_layers(model, [spec]), required=RANGE not in spec)]))
    except (ModelError, ConfigError):
        raise
    except Exception as exc:  # the converter raises many unrelated types; report one line
        raise ModelError(f"int8 conversion failed: {' '.join(str(exc).split())[:300]}") from exc


def float_nodes(calibrated: bytes, layers: Iterable[str], required: bool = True) -> list[str]:
    """The output tensor names of the ops the converter made from these Keras layers.

    ``required``: every layer must own an op. A range's layers need not (a padding layer can be
    folded into the convolution after it); the whole list must own at least one.

    A converted op's name joins the names of the graph ops fused into it (``a;b;c``), each a
    path whose parts are Keras layer names with a ``_N`` suffix; a layer owns an op when it is
    one of those parts.
    """
    from edge.litert import load_runtime

    interp = load_runtime().interpreter_class(model_content=calibrated)
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    outputs = [tensors[i] for op in interp._get_ops_details() for i in op["outputs"]]
    nodes = []
    for layer in layers:
        owns = re.compile(rf"{re.escape(layer)}(_\d+)?")
        hits = [n for n in outputs if any(owns.fullmatch(part) for seg in n.split(";") for part in seg.split("/"))]
        if not hits and required:
            raise ModelError(f"float layer {layer!r}: no op of the converted model comes from it")
        nodes += hits
    if not nodes:
        raise ModelError(f"float layers {', '.join(layers)}: no op of the converted model comes from them")
    return nodes


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


def calibration_images(
    paths: list[Path], input_size: int, views: int = 1, augment: Any = None, seed: int = 0
) -> np.ndarray:
    """Calibration crops exactly as the runtime feeds them (shared crop resize), as float 0..255.

    ``views`` > 1 adds ``views - 1`` door-camera views of every crop (``augment``: the run's own
    [augment] settings, seeded), so the int8 ranges are fixed on far, blurred, dark and noisy
    faces as well as on clean ones: the door feeds both.
    """
    from convert.files import load_rgb
    from convert.train import augment as door_view
    from edge.crop import to_model_input

    if views > 1 and augment is None:
        raise ConfigError("door views for calibration need the run's [augment] settings")
    out = []
    for i, p in enumerate(paths):
        image = load_rgb(p)
        out.append(to_model_input(image, input_size))
        rng = np.random.default_rng([seed, i])
        out += [to_model_input(door_view(image, rng, augment), input_size) for _ in range(views - 1)]
    return np.stack(out).astype(np.float32)


def _quant(detail: dict[str, Any]) -> dict[str, Any]:
    return {"dtype": str(np.dtype(detail["dtype"])), "scale": float(detail["quantization"][0]),
            "zero_point": int(detail["quantization"][1])}


def io_quantization(tflite_path: Path) -> dict[str, Any]:
    """Input/output dtype, scale and zero point as the manifest records them.

    ``output`` is the probabilities (the rank-2 output); a rank-4 output is the exposed
    ``features``. An image input also has ``size``; every input has ``shape`` (without batch).
    """
    from edge.litert import TFLiteModel

    m = TFLiteModel(tflite_path)
    inp = m.input_details[0]
    shape = [int(d) for d in inp["shape"][1:]]
    result: dict[str, Any] = {"input": {"shape": shape, **_quant(inp)}}
    if len(shape) == 3 and shape[2] == 3 and shape[0] == shape[1]:
        result["input"] = {"size": shape[0], **result["input"]}
    for out in m.output_details:
        rank = len(out["shape"])
        if rank == 2:
            result["output"] = _quant(out)
        elif rank == 4:
            result["features"] = {"shape": [int(d) for d in out["shape"][1:]], **_quant(out)}
    if "output" not in result:
        raise ModelError(f"{tflite_path}: no (1, classes) output")
    return result


# Cascade models that share the trunk: the provider exposes its features at the cut and the
# reader is exported as only the layers after the cut.
FEATURES_OF = {"imasknet": "masknet"}
PROVIDERS = frozenset(FEATURES_OF.values())


def export_role(task: str, cut: str | None, standalone: bool = False) -> str:
    """How a task's classifier is exported: standalone, provider (of features) or reader."""
    if standalone or not cut:
        return "standalone"
    if task in PROVIDERS:
        return "provider"
    return "reader" if task in FEATURES_OF else "standalone"


def _feature_spec(shared: dict[str, Any], tensor: dict[str, Any]) -> FeatureSpec:
    """The cut as quantize recorded it, with this file's own tensor type and quantization."""
    return FeatureSpec(
        layer=shared["layer"],
        shape=tuple(tensor["shape"]),
        dtype=tensor["dtype"],
        scale=tensor["scale"],
        zero_point=tensor["zero_point"],
        trunk_sha256=shared["trunk_sha256"],
    )


def feature_fields(shared: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
    """ModelSpec's ``features`` / ``features_of`` / ``input_features`` for one exported file.

    ``shared`` is the record ``export_form`` returned (empty for a standalone model), ``q`` the
    file's ``io_quantization``: the int8 and the float file of one run share the first, not the second.
    """
    reads = shared.get("features_of")
    return {
        "features": _feature_spec(shared, q["features"]) if shared and "features" in q else None,
        "features_of": reads,
        "input_features": _feature_spec(shared, q["input"]) if reads else None,
    }


def export_form(
    model: Any, calib: np.ndarray, task: str, role: str, cut: str | None
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """(model to convert, its representative inputs, the ``shared`` record) for a role.

    ``standalone``: the whole classifier on images. ``provider``: the whole classifier with the
    trunk activation at ``cut`` as a second output. ``reader``: only the layers after ``cut``,
    calibrated on the trunk's activations for the same images.
    """
    import keras

    from convert.model import cut_saved, trunk_sha256

    if role == "standalone" or cut is None:
        return model, calib, {}
    trunk, tail = cut_saved(model, cut)
    shared: dict[str, Any] = {"layer": cut, "trunk_sha256": trunk_sha256(trunk)}
    if role == "provider":
        return keras.Model(model.input, [model.output, trunk.output], name=f"{task}_with_features"), calib, shared
    if role != "reader":
        raise ConfigError(f"export role {role!r}: expected standalone, provider or reader")
    shared["features_of"] = FEATURES_OF[task]
    return tail, trunk.predict(calib, batch_size=32, verbose=0), shared


def quantize_run(
    run_dir: Path,
    data_dir: Path,
    calibration: Path,
    output_dtype: str = "uint8",
    standalone: bool = False,
    log: Any = print,
    door_views: int = 1,
    float_layers: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Quantize ``RUN_DIR/model.keras`` to ``<task>_int8.tflite`` (+ ``<task>_float.tflite``).

    Unless ``standalone``, Mask-net also outputs its trunk activation at the training cut and
    I-Mask-net is exported from the cut on (its input: those features), so the door runs the
    shared frozen trunk once per face. Training already cut both at the same layer of the same
    frozen ImageNet trunk; ``trunk_sha256`` lets the runtime check that.
    """
    import keras

    from convert.files import CONFIG_JSON, KERAS_MODEL, QUANTIZE_JSON, model_file, read_summary
    from convert.model import augment_config
    from edge.paths import sha256_file

    run_dir = Path(run_dir)
    model_path = run_dir / KERAS_MODEL
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no trained model; run `masknet train CONFIG` first")
    info = read_summary(run_dir)
    task, size = info["task"], int(info["input_size"])
    config_file = run_dir / CONFIG_JSON
    run_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    cut = run_config.get("cut")
    if door_views < 1:
        raise ConfigError(f"--door-views must be 1 or more, got {door_views}")
    augment = None
    if door_views > 1:
        if "augment" not in run_config:
            raise ModelError(f"{config_file}: no [augment] settings to make door views from; use --door-views 1")
        augment = augment_config(run_config, config_file)
    paths = read_calibration(calibration, data_dir)
    trained_on = info.get("int8_trunk_calibration_sha256")
    if trained_on and trained_on != sha256_file(calibration):
        raise ConfigError(
            f"{calibration}: the run's tail was trained on the int8 trunk of another calibration list "
            f"(sha256 {trained_on[:12]}, train.int8_calibration in {config_file}); pass that list as --calibration"
        )
    model = keras.models.load_model(model_path, compile=False)
    calib = calibration_images(paths, size, door_views, augment)
    log(f"[{task}] calibrating on {len(calib)} images from {calibration} ({size}px"
        + (f", each clean and as {door_views - 1} door view(s))" if door_views > 1 else ")"))
    role = export_role(task, cut, standalone)
    export, representative, shared = export_form(model, calib, task, role, cut)
    kept_float = export_float_layers(export, float_layers)
    if kept_float:
        log(f"[{task}] keeping {', '.join(kept_float)} float")
    int8 = write_bytes(model_file(run_dir, task, "int8"),
                       quantize_keras(export, lambda: iter(representative), output_dtype, kept_float))
    flt = write_bytes(model_file(run_dir, task, "float"), convert_float(export))
    q = io_quantization(int8)
    if q["input"]["dtype"] != "uint8":
        raise ModelError(f"{int8}: input is {q['input']['dtype']}, expected uint8")
    if kept_float and "features" in q and q["features"]["dtype"] != q["output"]["dtype"]:
        raise ModelError(f"{int8}: the trunk features came out {q['features']['dtype']}, the probabilities "
                         f"{q['output']['dtype']}; is the cut layer {cut!r} among --float-layers?")
    result = {
        "task": task,
        "role": role,
        "int8": int8.name,
        "float": flt.name,
        "int8_bytes": int8.stat().st_size,
        "float_bytes": flt.stat().st_size,
        "calibration": str(calibration),
        "calibration_sha256": sha256_file(calibration),
        "calibration_images": len(calib),
        "calibration_door_views": door_views,
        "float_layers": kept_float,
        "shared": shared,
        **q,
    }
    (run_dir / QUANTIZE_JSON).write_text(json.dumps(result, indent=2))
    log(f"[{task}] wrote {int8} ({result['int8_bytes'] / 1e6:.2f} MB, {role}) and {flt.name} "
        f"({result['float_bytes'] / 1e6:.2f} MB); input {q['input']}, output {q['output']}")
    return result


def export_float_layers(export: Any, float_layers: Iterable[str] | None) -> list[str]:
    """The ``--float-layers`` entries (names or ``FIRST..LAST``) that apply to this exported model.

    The default applies where the model has the layers (I-Mask-net's layers after the cut have
    none of the stem); names the user gave must all be there, and a range must run forwards.
    """
    names = {layer.name for layer in export.layers}
    if float_layers is None:
        return [spec for spec in DEFAULT_FLOAT_LAYERS if all(end in names for end in spec.split(RANGE))]
    wanted = list(float_layers)
    expand_float_layers(export, wanted)  # checks every entry: one clear line before any conversion
    return wanted


def expand_float_layers(model: Any, specs: Iterable[str]) -> list[str]:
    """Layer names for ``--float-layers`` entries: a name, or every layer of ``FIRST..LAST`` in
    the model's order (a name is the run from itself to itself)."""
    order = [layer.name for layer in model.layers]
    out: list[str] = []
    for spec in specs:
        first, sep, last = spec.partition(RANGE)
        last = last if sep else first
        for end in (first, last):
            if end not in order:
                raise ConfigError(f"--float-layers: {model.name} has no layer {end!r} "
                                  f"(its layers include {', '.join(sorted(order)[:6])}, ...)")
        i, j = order.index(first), order.index(last)
        if j < i:
            raise ConfigError(f"--float-layers {spec}: {last} comes before {first} in {model.name}; "
                              f"write the range as {last}{RANGE}{first}")
        out += [name for name in order[i:j + 1] if name not in out]
    return out


def parse_float_layers(text: str | None) -> list[str] | None:
    """``--float-layers``: None (the default), ``none`` (all integer) or comma-separated names."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError("--float-layers: give layer names separated by commas, or none")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="training run folder(s), e.g. runs/masknet")
    p.add_argument("--data", type=Path, default=Path("data/build"), help="data set the calibration paths are relative to")
    p.add_argument("--calibration", type=Path, default=Path("calibration/calibration.txt"),
                   help="calibration list (default calibration/calibration.txt)")
    p.add_argument("--output-dtype", choices=("uint8", "int8", "float32"), default="uint8",
                   help="output tensor type (default uint8: the softmax probabilities, scale 1/256)")
    p.add_argument("--standalone", action="store_true",
                   help="export I-Mask-net as a whole image classifier instead of reading Mask-net's "
                        "shared trunk features (slower at the door; for runs trained with different cuts)")
    p.add_argument("--door-views", type=int, default=1, metavar="N",
                   help="calibrate on every listed crop and N-1 door-camera views of it, made with the run's "
                        "[augment] settings (default 1: the clean crops only)")
    p.add_argument("--float-layers", default=None, metavar="NAMES",
                   help="Keras layers to keep float, comma-separated, FIRST..LAST for a run of layers, or none "
                        f"for an all-integer file (default: {', '.join(DEFAULT_FLOAT_LAYERS)}, where the model has it)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    float_layers = parse_float_layers(args.float_layers)
    for run_dir in args.runs:
        quantize_run(run_dir, args.data, args.calibration, args.output_dtype, args.standalone,
                     door_views=args.door_views, float_layers=float_layers)
    return 0
