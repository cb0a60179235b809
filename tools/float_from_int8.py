"""Rebuild the float Keras models of a models folder from its int8 files, as training runs.

    python tools/float_from_int8.py MODELS_DIR OUT_RUNS [--configs convert/configs]
    masknet quantize OUT_RUNS/masknet OUT_RUNS/imasknet --data data/build --calibration calibration/calibration.txt

Why: the shipped models' float files live in the workstation's runs/ folder, which a fresh
machine does not have, and the float training does not reproduce across CPU kinds
(docs/training.md). The float model is what int8 is measured against ("int8 within 1 point of
float") and what any re-quantization starts from.

How: the trunk and every BatchNorm are frozen pretrained weights (convert/model.py), so
``build_model`` on the run's config gives them exactly. Only the trainable kernels (after the cut)
and the head were trained; each is read from the int8 file (per-channel int8 dequantized, the frozen
BatchNorm's scale, which the converter folded into it, divided back out). The rebuilt float model
therefore differs from the trained one by the int8 rounding of those kernels alone. The file's
folded biases are the proof that the config is the right one: they must equal what the frozen
BatchNorm gives, or the tool refuses.

Writes OUT_RUNS/<task>/{model.keras, summary.json, config.json} for every classifier of the
manifest, the run layout `masknet quantize` and `masknet export` read.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.errors import MasknetError  # noqa: E402

# the folded bias must agree with the frozen BatchNorm to this share of the layer's largest bias
# (int32 bias rounding is ~1e-5 of it; a different config or backbone is off by far more)
BIAS_TOLERANCE = 1e-3


class Weights:
    """The constant tensors of one .tflite file, found by the Keras layer they came from."""

    def __init__(self, path: Path) -> None:
        from edge.litert import load_runtime

        self.path = path
        self.it = load_runtime().interpreter_class(model_path=str(path))
        # weights are the tensors no op computes (an activation can have a kernel's shape)
        produced = {int(i) for op in self.it._get_ops_details() for i in op["outputs"]}
        produced |= {int(d["index"]) for d in self.it.get_input_details()}
        self.tensors = [d for d in self.it.get_tensor_details() if int(d["index"]) not in produced]

    def _one(self, layer: str, kind: str, ndim: int) -> dict[str, Any]:
        # converter names: "<model>_1/<layer>_1/convolution", "...;<model>_1/<layer>_1/BiasAdd", ...
        pattern = re.compile(rf"/{re.escape(layer)}(_\d+)?/")
        found = []
        for d in self.tensors:
            if len(d["shape"]) != ndim or not pattern.search(d["name"]) or d["dtype"] not in (np.int8, np.int32):
                continue
            if kind == "bias" and d["dtype"] != np.int32:
                continue
            if kind == "kernel" and d["dtype"] != np.int8:
                continue
            found.append(d)
        if kind == "bias" and len(found) > 1:
            # the bias tensor also names the layers fused after it; keep the one whose own op it is
            found = [d for d in found if pattern.search(d["name"].split(";")[-1])] or found
        if len(found) != 1:
            raise MasknetError(f"{self.path}: expected one {kind} tensor of layer {layer}, found {len(found)}; "
                               "is this an int8 file `masknet quantize` wrote?")
        return found[0]

    def dequantized(self, layer: str, kind: str, ndim: int, axis: int) -> np.ndarray:
        d = self._one(layer, kind, ndim)
        v = self.it.get_tensor(d["index"]).astype(np.float64)
        q = d["quantization_parameters"]
        shape = [1] * v.ndim
        shape[axis] = -1
        return (v - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)


def _bn_fold(model: Any, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) the frozen BatchNorm after ``layer`` folds into it."""
    bn = model.get_layer("Conv_1_bn" if layer == "Conv_1" else f"{layer}_BN")
    gamma, beta, mean, var = (w.astype(np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def rebuild(config: Path, int8: Path, cut: str) -> tuple[Any, dict[str, Any]]:
    """The Keras model of ``config`` with the trained weights of ``int8`` after ``cut``."""
    import keras

    from convert.model import build_model, load_config

    cfg = load_config(config)
    if cfg.weights_path() is None:
        raise MasknetError(f"{config}: model.weights is none; the frozen trunk and BatchNorm cannot be "
                           "rebuilt from a random start, only from pretrained weights")
    built = build_model(cfg)
    model = built.model
    weights = Weights(int8)
    names = [layer.name for layer in model.layers]
    if cut not in names:
        raise MasknetError(f"{config}: the manifest's cut {cut!r} is not a layer of this model")
    worst = 0.0
    rebuilt = 0
    for name in names[names.index(cut) + 1:]:
        layer = model.get_layer(name)
        # a frozen layer keeps its exact pretrained kernel; its folded bias is still checked
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            scale, bias = _bn_fold(model, name)
            if layer.trainable:
                fused = weights.dequantized(name, "kernel", 4, 3)[0]  # [h, w, channels]
                layer.set_weights([(fused / scale)[..., None].astype(np.float32)])
                rebuilt += 1
        elif isinstance(layer, keras.layers.Conv2D):
            scale, bias = _bn_fold(model, name)
            if layer.trainable:
                fused = weights.dequantized(name, "kernel", 4, 0)  # [out, h, w, in]
                layer.set_weights([(np.transpose(fused, (1, 2, 3, 0)) / scale).astype(np.float32)])
                rebuilt += 1
        elif isinstance(layer, keras.layers.Dense):
            kernel = weights.dequantized(name, "kernel", 2, 0).T
            layer.set_weights([kernel.astype(np.float32), weights.dequantized(name, "bias", 1, 0).astype(np.float32)])
            rebuilt += 1
            continue
        else:
            continue
        folded = weights.dequantized(f"{name}_BN" if name != "Conv_1" else "Conv_1_bn", "bias", 1, 0)
        worst = max(worst, float(np.abs(folded - bias).max() / max(np.abs(bias).max(), 1e-6)))
    if worst > BIAS_TOLERANCE:
        raise MasknetError(f"{int8}: its folded biases differ from {config}'s frozen BatchNorm by {worst:.1%} of the "
                           "largest; the file was not trained from this config's weights")
    summary = {"task": cfg.task, "classes": list(cfg.classes), "input_size": cfg.model.input_size,
               "backbone": built.backbone_name, "trainable_layers": cfg.model.trainable_layers,
               "rebuilt_from": str(int8), "rebuilt_layers": rebuilt, "bias_agreement": worst}
    return model, summary


def main(argv: list[str] | None = None) -> int:
    from edge.manifest import load_manifest

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, metavar="MODELS_DIR", help="folder with manifest.json and the int8 files")
    p.add_argument("out", type=Path, metavar="OUT_RUNS", help="runs folder to write (one run per classifier)")
    p.add_argument("--configs", type=Path, default=Path("convert/configs"), help="where <task>.toml lives")
    args = p.parse_args(argv)
    try:
        manifest = load_manifest(args.models)
        for name, spec in manifest.models.items():
            layer = spec.features.layer if spec.features else spec.input_features.layer if spec.input_features else None
            if layer is None:
                raise MasknetError(f"{manifest.path}: models.{name} records no cut (features); only a shared-trunk "
                                   "cascade can be rebuilt")
            config = args.configs / f"{spec.task}.toml"
            if not config.is_file():
                raise MasknetError(f"{config}: no config for models.{name}; pass --configs DIR")
            model, summary = rebuild(config, spec.path, layer)
            if summary["input_size"] != spec.input_size or summary["trainable_layers"] != spec.trainable_layers:
                raise MasknetError(f"{config}: input size {summary['input_size']} / {summary['trainable_layers']} trainable "
                                   f"layers, the manifest says {spec.input_size} / {spec.trainable_layers}")
            run = args.out / name
            run.mkdir(parents=True, exist_ok=True)
            model.save(run / "model.keras")
            summary.update(dataset_sha256=spec.dataset_sha256, crop=manifest.crop.to_json())
            (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            (run / "config.json").write_text(json.dumps({"cut": layer}, indent=2) + "\n")
            print(f"{run}: {summary['rebuilt_layers']} layers from {spec.path.name} "
                  f"(folded biases agree to {summary['bias_agreement']:.1e} of the largest)")
    except MasknetError as exc:
        print(f"float_from_int8: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
