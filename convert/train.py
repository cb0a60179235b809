"""``masknet train CONFIG``: fine-tune the last layers of MobileNetV2 on cached trunk activations.

Only the last N backbone layers and the head learn; everything before them is a fixed function
of the image. So each image (and a few augmented views of it) goes through the frozen trunk
ONCE, its activation at a block boundary is cached on disk (float16), and the epochs train the
small tail on that cache: on a 2-core workstation this is tens of times faster than full
forward passes, with the same result as training the full model with frozen early layers and
frozen BatchNorm. The trained tail shares its layers with the full model, which is saved whole
for ``masknet quantize``.

Data layout (from ``masknet dataset``): ``DATA/{train,val,test}/<class_id>/*.jpg`` and, when
present, ``DATA/index.csv`` (path, split, label, origin, source, group) for each image's origin.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.files import (
    AVERAGE_NPZ,
    CONFIG_JSON,
    DATASET_JSON,
    IMAGE_EXTS,
    KERAS_MODEL,
    SUMMARY_JSON,
    dataset_crop,
    load_rgb,
)
from convert.model import AugmentConfig, Config, load_config, tomllib
from edge.classes import ALL_CLASSES, MASK_INCORRECT, SUBTYPES, masknet_label
from edge.errors import ConfigError, MasknetError

SPLITS = ("train", "val", "test")
CACHE_BATCH = 32


# --------------------------------------------------------------------------------------------
# data set
@dataclass(frozen=True)
class Sample:
    path: Path  # absolute
    split: str
    label: str  # class id of its folder
    origin: str  # real | recoloured | synthetic | unknown


def _list_split(data_dir: Path, split: str) -> list[tuple[Path, str]]:
    out = []
    root = data_dir / split
    if not root.is_dir():
        return out
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if class_dir.name not in ALL_CLASSES:
            raise MasknetError(
                f"{class_dir}: unknown class folder; expected one of {', '.join(ALL_CLASSES)}"
            )
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_EXTS:
                out.append((f.resolve(), class_dir.name))
    return out


def read_dataset(data_dir: Path) -> list[Sample]:
    """Every image of DATA/{train,val,test}/<class_id>/, with its origin from index.csv if any."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MasknetError(f"{data_dir}: data set folder not found; build it with `masknet dataset build`")
    origins: dict[Path, str] = {}
    index = data_dir / "index.csv"
    if index.is_file():
        with open(index, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                p = Path(row["path"])
                p = p if p.is_absolute() else data_dir / p
                origins[p.resolve()] = row.get("origin") or "unknown"
    samples = [
        Sample(path, split, label, origins.get(path, "unknown"))
        for split in SPLITS
        for path, label in _list_split(data_dir, split)
    ]
    if not any(s.split == "train" for s in samples):
        raise MasknetError(f"{data_dir}: no training images under {data_dir / 'train'}/<class_id>/")
    return samples


def dataset_id(data_dir: Path, samples: list[Sample]) -> str:
    """sha256 of dataset.json when present (the data engineer's fingerprint), else of the file list."""
    meta = Path(data_dir) / DATASET_JSON
    if meta.is_file():
        return hashlib.sha256(meta.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.split}/{s.label}/{s.path.name}/{s.path.stat().st_size}\n".encode())
    return h.hexdigest()


def content_id(samples: list[Sample]) -> str:
    """sha256 over every image's split, label, origin and bytes.

    The activation cache is keyed by this rather than by dataset.json, so a rebuilt data set with
    the same images (new timestamps or code version in dataset.json) reuses its cache.
    """
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.split}/{s.label}/{s.origin}/{s.path.name}\n".encode())
        h.update(hashlib.sha256(s.path.read_bytes()).digest())
    return h.hexdigest()


def thin_training(samples: list[Sample], keep: dict[str, float], seed: int) -> list[Sample]:
    """Only a seeded share of the training images of the origins named in ``keep``.

    The choice hashes the file name, so it does not depend on listing order and both tasks (which
    share one activation cache) pick the same images."""
    if not keep:
        return samples

    def kept(s: Sample) -> bool:
        share = keep.get(s.origin, 1.0)
        if s.split != "train" or share >= 1.0:
            return True
        h = int.from_bytes(hashlib.sha256(f"{seed}/{s.path.name}".encode()).digest()[:8], "little")
        return h / 2**64 < share

    return [s for s in samples if kept(s)]


def task_label(task: str, label: str) -> str | None:
    """The class a data-set folder counts as for a task, or None when the task cannot use it."""
    if task == "masknet":
        return masknet_label(label)
    if task == "imasknet":
        return label if label in SUBTYPES else None
    # 5-class: a mask_incorrect photo without its sub-type has no 5-class label
    return None if label == MASK_INCORRECT else label


# --------------------------------------------------------------------------------------------
# images and augmentation
def augment(image: np.ndarray, rng: np.random.Generator, a: AugmentConfig) -> np.ndarray:
    """Another look of the same face crop as a door camera might give it.

    Framing first (the detector's box scaled and shifted, a little roll, mirror), then, with
    `downscale_prob`, the crop is shrunk so the face is `face_px` pixels wide; light (gamma,
    brightness, contrast, hue, saturation, a warm or cold colour cast, greyscale), blur (Gaussian
    or motion), sensor noise and JPEG are applied at that size, as the camera applies them to a
    far face, and the crop is blown back up the way `edge.crop.crop_face` does (linear).
    """
    import cv2

    from edge.crop import CROP_MARGIN

    h, w = image.shape[:2]
    if a.hflip and rng.random() < 0.5:
        image = image[:, ::-1]
    scale = rng.uniform(*a.scale)
    angle = rng.uniform(-a.rotate_deg, a.rotate_deg)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += rng.uniform(-a.shift, a.shift, 2) * (w, h)
    # border repeat, as the crop function does for faces at the frame edge
    image = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < a.downscale_prob:
        face = math.exp(rng.uniform(math.log(a.face_px[0]), math.log(a.face_px[1])))
        side = max(4, round(face * (1.0 + CROP_MARGIN)))
        if side < w:
            image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    small = image.shape[0]
    rel = small / float(w)  # blur sizes are in pixels of the 224 crop, scaled to the current size
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-a.hue_deg, a.hue_deg) / 2.0) % 180.0
    hsv[..., 1] *= 1.0 + rng.uniform(-a.saturation, a.saturation)
    img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if a.cast > 0:
        t = rng.uniform(-a.cast, a.cast)  # > 0 warm (tungsten), < 0 cold (LED)
        img *= np.array([1.0 + t, 1.0 + rng.uniform(-a.cast, a.cast) / 3.0, 1.0 - t], np.float32)
    if a.gamma != (1.0, 1.0):
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(*a.gamma)
    mean = img.mean()
    img = (img - mean) * (1.0 + rng.uniform(-a.contrast, a.contrast)) + mean
    img = img * (1.0 + rng.uniform(-a.brightness, a.brightness))
    image = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < a.grey_prob:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    if rng.random() < a.blur_prob:
        image = cv2.GaussianBlur(image, (0, 0), max(0.3, rng.uniform(0.5, 2.0) * rel))
    if rng.random() < a.motion_blur_prob:
        length = max(2, round(rng.uniform(3, 11) * rel))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        image = cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < a.noise_prob:
        noise = rng.normal(0.0, rng.uniform(*a.noise_std), image.shape).astype(np.float32)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < a.jpeg_prob:
        q = int(rng.integers(a.jpeg_quality[0], a.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    if small != w:
        image = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image)


def model_input(path: Path, size: int, rng: np.random.Generator | None, a: AugmentConfig | None) -> np.ndarray:
    """An image as the classifier sees it: the shared crop-resize of the (augmented) face crop."""
    from edge.crop import to_model_input

    image = load_rgb(path)
    if rng is not None and a is not None:
        image = augment(image, rng, a)
    return to_model_input(image, size)


# --------------------------------------------------------------------------------------------
# activation cache
@dataclass
class CacheSplit:
    feats: np.ndarray  # (views * n, *feature_shape) float16, view-major
    samples: list[Sample]
    views: int


def cache_key(cfg: Config, cut: str, data_id: str) -> str:
    a = asdict(cfg.augment)
    blob = json.dumps(
        [data_id, cfg.model.input_size, cfg.model.alpha, cfg.weights_id(), cut, a, cfg.train.seed],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_cache(
    cfg: Config,
    split_model: Any,
    samples: list[Sample],
    cache_dir: Path,
) -> dict[str, CacheSplit]:
    """Run the frozen trunk over every image (train: ``augment.views`` views) into float16 files.

    Resumable: progress is committed per chunk, so an interrupted run picks up where it stopped.
    """
    import tensorflow as tf

    trunk = split_model.trunk
    infer = tf.function(lambda x: trunk(x, training=False), reduce_retracing=True)
    return _fill_cache(cfg, samples, cache_dir, split_model.feature_shape, np.float16,
                       lambda x: infer(tf.constant(x)).numpy().astype(np.float16), "cache")


def _fill_cache(
    cfg: Config,
    samples: list[Sample],
    cache_dir: Path,
    fshape: tuple[int, ...],
    dtype: Any,
    infer: Any,
    desc: str,
) -> dict[str, CacheSplit]:
    """``infer`` (a batch of model inputs -> features of ``dtype``) over the train views and val."""
    from tqdm import tqdm

    cache_dir.mkdir(parents=True, exist_ok=True)
    size = cfg.model.input_size
    out: dict[str, CacheSplit] = {}
    # test is never read here: `masknet evaluate` scores the exported files on it
    for split in ("train", "val"):
        items = [s for s in samples if s.split == split]
        if not items:
            continue
        views = cfg.augment.views if split == "train" else 1
        total = views * len(items)
        feats_path = cache_dir / f"{split}.npy"
        done_path = cache_dir / f"{split}.done"
        list_path = cache_dir / f"{split}.json"
        listing = [[str(s.path), s.label, s.origin] for s in items]
        if list_path.is_file() and json.loads(list_path.read_text()) != listing:
            raise MasknetError(f"{cache_dir}: cache was built from other files; delete the folder")
        done = int(done_path.read_text()) if done_path.is_file() and feats_path.is_file() else 0
        if done == 0:
            list_path.write_text(json.dumps(listing))
            feats = np.lib.format.open_memmap(feats_path, mode="w+", dtype=dtype, shape=(total, *fshape))
        else:
            feats = np.load(feats_path, mmap_mode="r+")
        if done < total:

            def load(k0: int, k1: int, split: str = split, items: list[Sample] = items) -> np.ndarray:
                batch = []
                for k in range(k0, k1):
                    view, j = divmod(k, len(items))
                    # one generator per (image, view): the same view comes out on resume
                    seed = [cfg.train.seed, SPLITS.index(split), j, view]
                    rng = np.random.default_rng(seed) if view > 0 else None
                    batch.append(model_input(items[j].path, size, rng, cfg.augment))
                return np.stack(batch).astype(np.float32)

            starts = list(range(done, total, CACHE_BATCH))
            bar = tqdm(total=total, initial=done, desc=f"{desc} {split}", unit="img", mininterval=5)
            with ThreadPoolExecutor(max_workers=1) as pool:
                # decode/augment the next batch while the trunk runs on this one
                pending = pool.submit(load, starts[0], min(starts[0] + CACHE_BATCH, total))
                for i, k0 in enumerate(starts):
                    k1 = min(k0 + CACHE_BATCH, total)
                    x = pending.result()
                    if i + 1 < len(starts):
                        n0 = starts[i + 1]
                        pending = pool.submit(load, n0, min(n0 + CACHE_BATCH, total))
                    feats[k0:k1] = infer(x)
                    if (i + 1) % 20 == 0 or k1 == total:
                        feats.flush()
                        done_path.write_text(str(k1))
                    bar.update(k1 - k0)
            bar.close()
        del feats
        out[split] = CacheSplit(feats=np.load(feats_path, mmap_mode="r"), samples=items, views=views)
    return out


@dataclass
class Int8Trunk:
    """The int8 trunk's features of the cached views (raw uint8) and how to read them as floats."""

    cache: dict[str, CacheSplit]
    scale: float
    zero_point: int
    calibration_sha256: str

    def rows(self, split: str, rows: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.cache[split].feats[rows], dtype=np.float32)
        return (raw - np.float32(self.zero_point)) * np.float32(self.scale)


def build_int8_cache(
    cfg: Config, split_model: Any, samples: list[Sample], cache_dir: Path, data_dir: Path
) -> Int8Trunk:
    """The same views through the trunk as the door runs it: int8, quantized on the calibration
    list exactly as ``masknet quantize`` will quantize it (same images, same float layers).

    The trunk is the frozen ImageNet one every run shares and its int8 ranges come from the
    calibration images alone, so these are the features the exported int8 file computes.
    """
    from convert.quantize import (
        DEFAULT_FLOAT_LAYERS,
        calibration_images,
        export_float_layers,
        quantize_keras,
        read_calibration,
    )
    from edge.litert import TFLiteModel
    from edge.paths import repo_root, sha256_file

    calib_list = Path(cfg.train.int8_calibration).expanduser()
    calib_list = calib_list if calib_list.is_absolute() else repo_root() / calib_list
    paths = read_calibration(calib_list, data_dir)
    calib_sha = sha256_file(calib_list)
    sub = cache_dir / f"int8-{hashlib.sha256((calib_sha + repr(DEFAULT_FLOAT_LAYERS)).encode()).hexdigest()[:12]}"
    sub.mkdir(parents=True, exist_ok=True)
    trunk_file = sub / "trunk_int8.tflite"
    if not trunk_file.is_file():
        calib = calibration_images(paths, cfg.model.input_size)
        tmp = trunk_file.with_suffix(".tmp")
        kept = export_float_layers(split_model.trunk, None)
        tmp.write_bytes(quantize_keras(split_model.trunk, lambda: iter(calib), "uint8", kept))
        tmp.replace(trunk_file)
    model = TFLiteModel(trunk_file)
    out = model.output_details[0]
    scale, zero_point = out["quantization"]

    def infer(x: np.ndarray) -> np.ndarray:
        # the door's input: the crop-resized uint8 pixels
        pixels = np.clip(np.round(x), 0, 255).astype(np.uint8)
        feats = []
        for row in pixels:
            model.invoke(row[np.newaxis])
            feats.append(model.fetch(0, raw=True)[0])
        return np.stack(feats)

    cache = _fill_cache(cfg, samples, sub, split_model.feature_shape, np.uint8, infer, "int8 trunk")
    return Int8Trunk(cache=cache, scale=float(scale), zero_point=int(zero_point), calibration_sha256=calib_sha)


# --------------------------------------------------------------------------------------------
# training
def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> np.ndarray:
    if mode == "none":
        return np.ones(n_classes, np.float32)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def sample_weights(cfg: Config, labels: np.ndarray, origins: list[str]) -> np.ndarray:
    cw = class_weights(labels, len(cfg.classes), cfg.train.class_weight)
    ow = np.array([cfg.train.origin_weight.get(o, 1.0) for o in origins], np.float32)
    w = cw[labels] * ow
    return (w / w.mean()).astype(np.float32)


def _task_rows(cfg: Config, cs: CacheSplit) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Indices of this task's images in a cache split, their class indices and origins."""
    idx, y, origins = [], [], []
    for j, s in enumerate(cs.samples):
        t = task_label(cfg.task, s.label)
        if t is not None:
            idx.append(j)
            y.append(cfg.classes.index(t))
            origins.append(s.origin)
    return np.array(idx, np.int64), np.array(y, np.int64), origins


def _predict(tail: Any, feats: np.ndarray, rows: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for k in range(0, len(rows), batch):
        x = np.asarray(feats[rows[k : k + batch]], dtype=np.float32)
        out.append(np.asarray(tail(x, training=False)))
    return np.concatenate(out) if out else np.zeros((0, tail.output.shape[-1]), np.float32)


def _val_metrics(probs: np.ndarray, y: np.ndarray, origins: list[str], n_classes: int) -> dict[str, float]:
    from convert.metrics import classification_report

    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0)))) if len(y) else math.nan
    rep = classification_report(y, probs.argmax(1), n_classes)
    real = np.array([o == "real" for o in origins], bool)
    real_acc = float((probs.argmax(1)[real] == y[real]).mean()) if real.any() else math.nan
    # balanced over the classes that have real photos in val (a class without any is left out,
    # not scored 0); nan when val has no real photos at all
    real_bal = classification_report(y[real], probs.argmax(1)[real], n_classes)["balanced_accuracy"] if real.any() else math.nan
    return {
        "val_loss": loss,
        "val_accuracy": rep["accuracy"],
        "val_balanced_accuracy": rep["balanced_accuracy"],
        "val_real_accuracy": real_acc,
        "val_real_balanced_accuracy": float(real_bal),
        "val_n": int(len(y)),
        "val_real_n": int(real.sum()),
    }


def _better(monitor: str, value: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if monitor == "val_loss" else value > best


def _save_optimizer(opt: Any, path: Path) -> None:
    np.savez(path, *[np.asarray(v) for v in opt.variables])


def _load_optimizer(opt: Any, variables: list[Any], path: Path) -> None:
    opt.build(variables)
    with np.load(path) as data:
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(values) != len(opt.variables):
        raise MasknetError(f"{path}: optimizer checkpoint does not match the model; delete the run folder")
    for var, value in zip(opt.variables, values, strict=True):
        var.assign(value)


def init_weights_file(cfg: Config) -> Path | None:
    """``train.init_from``: a run folder (its best epoch's weights) or a ``.weights.h5`` file."""
    from edge.paths import repo_root

    if not cfg.train.init_from:
        return None
    p = Path(cfg.train.init_from).expanduser()
    p = p if p.is_absolute() else repo_root() / p
    f = p / "best.weights.h5" if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"train.init_from {cfg.train.init_from!r}: no {f}; name a trained run folder or a .weights.h5 file")
    return f


def train(cfg: Config, data_dir: Path, run_dir: Path, cache_root: Path, log: Any = print) -> Path:
    """Train one task; returns the path of the saved full Keras model (best epoch by validation)."""
    import keras
    from tqdm import tqdm

    from convert.model import build_model, calibrate_batchnorm, split_model

    keras.utils.set_random_seed(cfg.train.seed)
    samples = read_dataset(data_dir)
    data_id = dataset_id(data_dir, samples)
    samples = thin_training(samples, cfg.train.keep, cfg.train.seed)
    built = build_model(cfg)
    if cfg.weights_path() is None:
        first = [s for s in samples if s.split == "train"][:: max(1, len(samples) // 64)][:64]
        calibrate_batchnorm(built, np.stack([model_input(s.path, cfg.model.input_size, None, None) for s in first]).astype(np.float32))
    sm = split_model(built, cfg.train.cache_at)
    key = cache_key(cfg, sm.cut, content_id(samples))
    log(
        f"[{cfg.task}] input {cfg.model.input_size}px, {cfg.model.trainable_layers} trainable backbone layers "
        f"(from {built.trainable[0] if built.trainable else '-'}), cache at {sm.cut} {sm.feature_shape}, "
        f"cache {cache_root / key}"
    )
    t_cache = time.time()
    cache = build_cache(cfg, sm, samples, cache_root / key)
    log(f"[{cfg.task}] activation cache ready in {time.time() - t_cache:.0f} s "
        f"({sum(c.feats.shape[0] for c in cache.values())} trunk passes, {cache['train'].views} views of train)")
    if "val" not in cache:
        raise MasknetError(f"{data_dir}: no validation images under {data_dir / 'val'}; early stopping needs them")
    int8: Int8Trunk | None = None
    if cfg.train.int8_trunk > 0:
        t_cache = time.time()
        int8 = build_int8_cache(cfg, sm, samples, cache_root / key, data_dir)
        log(f"[{cfg.task}] int8 trunk features ready in {time.time() - t_cache:.0f} s (calibration "
            f"{cfg.train.int8_calibration}, sha256 {int8.calibration_sha256[:12]}); {cfg.train.int8_trunk:.0%} "
            "of each epoch's images train on them")
    tr_idx, tr_y, tr_origin = _task_rows(cfg, cache["train"])
    va_idx, va_y, va_origin = _task_rows(cfg, cache["val"])
    if len(tr_idx) == 0 or len(va_idx) == 0:
        raise MasknetError(f"{data_dir}: no {cfg.task} images in train or val")
    counts = Counter(cfg.classes[i] for i in tr_y)
    log(f"[{cfg.task}] train {len(tr_idx)} images {dict(counts)}; val {len(va_idx)}")
    weights = sample_weights(cfg, tr_y, tr_origin)
    n_classes = len(cfg.classes)
    smooth = cfg.train.label_smoothing
    onehot = np.full((len(tr_y), n_classes), smooth / n_classes, np.float32)
    onehot[np.arange(len(tr_y)), tr_y] += 1.0 - smooth

    tail = sm.tail
    opt = keras.optimizers.Adam(cfg.train.learning_rate)
    tail.compile(optimizer=opt, loss=keras.losses.CategoricalCrossentropy())
    init = init_weights_file(cfg)
    if init is not None:
        # Keras only warns when it skips part of a file (those layers keep their fresh weights):
        # a partly loaded start is refused like one that does not load at all
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                tail.load_weights(init)
                why = next((str(w.message) for w in caught if "freshly-initialized" in str(w.message)), "")
            except ValueError as exc:
                why = str(exc)
        if why:
            raise ConfigError(f"train.init_from {cfg.train.init_from!r}: {init} does not fit this model "
                              f"({' '.join(why.split())[:200]}); was it trained with the same [model]?")
        log(f"[{cfg.task}] starting from the tail of {init}")

    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.json"
    state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": 0, "wait": 0, "lr_wait": 0,
                             "lr": cfg.train.learning_rate, "history": [], "averaged": 0}
    average: list[np.ndarray] | None = None
    if state_path.is_file() and (run_dir / "last.weights.h5").is_file():
        state = json.loads(state_path.read_text())
        state.setdefault("averaged", 0)
        tail.load_weights(run_dir / "last.weights.h5")
        _load_optimizer(opt, tail.trainable_variables, run_dir / "last.optimizer.npz")
        if state["averaged"]:
            with np.load(run_dir / AVERAGE_NPZ) as z:
                average = [z[f"w{i}"] for i in range(len(z.files))]
        log(f"[{cfg.task}] resuming after epoch {state['epoch']} (best {state['best']} at {state['best_epoch']})")
    (run_dir / CONFIG_JSON).write_text(json.dumps(
        {"task": cfg.task, "config_file": str(cfg.path), "model": asdict(cfg.model), "train": asdict(cfg.train),
         "augment": asdict(cfg.augment), "cut": sm.cut, "dataset_sha256": data_id,
         "trainable": built.trainable, "backbone": built.backbone_name}, indent=2))

    bs = cfg.train.batch_size
    views = cache["train"].views
    # val as the door's int8 trunk sees it, dequantized once (one clean view: a few hundred MB at most)
    val_int8 = int8.rows("val", np.arange(len(cache["val"].samples))) if int8 else None

    def val_metrics() -> dict[str, float]:
        m = _val_metrics(_predict(tail, cache["val"].feats, va_idx), va_y, va_origin, n_classes)
        if val_int8 is not None:
            q = _val_metrics(_predict(tail, val_int8, va_idx), va_y, va_origin, n_classes)
            m.update({k.replace("val_", "val_int8_", 1): v for k, v in q.items() if not k.endswith("_n")})
        return m

    monitor = cfg.train.monitor
    if init is not None and state["epoch"] == 0:
        start = val_metrics()
        log(f"[{cfg.task}] start: val_real_bal_acc {start['val_real_balanced_accuracy']:.4f}"
            + (f" int8-trunk val_real_bal_acc {start['val_int8_real_balanced_accuracy']:.4f}" if int8 else ""))
    while state["epoch"] < cfg.train.epochs and state["wait"] < cfg.train.patience:
        epoch = state["epoch"] + 1
        # per-epoch generator: a resumed run draws the same batches as an uninterrupted one
        erng = np.random.default_rng([cfg.train.seed, 2, epoch])
        averaging = bool(cfg.train.average_from) and epoch >= cfg.train.average_from
        if averaging and epoch == cfg.train.average_from:
            # the mean is what is kept from here on: it competes with later means, not with single epochs
            state.update(best=None, wait=0, lr_wait=0)
        opt.learning_rate.assign(state["lr"])
        order = erng.permutation(len(tr_idx))
        view = erng.integers(0, views, len(tr_idx))
        rows = view * len(cache["train"].samples) + tr_idx
        # drawn after the batches and views, so a run without the int8 trunk draws what it always did
        from_int8 = erng.random(len(tr_idx)) < cfg.train.int8_trunk if int8 else None
        t0 = time.time()
        losses = []
        bar = tqdm(range(0, len(order), bs), desc=f"{cfg.task} epoch {epoch}/{cfg.train.epochs}",
                   unit="batch", mininterval=10, leave=False)
        for k in bar:
            b = order[k : k + bs]
            # sorted reads from the memory-mapped cache are much faster than random ones
            srt = np.argsort(rows[b])
            b = b[srt]
            x = np.asarray(cache["train"].feats[rows[b]], dtype=np.float32)
            if int8 is not None and from_int8 is not None:
                q = from_int8[b]
                if q.any():
                    x[q] = int8.rows("train", rows[b][q])
            loss = tail.train_on_batch(x, onehot[b], sample_weight=weights[b])
            losses.append(float(loss))
        raw = tail.get_weights()
        # val has one (clean) view
        metrics = val_metrics()
        if averaging:
            # judge (and keep) the running mean of the epochs' weights; training goes on from `raw`
            n = state["averaged"]
            average = raw if average is None else [(a * n + w) / (n + 1) for a, w in zip(average, raw, strict=True)]
            state["averaged"] = n + 1
            tail.set_weights(average)
            single = metrics["val_real_balanced_accuracy"]
            metrics = val_metrics()
            metrics["epoch_val_real_balanced_accuracy"] = single  # this epoch's own weights, for the record
        metrics.update(epoch=epoch, train_loss=float(np.mean(losses)), lr=state["lr"], seconds=round(time.time() - t0, 1),
                       averaged=state["averaged"])
        value = metrics[monitor]
        improved = _better(monitor, value, state["best"])
        if improved:
            state.update(best=value, best_epoch=epoch, wait=0, lr_wait=0)
            tail.save_weights(run_dir / "best.weights.h5")
        else:
            state["wait"] += 1
            state["lr_wait"] += 1
            # while averaging the rate stays put (as in stochastic weight averaging): a mean of
            # weights taken at ever smaller steps leans towards the last few epochs
            if state["lr_wait"] >= cfg.train.lr_patience and not averaging:
                state["lr"] = state["lr"] / 2
                state["lr_wait"] = 0
        if averaging:
            tail.set_weights(raw)  # training goes on from this epoch's own weights, not the mean
        state["epoch"] = epoch
        state["history"].append(metrics)
        tail.save_weights(run_dir / "last.weights.h5")
        _save_optimizer(opt, run_dir / "last.optimizer.npz")
        if average is not None:
            np.savez(run_dir / AVERAGE_NPZ, **{f"w{i}": a for i, a in enumerate(average)})
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(state_path)
        log(
            f"[{cfg.task}] epoch {epoch:2d} train_loss {metrics['train_loss']:.4f} val_loss {metrics['val_loss']:.4f} "
            f"val_acc {metrics['val_accuracy']:.4f} val_bal_acc {metrics['val_balanced_accuracy']:.4f} "
            f"val_real_acc {metrics['val_real_accuracy']:.4f} val_real_bal_acc {metrics['val_real_balanced_accuracy']:.4f} lr {metrics['lr']:.2e} {metrics['seconds']}s"
            + (f" int8-trunk val_real_bal_acc {metrics['val_int8_real_balanced_accuracy']:.4f}" if int8 else "")
            + (f" (mean of {state['averaged']} epochs; this epoch alone {metrics['epoch_val_real_balanced_accuracy']:.4f})"
               if "epoch_val_real_balanced_accuracy" in metrics else "")
            + (" *" if improved else "")
        )
    tail.load_weights(run_dir / "best.weights.h5")
    model_path = run_dir / KERAS_MODEL
    built.model.save(model_path)
    best = state["history"][state["best_epoch"] - 1]
    summary = {"task": cfg.task, "classes": list(cfg.classes), "best_epoch": state["best_epoch"],
               "epochs_run": state["epoch"], "val": best, "input_size": cfg.model.input_size,
               "trainable_layers": cfg.model.trainable_layers, "backbone": built.backbone_name,
               "averaged_epochs": best.get("averaged", 0),
               "dataset_sha256": data_id, "train_counts": dict(counts),
               # the crop the images were cut with travels on: quantize -> export -> the manifest
               "crop": dataset_crop(data_dir).to_json()}
    if int8 is not None:
        # `masknet quantize` must calibrate on the same list, or the door's trunk is not the one trained on
        summary["int8_trunk_calibration_sha256"] = int8.calibration_sha256
    (run_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    log(f"[{cfg.task}] best epoch {state['best_epoch']}: {monitor} {state['best']:.4f}; saved {model_path}")
    return model_path


# --------------------------------------------------------------------------------------------
# CLI
def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="training config TOML (see convert/configs/)")
    p.add_argument("--data", type=Path, default=Path("data/build"), help="data set folder (default data/build)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where runs and checkpoints go (default runs/)")
    p.add_argument("--cache", type=Path, default=None, help="activation cache folder (default RUNS/cache)")
    p.add_argument("--name", default=None, help="run name (default: the task)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--restart", action="store_true", help="discard this run's checkpoints and start over")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, parse_overrides(args.set))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run_dir = args.runs / (args.name or cfg.task)
    if args.restart and run_dir.exists():
        shutil.rmtree(run_dir)
    cache_root = args.cache or (args.runs / "cache")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    train(cfg, args.data, run_dir, cache_root, log)
    return 0
