"""The classifiers: MobileNetV2 backbone with in-model preprocessing and the paper's heads.

One flat Keras graph per model: ``image`` (float 0..255, fed uint8 after quantization) ->
Rescaling to [-1, 1] -> MobileNetV2 (no top) -> head -> softmax. Because the graph is flat, any
backbone tensor can be cut out: ``split_model`` returns the frozen *trunk* (image -> cut tensor)
and the trainable *tail* (cut tensor -> probabilities) sharing the full model's layers, so a tail
trained on cached trunk activations is, unchanged, the tail of the model we export.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from edge.manifest import TASK_CLASSES
from edge.paths import repo_root, sha256_file

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HEADS = ("dense", "dropout")
# val_real_balanced_accuracy: balanced accuracy on the real photos of val only; the door sees real
# faces, and a val split dominated by synthetic masks picks the wrong epoch (issue 11)
MONITORS = ("val_loss", "val_accuracy", "val_balanced_accuracy", "val_real_balanced_accuracy",
            "val_int8_real_balanced_accuracy")
BACKBONES = ("mobilenet_v2",)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "mobilenet_v2"
    alpha: float = 1.0
    # "imagenet" (Keras download), "none" (random init, tests) or a path to a no-top .h5 file;
    # a relative path is taken from the repository root.
    weights: str = "imagenet"
    input_size: int = 160
    trainable_layers: int = 23
    head: str = "dense"
    dense_units: int = 512
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 5e-4
    # halve the learning rate after this many epochs without improvement; stop after `patience`
    lr_patience: int = 2
    patience: int = 5
    monitor: str = "val_loss"
    seed: int = 0
    class_weight: str = "balanced"  # "balanced" or "none"
    # sample-weight multiplier per data origin (real photos matter most at the door)
    origin_weight: dict[str, float] = field(default_factory=lambda: {"real": 2.0})
    label_smoothing: float = 0.05
    # backbone layer whose output is cached; None = the latest single tensor before the
    # trainable layers. Sharing one cut between tasks lets them share one activation cache.
    cache_at: str | None = None
    # share of the TRAINING images of each origin that are used (seeded by file name; val and test
    # are never thinned): e.g. {synthetic = 0.35} when the trunk cache cannot afford every drawn mask
    keep: dict[str, float] = field(default_factory=dict)
    # Average the head's weights over the epochs from this one on (0 = off), at the learning rate
    # reached by then, and keep the best of those means (early stopping judges the means too): real
    # validation balanced accuracy moves 3-6 points between single epochs (issue 11), so the best
    # single epoch is partly luck; a running mean moves far less.
    average_from: int = 0
    # Share of each epoch's training images whose trunk features come from the int8 trunk the door
    # runs (the trunk quantized on `int8_calibration` as `masknet quantize` quantizes it) rather
    # than the float one: the tail learns the features it will be fed (0 = float only).
    int8_trunk: float = 0.0
    int8_calibration: str = "calibration/calibration.txt"  # relative to the repository root
    # Start the tail from another run's best weights (a run folder or a .weights.h5 file, relative
    # to the repository root) instead of ImageNet's: fine-tuning a trained model, e.g. on the int8
    # trunk's features, the way quantization-aware training starts from the float model.
    init_from: str = ""


@dataclass(frozen=True)
class AugmentConfig:
    views: int = 4  # cached views per training image; view 0 is always the clean image
    hflip: bool = True
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.06
    rotate_deg: float = 10.0
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    hue_deg: float = 8.0
    blur_prob: float = 0.2
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (35, 90)
    # Door-camera degradations (issue 11), applied to the face crop as the door produces it:
    # the face shrunk to `face_px` pixels (a face far from the camera) and blown back up by the
    # crop, with the camera's blur, noise, light and JPEG applied at that small size.
    downscale_prob: float = 0.0
    face_px: tuple[float, float] = (20.0, 100.0)  # face side after the shrink, log-uniform
    motion_blur_prob: float = 0.0
    noise_prob: float = 0.0
    noise_std: tuple[float, float] = (2.0, 10.0)  # sensor noise, grey levels
    gamma: tuple[float, float] = (1.0, 1.0)
    cast: float = 0.0  # colour cast: red/blue gains 1 +- cast along a warm (indoor) .. cold (LED) axis
    grey_prob: float = 0.0  # night IR cameras give grey frames


@dataclass(frozen=True)
class Config:
    task: str
    model: ModelConfig
    train: TrainConfig
    augment: AugmentConfig
    path: Path | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return TASK_CLASSES[self.task]

    def weights_path(self) -> str | None:
        """What to hand Keras as ``weights``: ``"imagenet"``, None, or an absolute file path."""
        w = self.model.weights
        if w.lower() == "imagenet":
            return "imagenet"
        if w.lower() in ("none", ""):
            return None
        p = Path(w).expanduser()
        if not p.is_absolute():
            p = repo_root() / p
        if not p.is_file():
            where = f" (set in {self.path})" if self.path else ""
            raise ConfigError(
                f"model.weights {w!r}{where}: file not found; point it at the MobileNetV2 no-top .h5 "
                "or use \"imagenet\" to download it"
            )
        return str(p)

    def weights_id(self) -> str:
        """A short identity of the backbone weights, for cache keys and the manifest."""
        w = self.weights_path()
        if w is None or w == "imagenet":
            return str(w)
        return sha256_file(w)[:16]

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained model (for the checkpoint folder)."""
        blob = repr((self.task, self.model, self.train, self.augment)).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _section(data: dict[str, Any], name: str, cls: type, path: Path) -> Any:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in [{name}]: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = dict(raw)
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path}: [{name}]: {exc}") from None


def augment_config(run_config: dict[str, Any], where: Path) -> AugmentConfig:
    """The [augment] settings of a run's config.json (or a parsed config TOML), validated."""
    return _section(run_config, "augment", AugmentConfig, where)


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> Config:
    """Read a training config TOML (see convert/configs/). ``overrides`` maps "section.key" to values."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: training config not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = value
    task = data.get("task")
    if task not in TASK_CLASSES:
        raise ConfigError(f"{path}: task must be one of {', '.join(TASK_CLASSES)}, got {task!r}")
    unknown = sorted(set(data) - {"task", "model", "train", "augment"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}")
    cfg = Config(
        task=task,
        model=_section(data, "model", ModelConfig, path),
        train=_section(data, "train", TrainConfig, path),
        augment=_section(data, "augment", AugmentConfig, path),
        path=path,
    )
    m = cfg.model
    if m.backbone not in BACKBONES:
        raise ConfigError(f"{path}: model.backbone {m.backbone!r} is not one of {', '.join(BACKBONES)}")
    if m.head not in HEADS:
        raise ConfigError(f"{path}: model.head {m.head!r} is not one of {', '.join(HEADS)}")
    if not 32 <= m.input_size <= 512:
        raise ConfigError(f"{path}: model.input_size {m.input_size} is outside 32..512")
    if m.trainable_layers < 0:
        raise ConfigError(f"{path}: model.trainable_layers must be >= 0")
    if cfg.augment.views < 1:
        raise ConfigError(f"{path}: augment.views must be >= 1")
    if any(not 0.0 < v <= 1.0 for v in cfg.train.keep.values()):
        raise ConfigError(f"{path}: train.keep values must be shares in (0, 1], e.g. {{ synthetic = 0.35 }}")
    if cfg.train.class_weight not in ("balanced", "none"):
        raise ConfigError(f"{path}: train.class_weight must be \"balanced\" or \"none\"")
    if cfg.train.average_from < 0:
        raise ConfigError(f"{path}: train.average_from must be >= 0 (0 = no weight averaging)")
    if cfg.train.monitor not in MONITORS:
        raise ConfigError(f"{path}: train.monitor must be one of {', '.join(MONITORS)}")
    if not 0.0 <= cfg.train.int8_trunk <= 1.0:
        raise ConfigError(f"{path}: train.int8_trunk must be a share in 0..1 (0 = float trunk only)")
    if cfg.train.monitor.startswith("val_int8_") and cfg.train.int8_trunk == 0:
        raise ConfigError(f"{path}: train.monitor {cfg.train.monitor!r} needs the int8 trunk features: set train.int8_trunk > 0")
    a = cfg.augment
    if not (1.0 <= a.face_px[0] <= a.face_px[1]) or not (1 <= a.jpeg_quality[0] <= a.jpeg_quality[1] <= 100) \
            or not (0 < a.gamma[0] <= a.gamma[1]) or a.noise_std[0] > a.noise_std[1]:
        raise ConfigError(f"{path}: [augment] face_px, jpeg_quality (1..100), gamma (> 0), noise_std must be [low, high] ranges")
    return cfg


@dataclass
class Built:
    """A full model and the handles training needs."""

    model: Any  # keras.Model: image -> probabilities
    backbone: Any  # keras.Model: the MobileNetV2 part (layers shared with `model`)
    trainable: list[str]  # backbone layer names fine-tuned (BatchNorm among them stays frozen)
    backbone_name: str


def build_model(cfg: Config) -> Built:
    """Build the full classifier and set which backbone layers train.

    The last ``trainable_layers`` backbone layers are trainable except BatchNorm, which stays in
    inference mode with ImageNet statistics: small fine-tuning batches would wreck them, and
    frozen BN folds into the convolutions for int8.
    """
    import keras

    m = cfg.model
    size = m.input_size
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(image)
    backbone = keras.applications.MobileNetV2(
        input_tensor=x,
        include_top=False,
        weights=cfg.weights_path(),
        alpha=m.alpha,
    )
    # the first two "layers" of this backbone are the input and our rescaling: not backbone layers
    layers = [layer for layer in backbone.layers if layer.name not in ("image", "to_unit_range")]
    layers = [layer for layer in layers if not isinstance(layer, keras.layers.InputLayer)]
    if m.trainable_layers > len(layers):
        raise ConfigError(
            f"model.trainable_layers {m.trainable_layers} exceeds the {len(layers)} backbone layers"
        )
    trainable = layers[len(layers) - m.trainable_layers :] if m.trainable_layers else []
    names = {layer.name for layer in trainable}
    for layer in backbone.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name in names and not is_bn
    h = keras.layers.GlobalAveragePooling2D(name="gap")(backbone.output)
    if m.head == "dense":
        h = keras.layers.Dense(m.dense_units, activation="relu", name="fc")(h)
    h = keras.layers.Dropout(m.dropout, name="head_dropout")(h)
    out = keras.layers.Dense(len(cfg.classes), activation="softmax", name="probs")(h)
    model = keras.Model(image, out, name=cfg.task)
    return Built(
        model=model,
        backbone=backbone,
        trainable=[layer.name for layer in trainable],
        backbone_name=f"mobilenet_v2_{float(m.alpha)}",
    )


def default_cut(built: Built) -> str:
    """The latest backbone layer before the trainable ones whose output alone feeds the rest.

    MobileNetV2's residual adds need the block input again, so the cut must sit at a block
    boundary (an ``add`` or a non-residual block's projection).
    """
    layers = built.backbone.layers
    first = len(layers) if not built.trainable else [lay.name for lay in layers].index(built.trainable[0])
    for i in range(first - 1, 0, -1):
        if can_cut(built, layers[i].name):
            return layers[i].name
    return layers[0].name


def can_cut(built: Built, layer_name: str) -> bool:
    import keras

    try:
        keras.Model(built.backbone.get_layer(layer_name).output, built.model.output)
    except ValueError:
        return False
    return True


@dataclass
class Split:
    trunk: Any  # image -> activation at the cut (inference only)
    tail: Any  # activation -> probabilities (what trains)
    cut: str
    feature_shape: tuple[int, ...]


def split_model(built: Built, cut: str | None) -> Split:
    """Cut the full model at ``cut`` (a backbone layer name; None: ``default_cut``)."""
    import keras

    cut = cut or default_cut(built)
    names = [layer.name for layer in built.backbone.layers]
    if cut not in names:
        raise ConfigError(f"train.cache_at {cut!r} is not a backbone layer")
    if built.trainable and names.index(cut) >= names.index(built.trainable[0]):
        raise ConfigError(f"train.cache_at {cut!r} is at or after the first trainable layer {built.trainable[0]!r}")
    tensor = built.backbone.get_layer(cut).output
    try:
        tail = keras.Model(tensor, built.model.output, name=f"{built.model.name}_tail")
    except ValueError:
        raise ConfigError(
            f"train.cache_at {cut!r}: the layers after it also need earlier tensors (a residual "
            "connection crosses it); pick a block boundary such as block_12_add"
        ) from None
    trunk = keras.Model(built.model.input, tensor, name=f"{built.model.name}_trunk")
    return Split(trunk=trunk, tail=tail, cut=cut, feature_shape=tuple(int(d) for d in tensor.shape[1:]))


def calibrate_batchnorm(built: Built, images: Any) -> None:
    """Set every BatchNorm's moving statistics to those of ``images`` (one batch, 0..255).

    Only for a randomly initialised backbone (``weights = "none"``): its BatchNorm layers start
    as identities, so activations shrink through 16 blocks to ~1e-12 and nothing can learn from
    them. One pass in training mode with momentum 0 makes each layer normalise what really
    reaches it, as a pretrained network does.
    """
    import keras
    import numpy as np

    # Half the batch is seeded uniform noise: a channel that barely varies over the given images
    # (a small or uniform data set) would otherwise be divided by a near-zero deviation, and the
    # random network would blow small differences (JPEG noise, int8 rounding) up into different
    # answers from one CPU to the next.
    images = np.asarray(images, np.float32)
    noise = np.random.default_rng(0).uniform(0.0, 255.0, images.shape).astype(np.float32)
    images = np.concatenate([images, noise])
    bns = [layer for layer in built.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.trainable, layer.momentum) for layer in bns]
    for layer in bns:
        layer.trainable = True
        layer.momentum = 0.0
    try:
        built.model(images, training=True)
    finally:
        for layer, (trainable, momentum) in zip(bns, saved, strict=True):
            layer.trainable = trainable
            layer.momentum = momentum


def cut_saved(model: Any, cut: str) -> tuple[Any, Any]:
    """(trunk, tail) of a saved full model (a flat graph) at backbone layer ``cut``."""
    import keras

    try:
        tensor = model.get_layer(cut).output
    except ValueError:
        raise ConfigError(f"{model.name}: no layer {cut!r} to cut the model at") from None
    trunk = keras.Model(model.input, tensor, name=f"{model.name}_trunk")
    try:
        tail = keras.Model(tensor, model.output, name=f"{model.name}_tail")
    except ValueError:
        raise ConfigError(f"{model.name}: a residual connection crosses {cut!r}; cut at a block boundary") from None
    return trunk, tail


def trunk_sha256(trunk: Any) -> str:
    """Hash of a trunk's weights (names, shapes, bytes in layer order).

    Two classifiers may share features only if their trunks hash the same: same backbone
    weights, same cut, nothing fine-tuned before it.
    """
    import numpy as np

    h = hashlib.sha256()
    for layer in trunk.layers:
        for w in layer.weights:
            value = np.ascontiguousarray(w.numpy())
            h.update(f"{layer.name}/{w.name}:{value.dtype}{value.shape};".encode())
            h.update(value.tobytes())
    return h.hexdigest()
