"""tools/float_from_int8.py: the float model rebuilt from an int8 file is the trained one, up to rounding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared" / "weights" / "keras" / "models"
CONFIG = """
task = "masknet"
[model]
weights = "{weights}"
input_size = 96
trainable_layers = 34
head = "dense"
dense_units = 16
dropout = 0.2
[train]
cache_at = "block_12_add"
"""

pytestmark = [pytest.mark.convert, pytest.mark.slow, pytest.mark.shared_data]


def _config(tmp_path: Path) -> Path:
    # the 224 px file: the other sizes' names may be text links where the copy kept no symlinks
    weights = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    if not weights.is_file():
        pytest.skip(f"{weights} is absent (../shared/weights)")
    path = tmp_path / "masknet.toml"
    path.write_text(CONFIG.format(weights=weights))
    return path


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Mask-net 'trained' by seeded changes to its trainable kernels and head, quantized as shipped."""
    from convert.model import build_model, load_config
    from convert.quantize import quantize_run
    from convert.tiny import make_tiny_dataset

    root = tmp_path_factory.mktemp("float_from_int8")
    config = _config(root)
    cfg = load_config(config)
    built = build_model(cfg)
    rng = np.random.default_rng(0)
    for name in built.trainable + ["fc", "probs"]:
        layer = built.model.get_layer(name)
        if layer.trainable and layer.get_weights():
            layer.set_weights([w + rng.normal(0, 0.1 * (w.std() + 1e-3), w.shape).astype(w.dtype)
                               for w in layer.get_weights()])
    run = root / "runs" / "masknet"
    run.mkdir(parents=True)
    built.model.save(run / "model.keras")
    (run / "summary.json").write_text(json.dumps({"task": "masknet", "input_size": 96}))
    (run / "config.json").write_text(json.dumps({"cut": "block_12_add"}))
    data = make_tiny_dataset(root / "data", per_class=3, size=96)
    quantize_run(run, data, data / "calibration.txt", log=lambda _msg: None)
    return {"root": root, "config": config, "run": run, "data": data}


def test_the_rebuilt_float_model_answers_as_the_trained_one(quantized: dict[str, Path]) -> None:
    import keras

    sys.path.insert(0, str(REPO / "tools"))
    from float_from_int8 import rebuild

    trained = keras.models.load_model(quantized["run"] / "model.keras", compile=False)
    model, summary = rebuild(quantized["config"], quantized["run"] / "masknet_int8.tflite", "block_12_add")
    assert summary["rebuilt_layers"] == 14 and summary["bias_agreement"] < 1e-3
    # the frozen trunk is the pretrained one, exactly
    for name in ("block_12_add", "block_13_expand", "block_13_expand_BN", "block_16_project_BN"):
        for a, b in zip(trained.get_layer(name).get_weights(), model.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    # what separates them is the int8 rounding of the trained kernels: at most half a step of each
    # output channel's scale (the kernel as the converter folded it with the frozen BatchNorm)
    from float_from_int8 import Weights, _bn_fold

    weights = Weights(quantized["run"] / "masknet_int8.tflite")
    checked = 0
    for name in [layer.name for layer in trained.layers if layer.trainable and layer.get_weights()]:
        layer = trained.get_layer(name)
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        ndim, axis = {"Conv2D": (4, 0), "DepthwiseConv2D": (4, 3), "Dense": (2, 0)}[kind]
        step = weights._one(name, "kernel", ndim)["quantization_parameters"]["scales"]
        old, new = layer.get_weights()[0], model.get_layer(name).get_weights()[0]
        fold = np.ones(old.shape[-1] if kind != "DepthwiseConv2D" else old.shape[2])
        if kind != "Dense":
            fold = _bn_fold(trained, name)[0]
        if kind == "DepthwiseConv2D":
            err = np.abs((new - old)[..., 0] * fold) / step  # [h, w, channels]
        else:
            err = np.abs((new - old) * fold) / step  # the output channel is the last axis
        assert err.max() <= 0.5 + 1e-3, (name, err.max())
        checked += 1
    assert checked == 14


def test_other_frozen_weights_are_refused_by_the_folded_biases(quantized: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    from float_from_int8 import rebuild

    from convert import model as model_module
    from edge.errors import MasknetError

    real_build = model_module.build_model

    def other_statistics(cfg):  # the same layers and shapes, one BatchNorm's statistics moved
        built = real_build(cfg)
        bn = built.model.get_layer("block_14_expand_BN")
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma, beta, mean + 0.5 * np.sqrt(var), var])
        return built

    monkeypatch.setattr(model_module, "build_model", other_statistics)
    with pytest.raises(MasknetError, match="folded biases differ"):
        rebuild(quantized["config"], quantized["run"] / "masknet_int8.tflite", "block_12_add")


def test_a_models_folder_without_a_manifest_is_one_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "float_from_int8.py"), str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(tmp_path) in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
