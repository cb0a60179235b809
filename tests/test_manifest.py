"""models/manifest.json: round trip, validation and tamper detection (no TensorFlow needed)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge.classes import MASKNET_CLASSES, SUBTYPES
from edge.crop import CropSpec
from edge.errors import ConfigError, ModelError
from edge.manifest import FeatureSpec, ModelSpec, load_manifest, write_manifest


def _spec(models: Path, name: str, classes: tuple[str, ...], payload: bytes) -> ModelSpec:
    path = models / f"{name}_int8.tflite"
    path.write_bytes(payload)
    return ModelSpec(
        name=name,
        path=path,
        sha256="",
        task=name,
        classes=classes,
        input_size=160,
        input_dtype="uint8",
        input_scale=1.0,
        input_zero_point=0,
        output_dtype="uint8",
        output_scale=1 / 256,
        output_zero_point=0,
        trainable_layers=23,
        dataset_sha256="a" * 64,
        calibration_sha256=None,
        metrics={"int8": {"accuracy": 0.98}},
    )


FEATURES = FeatureSpec(layer="block_12_add", shape=(10, 10, 96), dtype="uint8", scale=0.21,
                       zero_point=140, trunk_sha256="b" * 64)
# not the defaults, so that a reader falling back to them is caught
CROP = CropSpec(size=192, margin=0.4, align=True)


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    """The shipped layout: I-Mask-net reads Mask-net's trunk features."""
    mask = dataclasses.replace(_spec(tmp_path, "masknet", MASKNET_CLASSES, b"masknet bytes"), features=FEATURES,
                               float_layers=("expanded_conv_depthwise_relu",), class_bias={"mask_incorrect": 0.5})
    imask = dataclasses.replace(_spec(tmp_path, "imasknet", SUBTYPES[::-1], b"imasknet bytes"),
                                features_of="masknet", input_features=FEATURES)
    write_manifest(tmp_path, "cascade", {"masknet": mask, "imasknet": imask}, CROP)
    return tmp_path


def test_round_trip_keeps_every_field(models_dir: Path) -> None:
    m = load_manifest(models_dir)
    assert m.classifiers == "cascade" and m.crop == CROP
    assert set(m.models) == {"masknet", "imasknet"}
    mask = m.models["masknet"]
    assert mask.path == (models_dir / "masknet_int8.tflite").resolve()
    assert mask.path.is_absolute()
    assert mask.classes == MASKNET_CLASSES
    assert mask.input_size == 160 and mask.input_dtype == "uint8"
    assert mask.output_scale == pytest.approx(1 / 256)
    assert mask.trainable_layers == 23 and mask.dataset_sha256 == "a" * 64
    assert mask.metrics == {"int8": {"accuracy": 0.98}}
    assert mask.float_layers == ("expanded_conv_depthwise_relu",) and m.models["imasknet"].float_layers == ()
    # no class_bias means the plain arg-max, and is left out of the file rather than written as {}
    assert mask.class_bias == {"mask_incorrect": 0.5} and m.models["imasknet"].class_bias == {}
    assert "class_bias" not in json.loads((models_dir / "manifest.json").read_text())["models"]["imasknet"]
    # class order is the model's output order, so it must survive as written
    assert m.models["imasknet"].classes == SUBTYPES[::-1]
    assert [s.task for s in m.classifier_models] == ["masknet", "imasknet"]
    assert m.version == 3 and mask.features == FEATURES and mask.features_of is None
    assert m.models["imasknet"].features_of == "masknet" and m.models["imasknet"].input_features == FEATURES
    # writing what was read gives the same file
    before = (models_dir / "manifest.json").read_text()
    write_manifest(models_dir, m.classifiers, m.models, m.crop)
    assert (models_dir / "manifest.json").read_text() == before


def test_tampered_model_is_refused_naming_the_file(models_dir: Path) -> None:
    (models_dir / "imasknet_int8.tflite").write_bytes(b"imasknet bytes, edited")
    with pytest.raises(ModelError, match=r"imasknet_int8\.tflite.*sha256"):
        load_manifest(models_dir)
    # without verification the manifest itself is still readable (e.g. for `masknet doctor`)
    assert load_manifest(models_dir, verify=False).classifiers == "cascade"


def test_missing_model_file_is_refused(models_dir: Path) -> None:
    (models_dir / "masknet_int8.tflite").unlink()
    with pytest.raises(ModelError, match=r"masknet_int8\.tflite.*missing"):
        load_manifest(models_dir)


def test_missing_manifest_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"manifest\.json.*not found"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(classifiers="fiveclass"), "needs model"),
        (lambda d: d.update(classifiers="pipeline"), "classifiers 'pipeline' is not one of"),
        (lambda d: d.pop("crop"), "missing 'crop'"),
        (lambda d: d["crop"].update(margin="wide"), "crop margin"),
        (lambda d: d["crop"].pop("align"), "size, margin and align"),
        (lambda d: d["models"]["masknet"].update(classes=["mask", "no_mask"]), "classes"),
        (lambda d: d["models"]["masknet"]["input"].update(size="160"), "input.size"),
        (lambda d: d["models"]["masknet"].update(file="../elsewhere.tflite"), "inside the models folder"),
        (lambda d: d["models"].pop("imasknet"), "imasknet"),
        # I-Mask-net's features must be the very tensor Mask-net exposes
        (lambda d: d["models"]["masknet"]["features"].update(trunk_sha256="c" * 64), "trunk bbbbbbbbbbbb"),
        (lambda d: d["models"]["imasknet"]["input"].update(layer="block_13_add"), "block_13_add"),
        (lambda d: d["models"]["masknet"].pop("features"), "does not describe"),
        (lambda d: d["models"]["imasknet"]["input"].update(features_of="fiveclass"), "models.fiveclass"),
        (lambda d: d["models"]["imasknet"]["input"].update(shape=[10, 0, 96]), "positive integers"),
        (lambda d: d.update(version=1, pipeline=d.pop("classifiers")), "needs manifest version 2"),
        (lambda d: d["models"]["masknet"].update(float_layers="expanded_conv_depthwise_relu"), "float_layers"),
        (lambda d: d["models"]["masknet"].update(class_bias=0.5), "class_bias must be an object"),
        (lambda d: d["models"]["masknet"].update(class_bias={"mask_over_chin": 0.5}), "names 'mask_over_chin'"),
        (lambda d: d["models"]["masknet"].update(class_bias={"mask_incorrect": "0.5"}), "from -5 to 5"),
        (lambda d: d["models"]["masknet"].update(class_bias={"mask_incorrect": True}), "from -5 to 5"),
        (lambda d: d["models"]["masknet"].update(class_bias={"mask_incorrect": 9.0}), "from -5 to 5"),
    ],
)
def test_invalid_manifest_is_a_one_line_model_error(models_dir: Path, edit, message: str) -> None:
    path = models_dir / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message) as info:
        load_manifest(models_dir)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _as_old_version(path: Path, version: int) -> None:
    """Rewrite a version-3 manifest as ``version`` wrote it: "pipeline", no crop."""
    data = json.loads(path.read_text())
    del data["crop"]
    data = {"version": version, "pipeline": data["classifiers"], "models": data["models"]}
    path.write_text(json.dumps(data))


def test_version_1_manifest_without_shared_features_still_loads(tmp_path: Path) -> None:
    write_manifest(tmp_path, "cascade", {"masknet": _spec(tmp_path, "masknet", MASKNET_CLASSES, b"m"),
                                         "imasknet": _spec(tmp_path, "imasknet", SUBTYPES, b"i")}, CROP)
    _as_old_version(tmp_path / "manifest.json", 1)
    m = load_manifest(tmp_path)
    assert m.version == 1 and m.models["imasknet"].features_of is None
    assert m.classifiers == "cascade" and m.crop == CropSpec()


def test_version_2_manifest_reads_as_the_crop_of_its_day(models_dir: Path) -> None:
    _as_old_version(models_dir / "manifest.json", 2)
    m = load_manifest(models_dir)
    assert m.version == 2 and m.classifiers == "cascade"
    assert m.crop == CropSpec(224, 0.25, False)
    # it records no crop: the run config's align decides, as it did before the crop was recorded
    assert m.crop_for("auto") == CropSpec(224, 0.25, False)
    assert m.crop_for(True) == CropSpec(224, 0.25, True)


def test_run_config_align_is_checked_against_the_recorded_crop(models_dir: Path) -> None:
    m = load_manifest(models_dir)
    assert m.crop_for("auto") == CROP and m.crop_for(True) == CROP
    with pytest.raises(ConfigError, match="classifier.align = false disagrees with") as info:
        m.crop_for(False)
    assert "\n" not in str(info.value) and str(models_dir / "manifest.json") in str(info.value)


def test_broken_json_is_reported_with_its_line(models_dir: Path) -> None:
    (models_dir / "manifest.json").write_text('{"version": 3,\n "classifiers": }')
    with pytest.raises(ModelError, match="line 2"):
        load_manifest(models_dir)


@pytest.mark.convert
def test_tiny_models_run_with_their_manifest(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import numpy as np

    from convert.tiny import build_tiny_models
    from edge.cascade import Classifier

    manifest_path = build_tiny_models(tmp_path, input_size=32, seed=1, fiveclass=True)
    m = load_manifest(manifest_path.parent)
    assert set(m.models) == {"masknet", "imasknet", "fiveclass"}
    assert m.version == 3 and m.models["imasknet"].features_of == "masknet"
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    nets = {name: Classifier(spec, None, m.path) for name, spec in m.models.items()}
    assert nets["masknet"].model.input_shape == (1, 32, 32, 3)
    assert nets["imasknet"].model.input_shape == (1, *m.models["masknet"].features.shape)
    # calibrated on the same images, so Mask-net's uint8 features go straight into I-Mask-net
    assert nets["imasknet"].reads_raw(nets["masknet"])
    for name in ("masknet", "fiveclass", "imasknet"):
        x = nets["masknet"].features(raw=True) if name == "imasknet" else image
        label, score, probs = nets[name](x)
        assert probs.shape == (len(m.models[name].classes),) and label in m.models[name].classes
        assert abs(float(probs.sum()) - 1.0) < 0.05
