"""``models/manifest.json``: which classifier files the door runs, and how to feed them.

The edge runtime learns everything about a classifier from this file (task, class order, input
size and quantization) and refuses a model whose bytes do not match the recorded sha256, so a
half-copied or swapped model never silently gives wrong verdicts.

Schema (version 3)::

    {"version": 3,
     "classifiers": "cascade" | "fiveclass",
     "crop": {"size": 224, "margin": 0.25, "align": false},
     "models": {"masknet": ENTRY, "imasknet": ENTRY, "fiveclass": ENTRY (optional)}}

``classifiers`` names which models the door runs: the Mask-net -> I-Mask-net cascade or the one
5-class model. ``crop`` is the ``edge.crop.CropSpec`` the models were trained on (recorded by the
data set build); the door cuts faces with exactly it. Older manifests are still read: version 2
calls ``classifiers`` "pipeline" and has no ``crop`` (read as ``CropSpec()``, the crop every
model was trained on then); version 1 also lacks ``features`` / ``input.features_of``.

    ENTRY = {"file": "masknet_int8.tflite", "sha256": "<hex>", "task": "masknet",
             "classes": ["mask", "mask_incorrect", "no_mask"],          # output order
             "input": {"size": 160, "dtype": "uint8", "scale": 1.0, "zero_point": 0},
             "output": {"dtype": "uint8", "scale": 0.00390625, "zero_point": 0},
             "backbone": "mobilenet_v2_1.0", "trainable_layers": 23,
             "dataset_sha256": "<hex>|null", "calibration_sha256": "<hex>|null",
             "float_layers": ["Conv1..block_2_add"],    # Keras layers (or FIRST..LAST runs) left float
             "class_bias": {"mask_incorrect": 0.5},   # optional: log-prior offsets (below)
             "metrics": {"float": {...}, "int8": {...}}}

``class_bias`` (optional; absent = plain arg-max) is added to the log-probabilities before the
answer is taken: a shift of the class prior, chosen on real validation photos by ``masknet
decide``. It exists because the models meet far fewer real wrongly worn masks in training than
the door does, and so under-call them on real photos; the shift is one number, so real val can
choose it without being fitted to.

Shared features: the two cascade classifiers start from the same frozen ImageNet trunk, so
Mask-net also outputs its activation at the cut (``"features": FEATURES``) and I-Mask-net is
only the part after the cut, fed those features (``"input": {..., "features_of": "masknet",
**FEATURES}``, where ``input.size`` stays the face-crop size the features come from). The trunk
runs once per face instead of twice. ``trunk_sha256`` hashes the trunk's weights: the runtime
refuses a pair whose trunks differ, because the features would mean something else::

    FEATURES = {"layer": "block_12_add", "shape": [14, 14, 96], "dtype": "uint8",
                "scale": 0.2147, "zero_point": 140, "trunk_sha256": "<hex>"}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.classes import FIVE_CLASSES, MASKNET_CLASSES, SUBTYPES
from edge.crop import CropSpec
from edge.errors import ConfigError, ModelError
from edge.paths import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 3
READ_VERSIONS = (1, 2, 3)  # version 1: every model takes the face crop; 1-2: no recorded crop
CLASSIFIER_SETS: tuple[str, ...] = ("cascade", "fiveclass")
# task -> the class ids its outputs must cover (in any order; the manifest records the order)
TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "masknet": MASKNET_CLASSES,
    "imasknet": SUBTYPES,
    "fiveclass": FIVE_CLASSES,
}
# which model entries each set of classifiers needs
MODELS_OF: dict[str, tuple[str, ...]] = {
    "cascade": ("masknet", "imasknet"),
    "fiveclass": ("fiveclass",),
}
_DTYPES = ("uint8", "int8", "float32")
_REMEDY = "re-run `masknet export` or restore the models/ folder"


@dataclass(frozen=True)
class FeatureSpec:
    """An activation one model exposes and another reads: the cut of a shared trunk."""

    layer: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    trunk_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "trunk_sha256": self.trunk_sha256,
        }

    def same_tensor(self, other: FeatureSpec) -> bool:
        """Same cut of the same trunk (quantization may differ: the reader requantizes)."""
        return (self.layer, self.shape, self.trunk_sha256) == (other.layer, other.shape, other.trunk_sha256)


@dataclass(frozen=True)
class ModelSpec:
    """One classifier as the manifest describes it. ``path`` is absolute."""

    name: str
    path: Path
    sha256: str
    task: str
    classes: tuple[str, ...]
    input_size: int
    input_dtype: str = "uint8"
    input_scale: float = 1.0
    input_zero_point: int = 0
    output_dtype: str = "float32"
    output_scale: float = 0.0
    output_zero_point: int = 0
    backbone: str = "mobilenet_v2_1.0"
    trainable_layers: int | None = None
    dataset_sha256: str | None = None
    calibration_sha256: str | None = None
    # Keras layers `masknet quantize` kept float in this int8 file (docs/training.md)
    float_layers: tuple[str, ...] = ()
    # class id -> offset added to log p before the answer is taken (``masknet decide``)
    class_bias: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # an extra output other models read (the trunk activation at the cut), if any
    features: FeatureSpec | None = None
    # when set, the input is the named model's ``features`` instead of the face crop
    features_of: str | None = None
    input_features: FeatureSpec | None = None

    def to_json(self, models_dir: Path) -> dict[str, Any]:
        """The manifest entry; ``file`` is relative to ``models_dir`` so the folder can move."""
        try:
            file = self.path.resolve().relative_to(Path(models_dir).resolve()).as_posix()
        except ValueError:
            raise ModelError(
                f"{self.path}: model file must live inside {models_dir} to be named in its manifest"
            ) from None
        inp: dict[str, Any] = {
            "size": self.input_size,
            "dtype": self.input_dtype,
            "scale": self.input_scale,
            "zero_point": self.input_zero_point,
        }
        if self.features_of is not None and self.input_features is not None:
            inp = {**self.input_features.to_json(), "size": self.input_size, "features_of": self.features_of}
        entry: dict[str, Any] = {
            "file": file,
            "sha256": self.sha256,
            "task": self.task,
            "classes": list(self.classes),
            "input": inp,
            "output": {
                "dtype": self.output_dtype,
                "scale": self.output_scale,
                "zero_point": self.output_zero_point,
            },
        }
        if self.features is not None:
            entry["features"] = self.features.to_json()
        entry.update(
            backbone=self.backbone,
            trainable_layers=self.trainable_layers,
            dataset_sha256=self.dataset_sha256,
            calibration_sha256=self.calibration_sha256,
            float_layers=list(self.float_layers),
        )
        if self.class_bias:
            entry["class_bias"] = dict(self.class_bias)
        entry["metrics"] = self.metrics
        return entry


@dataclass(frozen=True)
class Manifest:
    path: Path
    version: int
    classifiers: str  # "cascade" or "fiveclass"
    models: dict[str, ModelSpec]
    crop: CropSpec = CropSpec()

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise ModelError(f"{self.path}: no model {name!r} in the manifest; {_REMEDY}") from None

    @property
    def classifier_models(self) -> tuple[ModelSpec, ...]:
        """The models the door runs, in cascade order."""
        return tuple(self.models[n] for n in MODELS_OF[self.classifiers])

    def crop_for(self, align: bool | str = "auto") -> CropSpec:
        """The crop to cut faces with, given a run config's ``classifier.align``.

        ``"auto"`` takes the manifest's crop. true / false must agree with a crop the manifest
        records (version 3); a version 1-2 manifest records none, so there the setting decides,
        as it did when those models were exported.
        """
        if align == "auto":
            return self.crop
        if self.version < 3:
            return replace(self.crop, align=bool(align))
        if bool(align) != self.crop.align:
            raise ConfigError(
                f"classifier.align = {str(bool(align)).lower()} disagrees with {self.path} "
                f"(models trained on crops with align {str(self.crop.align).lower()}); "
                'set classifier.align = "auto" or re-export the models'
            )
        return self.crop


def _bad(path: Path, what: str) -> ModelError:
    return ModelError(f"{path}: {what}; {_REMEDY}")


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise _bad(path, f"{where} is missing {key!r}")
    value = obj[key]
    # bool is an int subclass; a size of `true` is a typo, not a size
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _bad(path, f"{where}.{key} has the wrong type ({type(value).__name__})")
    if not isinstance(value, kind):
        raise _bad(path, f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _parse_features(obj: Any, where: str, path: Path) -> FeatureSpec:
    layer = _get(obj, "layer", str, where, path)
    shape = _get(obj, "shape", list, where, path)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise _bad(path, f"{where}.shape must be a list of positive integers, got {shape!r}")
    dtype = _get(obj, "dtype", str, where, path)
    if dtype not in _DTYPES:
        raise _bad(path, f"{where}.dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    trunk = _get(obj, "trunk_sha256", str, where, path)
    if not _is_hex64(trunk):
        raise _bad(path, f"{where}.trunk_sha256 is not a 64-digit hex digest")
    return FeatureSpec(
        layer=layer,
        shape=tuple(shape),
        dtype=dtype,
        scale=float(_get(obj, "scale", (int, float), where, path)),
        zero_point=int(_get(obj, "zero_point", int, where, path)),
        trunk_sha256=trunk,
    )


def _parse_entry(name: str, entry: Any, models_dir: Path, path: Path) -> ModelSpec:
    where = f"models.{name}"
    if not isinstance(entry, Mapping):
        raise _bad(path, f"{where} must be an object")
    file = _get(entry, "file", str, where, path)
    if Path(file).is_absolute() or ".." in Path(file).parts:
        raise _bad(path, f"{where}.file must be a name inside the models folder, got {file!r}")
    sha = _get(entry, "sha256", str, where, path).lower()
    if not _is_hex64(sha):
        raise _bad(path, f"{where}.sha256 is not a 64-digit hex digest")
    task = _get(entry, "task", str, where, path)
    if task not in TASK_CLASSES:
        raise _bad(path, f"{where}.task {task!r} is not one of {', '.join(TASK_CLASSES)}")
    classes = tuple(_get(entry, "classes", list, where, path))
    if sorted(classes) != sorted(TASK_CLASSES[task]):
        raise _bad(
            path,
            f"{where}.classes {list(classes)} must be the {task} classes "
            f"({', '.join(TASK_CLASSES[task])}) in output order",
        )
    inp = _get(entry, "input", dict, where, path)
    out = _get(entry, "output", dict, where, path)
    size = _get(inp, "size", int, f"{where}.input", path)
    if not 16 <= size <= 1024:
        raise _bad(path, f"{where}.input.size {size} is outside 16..1024")
    in_dtype = _get(inp, "dtype", str, f"{where}.input", path)
    out_dtype = _get(out, "dtype", str, f"{where}.output", path)
    for label, dtype in (("input", in_dtype), ("output", out_dtype)):
        if dtype not in _DTYPES:
            raise _bad(path, f"{where}.{label}.dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    trainable = entry.get("trainable_layers")
    if trainable is not None and (isinstance(trainable, bool) or not isinstance(trainable, int)):
        raise _bad(path, f"{where}.trainable_layers must be an integer or null")
    hashes = {}
    for key in ("dataset_sha256", "calibration_sha256"):
        value = entry.get(key)
        if value is not None and not _is_hex64(value):
            raise _bad(path, f"{where}.{key} must be a 64-digit hex digest or null")
        hashes[key] = value
    float_layers = entry.get("float_layers", [])
    if not isinstance(float_layers, list) or not all(isinstance(n, str) and n for n in float_layers):
        raise _bad(path, f"{where}.float_layers must be a list of layer names")
    class_bias = _parse_class_bias(entry.get("class_bias", {}), classes, where, path)
    metrics = entry.get("metrics", {})
    if not isinstance(metrics, Mapping):
        raise _bad(path, f"{where}.metrics must be an object")
    features = _parse_features(entry["features"], f"{where}.features", path) if "features" in entry else None
    features_of = None
    input_features = None
    if "features_of" in inp:
        features_of = _get(inp, "features_of", str, f"{where}.input", path)
        input_features = _parse_features(inp, f"{where}.input", path)
    return ModelSpec(
        name=name,
        path=(models_dir / file).resolve(),
        sha256=sha,
        task=task,
        classes=classes,
        input_size=size,
        input_dtype=in_dtype,
        input_scale=float(_get(inp, "scale", (int, float), f"{where}.input", path)),
        input_zero_point=int(_get(inp, "zero_point", int, f"{where}.input", path)),
        output_dtype=out_dtype,
        output_scale=float(_get(out, "scale", (int, float), f"{where}.output", path)),
        output_zero_point=int(_get(out, "zero_point", int, f"{where}.output", path)),
        backbone=str(entry.get("backbone", "")),
        trainable_layers=trainable,
        dataset_sha256=hashes["dataset_sha256"],
        calibration_sha256=hashes["calibration_sha256"],
        float_layers=tuple(float_layers),
        class_bias=class_bias,
        metrics=dict(metrics),
        features=features,
        features_of=features_of,
        input_features=input_features,
    )


MAX_CLASS_BIAS = 5.0  # e^5 ~ 150x the prior: beyond that the model's answer would hardly count


def _parse_class_bias(value: Any, classes: tuple[str, ...], where: str, path: Path) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise _bad(path, f"{where}.class_bias must be an object of class id -> number")
    out = {}
    for cls, offset in value.items():
        if cls not in classes:
            raise _bad(path, f"{where}.class_bias names {cls!r}, not one of this model's classes {list(classes)}")
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not abs(offset) <= MAX_CLASS_BIAS:
            raise _bad(path, f"{where}.class_bias.{cls} must be a number from -{MAX_CLASS_BIAS:g} to {MAX_CLASS_BIAS:g}")
        out[str(cls)] = float(offset)
    return out


def verify_model(spec: ModelSpec) -> None:
    """Raise ModelError unless the model file exists and its sha256 is the recorded one."""
    if not spec.path.is_file():
        raise ModelError(f"{spec.path}: model file named in the manifest is missing; {_REMEDY}")
    actual = sha256_file(spec.path)
    if actual != spec.sha256:
        raise ModelError(
            f"{spec.path}: sha256 {actual[:12]}… does not match the manifest ({spec.sha256[:12]}…); "
            f"the file was changed or replaced; {_REMEDY}"
        )


def parse_manifest(data: Any, models_dir: Path, path: Path | None = None) -> Manifest:
    """Validate a decoded manifest (no file checks)."""
    models_dir = Path(models_dir)
    path = Path(path) if path is not None else models_dir / MANIFEST_NAME
    if not isinstance(data, Mapping):
        raise _bad(path, "the manifest must be a JSON object")
    version = _get(data, "version", int, "manifest", path)
    if version not in READ_VERSIONS:
        raise _bad(path, f"manifest version {version} is not supported (this runtime reads "
                         f"{', '.join(map(str, READ_VERSIONS))}); update Mask-net Edge")
    # versions 1-2 called the set of classifiers "pipeline"
    key = "classifiers" if version >= 3 else "pipeline"
    classifiers = _get(data, key, str, "manifest", path)
    if classifiers not in CLASSIFIER_SETS:
        raise _bad(path, f"{key} {classifiers!r} is not one of {', '.join(CLASSIFIER_SETS)}")
    crop = CropSpec()
    if version >= 3:
        try:
            crop = CropSpec.from_json(_get(data, "crop", dict, "manifest", path))
        except ValueError as exc:
            raise _bad(path, str(exc)) from None
    raw_models = _get(data, "models", dict, "manifest", path)
    models = {name: _parse_entry(name, entry, models_dir, path) for name, entry in raw_models.items()}
    for name, spec in models.items():
        # the entry name is how the runtime looks a model up, so it must say what the model does
        if name != spec.task:
            raise _bad(path, f"models.{name} has task {spec.task!r}; the entry must be named after its task")
    missing = [n for n in MODELS_OF[classifiers] if n not in models]
    if missing:
        raise _bad(path, f"{key} {classifiers!r} needs model(s) {', '.join(missing)}, which the manifest lacks")
    for name, spec in models.items():
        if spec.features_of is None:
            continue
        if version < 2:
            raise _bad(path, f"models.{name}.input.features_of needs manifest version 2")
        provider = models.get(spec.features_of)
        if provider is None or provider.features is None:
            raise _bad(path, f"models.{name} reads the features of models.{spec.features_of}, "
                             "which the manifest does not describe")
        if provider.features_of is not None:
            raise _bad(path, f"models.{name} reads models.{spec.features_of}, which itself reads features")
        assert spec.input_features is not None
        if not spec.input_features.same_tensor(provider.features):
            raise _bad(path, f"models.{name} was trained on {spec.input_features.layer} "
                             f"{list(spec.input_features.shape)} of trunk {spec.input_features.trunk_sha256[:12]}…, "
                             f"but models.{spec.features_of} exposes {provider.features.layer} "
                             f"{list(provider.features.shape)} of trunk {provider.features.trunk_sha256[:12]}…; "
                             "export both from runs that share the same backbone weights and cut")
        if spec.input_size != provider.input_size:
            raise _bad(path, f"models.{name}.input.size {spec.input_size} differs from "
                             f"models.{spec.features_of}.input.size {provider.input_size}")
    return Manifest(path=path, version=version, classifiers=classifiers, models=models, crop=crop)


def load_manifest(models_dir: Path | str, verify: bool = True) -> Manifest:
    """Read ``<models_dir>/manifest.json``; with ``verify``, check each model file's sha256."""
    models_dir = Path(models_dir)
    path = models_dir / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: model manifest not found; {_REMEDY}") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model manifest ({exc.strerror}); {_REMEDY}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    manifest = parse_manifest(data, models_dir, path)
    if verify:
        for spec in manifest.models.values():
            verify_model(spec)
    return manifest


def write_manifest(
    models_dir: Path | str,
    classifiers: str,
    models: Mapping[str, ModelSpec | Mapping[str, Any]],
    crop: CropSpec,
) -> Path:
    """Write ``<models_dir>/manifest.json`` atomically.

    ``classifiers`` is "cascade" or "fiveclass"; ``crop`` the crop the models were trained on.
    ``models`` maps entry name to a ModelSpec or to a manifest entry dict. Each file's sha256 is
    recomputed from the bytes on disk, so the manifest always describes what is really there.
    The result is validated with the same rules ``load_manifest`` applies.
    """
    models_dir = Path(models_dir)
    entries: dict[str, dict[str, Any]] = {}
    for name, spec in models.items():
        entry = dict(spec.to_json(models_dir)) if isinstance(spec, ModelSpec) else dict(spec)
        file = models_dir / str(entry.get("file", ""))
        if not file.is_file():
            raise ModelError(f"{file}: model file to put in the manifest does not exist")
        entry["sha256"] = sha256_file(file)
        entries[name] = entry
    data = {"version": MANIFEST_VERSION, "classifiers": classifiers, "crop": crop.to_json(), "models": entries}
    path = models_dir / MANIFEST_NAME
    parse_manifest(data, models_dir, path)
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".manifest.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
