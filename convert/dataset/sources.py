"""Listing the photos of a source folder and the label each one carries."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
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
    return items
