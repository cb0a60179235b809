"""Listing the photos of a source folder and the label each one carries."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from edge.classes import (
    ALL_CLASSES,
    MASK,
    MASK_OVER_CHIN,
    MASK_OVER_MOUTH_CHIN,
    MASK_OVER_NOSE_MOUTH,
)
from edge.errors import ConfigError

from .recipe import SourceSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# MaskedFace-Net names its files <id>_Mask[_Sub_Type].jpg; longest suffix first so that
# "_Mask_Mouth_Chin" is not read as "_Mask_Chin"'s neighbour or as plain "_Mask".
MFN_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_mask_mouth_chin", MASK_OVER_MOUTH_CHIN),
    ("_mask_nose_mouth", MASK_OVER_NOSE_MOUTH),
    ("_mask_chin", MASK_OVER_CHIN),
    ("_mask", MASK),
)


@dataclass(frozen=True)
class SourceItem:
    """One photo to read: where it is, its class, and which identity it belongs to if known."""

    path: Path
    label: str
    source: str
    rel: str  # path relative to the source folder, for reports
    identity: str | None = None  # from the recipe's group_patterns; None: the photo is its own


def mfn_label(name: str) -> str | None:
    """The class of a MaskedFace-Net file name, or None when it carries no known sub-type."""
    stem = Path(name).stem.lower()
    for suffix, label in MFN_SUFFIXES:
        if stem.endswith(suffix):
            return label
    return None


def _images_under(folder: Path, ignore: tuple[str, ...]) -> list[Path]:
    out = []
    for p in folder.rglob("*"):
        rel_parts = p.relative_to(folder).parts[:-1]
        if any(part in ignore or part.startswith(".") for part in rel_parts):
            continue
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            out.append(p)
    return sorted(out)


def _identity(spec: SourceSpec, path: Path) -> str | None:
    for pattern in spec.group_patterns:
        m = re.search(pattern, path.stem)
        if m and m.group(1):
            return f"{spec.identity_space or spec.name}:{m.group(1)}"
    return None


def _sample(paths: list[Path], limit: int, source: str) -> list[Path]:
    """A deterministic subset that does not depend on listing order or the run."""
    if not limit or len(paths) <= limit:
        return paths
    keyed = sorted(paths, key=lambda p: hashlib.sha1(f"{source}/{p.name}".encode()).hexdigest())
    return sorted(keyed[:limit])


def list_source(spec: SourceSpec, skipped: Counter[str] | None = None) -> list[SourceItem]:
    """Every photo of one source with its label.

    Raises ConfigError for a missing folder, a class folder whose name is not a class id (a typo
    there would silently mislabel photos) and a source with no photos. Files whose label cannot be
    read from their name (MaskedFace-Net layout) are counted in `skipped`, not guessed.
    """
    skipped = skipped if skipped is not None else Counter()
    root = spec.path
    if not root.is_dir():
        raise ConfigError(f"source {spec.name!r}: folder {root} does not exist; fix 'path' in the recipe or pass --root")
    items: list[SourceItem] = []
    if spec.layout == "classes":
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in spec.ignore)
        unknown = [d.name for d in subdirs if d.name not in ALL_CLASSES]
        if unknown:
            raise ConfigError(
                f"source {spec.name!r}: folder(s) {', '.join(unknown)} in {root} are not class ids "
                f"({', '.join(ALL_CLASSES)}); rename them or list them under ignore = [...]"
            )
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            skipped["image outside a class folder"] += len(loose)
        for d in subdirs:
            if spec.classes and d.name not in spec.classes:
                continue
            paths = _sample(_images_under(d, spec.ignore), spec.limit, f"{spec.name}/{d.name}")
            items += [SourceItem(p, d.name, spec.name, str(p.relative_to(root)), _identity(spec, p)) for p in paths]
    elif spec.layout == "maskedfacenet":
        for p in _sample(_images_under(root, spec.ignore), spec.limit, spec.name):
            label = mfn_label(p.name)
            if label is None:
                skipped["MaskedFace-Net name without a wearing state"] += 1
                continue
            if spec.classes and label not in spec.classes:
                continue
            items.append(SourceItem(p, label, spec.name, str(p.relative_to(root)), _identity(spec, p)))
    else:  # unlabelled: every photo gets the recipe's label
        assert spec.label is not None
        for p in _sample(_images_under(root, spec.ignore), spec.limit, spec.name):
            items.append(SourceItem(p, spec.label, spec.name, str(p.relative_to(root)), _identity(spec, p)))
    if not items:
        raise ConfigError(f"source {spec.name!r}: no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}; check 'path', 'layout' and 'classes'")
    if spec.labels_csv is not None:
        items = _apply_labels(items, spec, read_labels(spec.labels_csv), skipped)
    if spec.burst_patterns:
        items = _join_bursts(items, spec)
    return items


def read_labels(path: Path) -> dict[str, str]:
    """file -> class id ("" = leave the photo out) from a CSV with columns `file` and `class_id`."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"file", "class_id"} <= set(reader.fieldnames):
                raise ConfigError(f"{path}: labels CSV needs the columns file and class_id")
            out = {}
            for n, row in enumerate(reader, start=2):
                label = (row["class_id"] or "").strip()
                if label and label not in ALL_CLASSES:
                    raise ConfigError(f"{path} line {n}: class_id {label!r} is not a class id ({', '.join(ALL_CLASSES)}) or empty")
                out[row["file"].strip().replace("\\", "/")] = label
            return out
    except FileNotFoundError:
        raise ConfigError(f"labels_csv {path} not found; fix the path in the recipe (relative to the data root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the labels CSV ({exc})") from None


def _csv_key(path: Path, labels: dict[str, str]) -> str | None:
    """The CSV's name for a photo: its path relative to whichever folder the CSV counts from."""
    parts = path.parts
    for k in range(len(parts) - 1, -1, -1):
        key = "/".join(parts[k:])
        if key in labels:
            return key
    return None


def _apply_labels(items: list[SourceItem], spec: SourceSpec, labels: dict[str, str], skipped: Counter[str]) -> list[SourceItem]:
    """Photos listed in the labels CSV take its class id; an empty class id leaves the photo out.
    Photos the CSV does not list keep their folder's label."""
    out = []
    for it in items:
        key = _csv_key(it.path, labels)
        if key is None:
            out.append(it)
            continue
        label = labels[key]
        if not label:
            skipped[f"labels CSV: {it.label} photo left out (no class_id)"] += 1
            continue
        if label != it.label:
            skipped[f"labels CSV: {it.label} -> {label}"] += 1
        out.append(replace(it, label=label))
    return out


def _join_bursts(items: list[SourceItem], spec: SourceSpec) -> list[SourceItem]:
    """Give photos of one burst (one series, numbers at most `burst_gap` apart) one identity.

    A photo that already has an identity from `group_patterns` keeps it."""
    series: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for k, it in enumerate(items):
        if it.identity is not None:
            continue
        for pattern in spec.burst_patterns:
            m = re.search(pattern, Path(it.rel).stem)
            if m and m.group(2):
                # the width is part of the series: jh_001 and jh_0001 are different counters
                series[f"{m.group(1)}#{len(m.group(2))}"].append((int(m.group(2)), k))
                break
    out = list(items)
    for name, members in series.items():
        members.sort()
        start = members[0][0]
        prev = None
        for number, k in members:
            if prev is not None and number - prev > spec.burst_gap:
                start = number
            prev = number
            out[k] = replace(items[k], identity=f"{spec.identity_space or spec.name}:burst:{name}:{start}")
    return out
