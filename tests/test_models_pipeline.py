"""Train -> quantize -> evaluate on a tiny backbone and a generated data set (no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.model import load_config
from edge.crop import CropSpec
from edge.errors import ConfigError, MasknetError

pytestmark = pytest.mark.convert

TINY_CONFIG = """
task = "{task}"
[model]
weights = "none"
alpha = 0.35
input_size = 48
trainable_layers = 23
head = "{head}"
dropout = 0.2
dense_units = 32
[train]
# enough small steps that every seed tried (0-3) reaches the three classes on any CPU, with a margin
# that int8 rounding does not flip: at 4
# epochs of 1e-3 seed 0 collapsed to one class (0.02 s an epoch once compiled: steps are cheap)
epochs = 20
batch_size = 4
learning_rate = 3e-4
patience = 20
cache_at = "block_12_add"
[augment]
views = 2
"""


def _agreement(float_probs: np.ndarray, int8_pred: np.ndarray) -> float:
    """Share of images where int8 picks float's class, among those float is sure of.

    A random-weight trunk amplifies small differences, so where float's two best classes are
    within 0.15 of each other int8 rounding may legitimately swap them; those images say nothing
    about the export. Most images must be clear-cut for the figure to mean anything.
    """
    top2 = np.sort(float_probs, axis=1)[:, -2:]
    sure = (top2[:, 1] - top2[:, 0]) >= 0.15
    assert sure.mean() >= 0.6, f"float model unsure on {int((~sure).sum())} of {len(sure)} images"
    return float((float_probs.argmax(1)[sure] == int8_pred[sure]).mean())


def _config(tmp_path: Path, task: str = "masknet", head: str = "dense") -> Path:
    path = tmp_path / f"{task}.toml"
    path.write_text(TINY_CONFIG.format(task=task, head=head))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("tensorflow")
    from convert.quantize import quantize_run
    from convert.tiny import make_tiny_dataset
    from convert.train import train

    root = tmp_path_factory.mktemp("pipeline")
    data = make_tiny_dataset(root / "data", per_class=6, size=48)
    runs = root / "runs"
    for task, head in (("masknet", "dense"), ("imasknet", "dropout")):
        cfg = load_config(_config(root, task, head))
        train(cfg, data, runs / task, runs / "cache", log=lambda _msg: None)
        quantize_run(runs / task, data, data / "calibration.txt", log=lambda _msg: None)
    return {"data": data, "runs": runs}


@pytest.mark.slow
def test_training_writes_a_resumable_run(trained: dict[str, Path]) -> None:
    run = trained["runs"] / "masknet"
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 20 and len(state["history"]) == 20
    assert all(np.isfinite(h["train_loss"]) for h in state["history"])
    for name in ("best.weights.h5", "last.weights.h5", "last.optimizer.npz", "model.keras", "summary.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"] == ["mask", "mask_incorrect", "no_mask"]
    # both tasks were served by one activation cache (same cut, same images)
    assert len(list((trained["runs"] / "cache").iterdir())) == 1


@pytest.mark.slow
def test_resume_continues_from_the_last_epoch(trained: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from convert.train import train

    run = tmp_path / "masknet"
    shutil.copytree(trained["runs"] / "masknet", run)
    cfg = load_config(_config(tmp_path), {"train.epochs": 21})
    lines: list[str] = []
    train(cfg, trained["data"], run, trained["runs"] / "cache", log=lines.append)
    assert any("resuming after epoch 20" in line for line in lines)
    assert json.loads((run / "state.json").read_text())["epoch"] == 21


def _h5_arrays(path: Path) -> list[np.ndarray]:
    import h5py

    found: list[np.ndarray] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _name, obj: found.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def _holds(arrays: list[np.ndarray], wanted: np.ndarray) -> bool:
    return any(a.shape == wanted.shape and np.allclose(a, wanted, atol=1e-6) for a in arrays)


@pytest.mark.slow
def test_weight_averaging_keeps_the_mean_of_the_epochs_across_a_resume(trained: dict[str, Path], tmp_path: Path) -> None:
    from convert.train import train

    run = tmp_path / "averaged"
    cache = trained["runs"] / "cache"
    # epoch 1 alone: the mean of one epoch is that epoch's weights
    train(load_config(_config(tmp_path), {"train.epochs": 1, "train.average_from": 1}), trained["data"], run, cache,
          log=lambda _msg: None)
    with np.load(run / "average.npz") as z:
        mean1 = [z[k] for k in sorted(z.files, key=lambda k: int(k[1:]))]
    last1 = _h5_arrays(run / "last.weights.h5")
    assert all(_holds(last1, m) for m in mean1)
    # resumed for a second epoch: the mean of epochs 1 and 2, so 2 x mean - epoch 1 is epoch 2's weights
    train(load_config(_config(tmp_path), {"train.epochs": 2, "train.average_from": 1}), trained["data"], run, cache,
          log=lambda _msg: None)
    with np.load(run / "average.npz") as z:
        mean2 = [z[k] for k in sorted(z.files, key=lambda k: int(k[1:]))]
    last2 = _h5_arrays(run / "last.weights.h5")
    moved = [a for a, b in zip(mean1, mean2, strict=True) if not np.allclose(a, b)]
    assert moved, "the second epoch changed no weight"
    assert all(_holds(last2, 2 * b - a) for a, b in zip(mean1, mean2, strict=True))
    state = json.loads((run / "state.json").read_text())
    assert state["averaged"] == 2
    assert all("epoch_val_real_balanced_accuracy" in h for h in state["history"])
    assert len({h["lr"] for h in state["history"]}) == 1  # the rate stays put while averaging
    assert json.loads((run / "summary.json").read_text())["averaged_epochs"] == state["history"][state["best_epoch"] - 1]["averaged"]


def test_a_negative_average_from_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="average_from"):
        load_config(_config(tmp_path), {"train.average_from": -1})


@pytest.mark.slow
def test_the_tail_can_train_on_the_features_of_the_int8_trunk_the_door_runs(trained: dict[str, Path], tmp_path: Path) -> None:
    from convert.train import train
    from edge.litert import TFLiteModel

    data, cache = trained["data"], tmp_path / "cache"
    over = {"train.epochs": 2, "train.int8_trunk": 1.0, "train.int8_calibration": str(data / "calibration.txt"),
            "train.monitor": "val_int8_real_balanced_accuracy"}
    lines: list[str] = []
    train(load_config(_config(tmp_path), over), data, tmp_path / "run", cache, log=lines.append)
    assert any("int8 trunk features ready" in line for line in lines)
    history = json.loads((tmp_path / "run" / "state.json").read_text())["history"]
    assert all(np.isfinite(h["val_int8_loss"]) and "val_int8_real_balanced_accuracy" in h for h in history)
    # the cached features are the ones the exported int8 Mask-net gives I-Mask-net for the same
    # crops: same frozen trunk, same calibration list, same float layer (to a step of rounding)
    (sub,) = [d for d in next(cache.iterdir()).iterdir() if d.name.startswith("int8-")]
    feats = np.load(sub / "val.npy")
    assert feats.dtype == np.uint8
    exported = TFLiteModel(trained["runs"] / "masknet" / "masknet_int8.tflite")
    fi = next(i for i, d in enumerate(exported.output_details) if len(d["shape"]) == 4)
    from convert.train import model_input

    for j, (path, _label, _origin) in enumerate(json.loads((sub / "val.json").read_text())):
        exported.invoke(model_input(Path(path), 48, None, None))
        step = np.abs(exported.fetch(fi, raw=True)[0].astype(int) - feats[j].astype(int))
        assert step.max() <= 1 and (step == 0).mean() >= 0.99
    # quantizing it on another calibration list would give the door another trunk: refused
    from convert.quantize import quantize_run

    other = tmp_path / "other_calibration.txt"
    other.write_text("\n".join((data / "calibration.txt").read_text().split()[:3]) + "\n")
    with pytest.raises(ConfigError, match="int8 trunk of another calibration list"):
        quantize_run(tmp_path / "run", data, other, log=lambda _msg: None)
    # a second run reuses them (nothing rebuilt), and the settings are checked
    lines.clear()
    train(load_config(_config(tmp_path), over), data, tmp_path / "run2", cache, log=lines.append)
    assert any("int8 trunk features ready in 0 s" in line for line in lines)
    with pytest.raises(ConfigError, match="int8_trunk"):
        load_config(_config(tmp_path), {"train.int8_trunk": 1.5})
    with pytest.raises(ConfigError, match="train.int8_trunk > 0"):
        load_config(_config(tmp_path), {"train.monitor": "val_int8_real_balanced_accuracy"})


@pytest.mark.slow
def test_a_run_can_start_from_the_tail_another_run_trained(trained: dict[str, Path], tmp_path: Path) -> None:
    from convert.train import train

    data, cache, before = trained["data"], trained["runs"] / "cache", trained["runs"] / "masknet"
    lines: list[str] = []
    train(load_config(_config(tmp_path), {"train.epochs": 1, "train.init_from": str(before)}), data, tmp_path / "ft",
          cache, log=lines.append)
    # where it starts is where the other run's kept epoch ended
    state = json.loads((before / "state.json").read_text())
    kept = state["history"][state["best_epoch"] - 1]["val_real_balanced_accuracy"]
    (start,) = [line for line in lines if "start: val_real_bal_acc" in line]
    assert f"val_real_bal_acc {kept:.4f}" in start
    with pytest.raises(ConfigError, match="nowhere; name a trained run folder"):
        train(load_config(_config(tmp_path), {"train.init_from": str(tmp_path / "nowhere")}), data, tmp_path / "x", cache)
    (tmp_path / "untrained").mkdir()
    with pytest.raises(ConfigError, match="no .*untrained/best.weights.h5"):
        train(load_config(_config(tmp_path), {"train.init_from": str(tmp_path / "untrained")}), data, tmp_path / "x",
              cache)
    with pytest.raises(ConfigError, match="does not fit this model"):
        train(load_config(_config(tmp_path), {"train.init_from": str(trained["runs"] / "imasknet")}), data,
              tmp_path / "y", cache, log=lambda _msg: None)


def test_door_views_calibrate_on_each_crop_and_seeded_camera_looks_of_it(tmp_path: Path) -> None:
    from convert.model import AugmentConfig
    from convert.quantize import calibration_images
    from convert.tiny import make_tiny_dataset
    from convert.train import model_input

    data = make_tiny_dataset(tmp_path / "data", per_class=1, size=48)
    paths = sorted((data / "train").glob("*/*.jpg"))[:3]
    door = AugmentConfig(downscale_prob=1.0, face_px=(12.0, 20.0), noise_prob=1.0)
    calib = calibration_images(paths, 32, views=3, augment=door)
    assert calib.shape == (9, 32, 32, 3)
    # every crop first as the door's clean crop, then its two door views: different, and the
    # same again on the next call (the ranges of an export must not depend on the run)
    for i, path in enumerate(paths):
        assert np.array_equal(calib[3 * i], model_input(path, 32, None, None))
        assert not np.array_equal(calib[3 * i + 1], calib[3 * i]) and not np.array_equal(calib[3 * i + 2], calib[3 * i + 1])
    assert np.array_equal(calib, calibration_images(paths, 32, views=3, augment=door))
    with pytest.raises(ConfigError, match="augment"):
        calibration_images(paths, 32, views=2)


@pytest.mark.slow
def test_quantize_with_door_views_records_them_and_refuses_zero(trained: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from convert.quantize import quantize_run

    run = tmp_path / "masknet"
    shutil.copytree(trained["runs"] / "masknet", run)
    calibration = trained["data"] / "calibration.txt"
    listed = len([line for line in calibration.read_text().splitlines() if line.strip()])
    result = quantize_run(run, trained["data"], calibration, log=lambda _msg: None, door_views=2)
    assert result["calibration_images"] == 2 * listed and result["calibration_door_views"] == 2
    assert json.loads((run / "quantize.json").read_text())["calibration_door_views"] == 2
    with pytest.raises(ConfigError, match="--door-views"):
        quantize_run(run, trained["data"], calibration, log=lambda _msg: None, door_views=0)


def _float_ops(path: Path) -> list[str]:
    """The op types of a TFLite file whose output is float32."""
    from edge.litert import load_runtime

    interp = load_runtime().interpreter_class(model_path=str(path))
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    return [op["op_name"] for op in interp._get_ops_details() if any(dtypes[i] == np.float32 for i in op["outputs"])]


@pytest.mark.slow
def test_the_stem_stays_float_unless_told_otherwise(trained: dict[str, Path], tmp_path: Path) -> None:
    import shutil
    from collections import Counter

    from convert.quantize import parse_float_layers, quantize_run

    # the default, as the `trained` fixture quantized: Mask-net keeps MobileNetV2's stem (Conv1
    # and blocks 0-2: 6 convolutions, 3 depthwise, block 2's residual add) float after one
    # dequantize; I-Mask-net (layers after the cut) has none of it
    runs = trained["runs"]
    assert json.loads((runs / "masknet" / "quantize.json").read_text())["float_layers"] == ["Conv1..block_2_add"]
    assert Counter(_float_ops(runs / "masknet" / "masknet_int8.tflite")) == {
        "CONV_2D": 6, "DEPTHWISE_CONV_2D": 3, "ADD": 1, "DEQUANTIZE": 1}
    assert json.loads((runs / "imasknet" / "quantize.json").read_text())["float_layers"] == []
    assert _float_ops(runs / "imasknet" / "imasknet_int8.tflite") == []

    run = tmp_path / "masknet"
    shutil.copytree(runs / "masknet", run)
    calibration = trained["data"] / "calibration.txt"
    result = quantize_run(run, trained["data"], calibration, log=lambda _msg: None, float_layers=parse_float_layers("none"))
    assert result["float_layers"] == [] and _float_ops(run / "masknet_int8.tflite") == []
    assert result["input"]["dtype"] == result["output"]["dtype"] == result["features"]["dtype"] == "uint8"
    result = quantize_run(run, trained["data"], calibration, log=lambda _msg: None,
                          float_layers=parse_float_layers("block_1_depthwise_relu, expanded_conv_depthwise_relu"))
    assert sorted(_float_ops(run / "masknet_int8.tflite")) == ["DEPTHWISE_CONV_2D"] * 2 + ["DEQUANTIZE"] * 2
    assert result["features"]["dtype"] == "uint8"
    # a range is every layer between its ends in the model's order
    result = quantize_run(run, trained["data"], calibration, log=lambda _msg: None,
                          float_layers=parse_float_layers("block_1_expand..block_1_project_BN"))
    assert Counter(_float_ops(run / "masknet_int8.tflite")) == {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "DEQUANTIZE": 1}
    assert result["float_layers"] == ["block_1_expand..block_1_project_BN"]
    with pytest.raises(ConfigError, match="--float-layers: .* has no layer 'no_such_layer'"):
        quantize_run(run, trained["data"], calibration, log=lambda _msg: None, float_layers=["no_such_layer"])
    with pytest.raises(ConfigError, match="--float-layers: .* has no layer 'block_99_add'"):
        quantize_run(run, trained["data"], calibration, log=lambda _msg: None, float_layers=["Conv1..block_99_add"])
    with pytest.raises(ConfigError, match="block_1_expand comes before block_2_add .* block_1_expand..block_2_add"):
        quantize_run(run, trained["data"], calibration, log=lambda _msg: None, float_layers=["block_2_add..block_1_expand"])
    with pytest.raises(ConfigError, match="--float-layers"):
        parse_float_layers(" , ")


@pytest.mark.slow
def test_int8_model_takes_uint8_and_agrees_with_float(trained: dict[str, Path]) -> None:
    import keras

    from convert.train import model_input
    from edge.litert import TFLiteModel

    run = trained["runs"] / "masknet"
    lite = TFLiteModel(run / "masknet_int8.tflite")
    assert lite.input_dtype == np.uint8 and lite.input_shape == (1, 48, 48, 3)
    assert lite.input_quant == (1.0, 0)  # raw pixels go straight in
    model = keras.models.load_model(run / "model.keras", compile=False)
    images = sorted((trained["data"] / "test").glob("*/*.jpg"))
    x = np.stack([model_input(p, 48, None, None) for p in images])
    float_probs = np.asarray(model(x.astype(np.float32), training=False))
    float_pred = float_probs.argmax(1)
    # Mask-net also outputs its trunk features (for I-Mask-net): take the (1, classes) output
    int8_pred = np.array([next(y for y in lite.run(img) if y.shape == (1, 3)).argmax() for img in x])
    assert _agreement(float_probs, int8_pred) >= 0.9
    # the float model must have learnt the classes, or agreement would prove nothing
    truth = np.array([("mask", "mask_incorrect", "no_mask").index(
        p.parent.name if p.parent.name in ("mask", "no_mask") else "mask_incorrect") for p in images])
    assert len(set(float_pred.tolist())) == 3 and (float_pred == truth).mean() >= 0.8


@pytest.mark.slow
def test_imasknet_on_masknet_features_agrees_with_the_whole_float_model(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    import keras

    from convert.export import stage
    from convert.train import model_input
    from edge.cascade import Classifier
    from edge.manifest import load_manifest

    stage(trained["runs"], ["masknet", "imasknet"], "int8", tmp_path / "models")
    m = load_manifest(tmp_path / "models")
    spec = m.models["imasknet"]
    assert spec.features_of == "masknet" and spec.input_features.layer == "block_12_add"
    assert spec.input_features.trunk_sha256 == m.models["masknet"].features.trunk_sha256
    assert m.models["masknet"].float_layers == ("Conv1..block_2_add",) and spec.float_layers == ()
    first, second = Classifier(m.models["masknet"], 1, m.path), Classifier(spec, 1, m.path)
    assert second.model.input_shape == (1, 3, 3, spec.input_features.shape[-1])  # block_12_add: 1/16 of 48 px
    assert second.reads_raw(first)  # one calibration set: the uint8 features pass as they are
    model = keras.models.load_model(trained["runs"] / "imasknet" / "model.keras", compile=False)
    images = sorted(p for c in spec.classes for p in (trained["data"] / "test" / c).glob("*.jpg"))
    x = np.stack([model_input(p, 48, None, None) for p in images])
    float_probs = np.asarray(model(x.astype(np.float32), training=False))
    int8_pred = []
    for img in x:
        first(img)
        int8_pred.append(spec.classes.index(second(first.features(raw=True))[0]))
    assert _agreement(float_probs, np.array(int8_pred)) >= 0.9
    truth = np.repeat(np.arange(3), 6)  # 6 test images per sub-type, in spec.classes order
    assert len(set(float_probs.argmax(1).tolist())) == 3 and (float_probs.argmax(1) == truth).mean() >= 0.8


@pytest.mark.slow
def test_evaluate_counts_on_the_trained_cascade(trained: dict[str, Path], tmp_path: Path) -> None:
    from convert.evaluate import evaluate
    from convert.export import stage

    stage(trained["runs"], ["masknet", "imasknet"], "int8", tmp_path / "models")
    r = evaluate(trained["data"] / "test", tmp_path / "models", progress=False)
    assert r["n"] == 36  # 6 per class x 6 class folders
    assert r["masknet.n"] == 36 and r["imasknet.n"] == 18 and r["cascade.n"] == 30
    assert sum(r["counts"].values()) == 36
    assert 0.0 <= r["cascade.accuracy"] <= 1.0


def test_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('task = "masknet"\n[model]\ninput_sise = 160\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key\(s\) in \[model\]: input_sise"):
        load_config(bad)
    bad.write_text('task = "maskenet"\n')
    with pytest.raises(ConfigError, match="task must be one of"):
        load_config(bad)
    cfg = load_config(_config(tmp_path), {"model.weights": "no/such/weights.h5"})
    with pytest.raises(ConfigError, match="weights.h5.*not found"):
        cfg.weights_path()


def test_shipped_configs_use_the_papers_heads() -> None:
    root = Path(__file__).resolve().parent.parent / "convert" / "configs"
    m = load_config(root / "masknet.toml")
    i = load_config(root / "imasknet.toml")
    # the paper trains Mask-net's last 23 layers; real validation chose 34 (docs/training.md)
    assert (m.model.head, m.model.dense_units, m.model.dropout, m.model.trainable_layers) == ("dense", 512, 0.2, 34)
    assert (i.model.head, i.model.dropout, i.model.trainable_layers) == ("dropout", 0.6, 34)
    assert load_config(root / "fiveclass.toml").classes == (
        "mask", "no_mask", "mask_over_chin", "mask_over_mouth_chin", "mask_over_nose_mouth")


@pytest.mark.slow
def test_export_ships_the_cascade_with_manifest_and_report(trained: dict[str, Path], tmp_path: Path) -> None:
    import argparse

    from convert import export
    from edge.manifest import load_manifest

    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    out = tmp_path / "models"
    args = parser.parse_args(["--runs", str(trained["runs"]), "--data", str(trained["data"]), "--out", str(out),
                              "--latency-runs", "3", "--threads", "1",
                              "--latency-json", str(tmp_path / "no_sweep.json")])
    assert export.run(args) == 0
    m = load_manifest(out)
    assert m.classifiers == "cascade" and set(m.models) == {"masknet", "imasknet"}
    spec = m.models["masknet"]
    assert spec.input_dtype == "uint8" and spec.input_size == 48 and spec.trainable_layers == 23
    assert m.version == 3 and m.models["imasknet"].features_of == "masknet"
    # the generated data set records no crop: the runs and the manifest say the default one
    assert m.crop == CropSpec()
    assert spec.dataset_sha256 and spec.calibration_sha256
    # Mask-net's prior shift was chosen on the real val photos, for each staged set, and ships as chosen
    from convert import decide

    biases = {kind: load_manifest(trained["runs"] / "export" / kind).models["masknet"].class_bias for kind in ("int8", "float")}
    assert all(set(b) <= {"mask_incorrect"} and set(b.values()) <= set(decide.GRID) for b in biases.values())
    assert spec.class_bias == biases["int8"] and m.models["imasknet"].class_bias == {}
    with pytest.raises(SystemExit):
        parser.parse_args(["--class-bias", "9"])
    for kind in ("float", "int8"):
        assert spec.metrics[kind]["test"]["n"] == 36
        assert spec.metrics[kind]["test_real"]["n"] == 18  # half the generated images are "real"
    report = (out / "REPORT.md").read_text()
    for heading in ("Float vs int8", "Real photos only", "Cascade vs single 5-class", "Latency",
                    "the yardstick", "Resolution curve", "prior shift"):
        assert heading in report
    curve = json.loads((trained["runs"] / "export" / "curve_int8.json").read_text())
    assert curve["sizes"] == [24, 32, 48, 64, 96, 160]
    assert all(curve[str(n)]["n"] == 18 and curve[str(n)]["face_px"] == n for n in curve["sizes"])  # real test photos
    # a second export over models it does not beat on real validation photos leaves them alone
    before = (out / "masknet_int8.tflite").read_bytes()
    with pytest.raises(MasknetError, match="does not beat the shipped one"):
        export.run(args)
    assert (out / "masknet_int8.tflite").read_bytes() == before
    # --gate-unseen: the gate leaves out the photos the shipped models trained on (here: the first
    # real val photo of each class) and says so
    seen = tmp_path / "seen.csv"
    seen.write_text("base\n" + "".join(f"tiny/val/{c}/{c}_000.jpg#0\n" for c in ("mask", "mask_incorrect", "no_mask")))
    with pytest.raises(MasknetError, match="does not beat the shipped one .* on the real validation photos the shipped models never"):
        export.run(parser.parse_args(["--runs", str(trained["runs"]), "--data", str(trained["data"]),
                                      "--out", str(out), "--latency-runs", "3", "--threads", "1",
                                      "--latency-json", str(tmp_path / "no_sweep.json"), "--gate-unseen", str(seen)]))
    unseen = json.loads((trained["runs"] / "export" / "eval_before_val_real_unseen.json").read_text())
    assert unseen["excluded_photos"] == 3 and unseen["n"] == json.loads(
        (trained["runs"] / "export" / "eval_int8_val_real.json").read_text())["n"] - 3
    assert "**The gate**" in (trained["runs"] / "export" / "REPORT.md").read_text()
