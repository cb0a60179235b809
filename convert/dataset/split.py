"""Identity-disjoint, stratified train / val / test assignment of image groups."""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edge.errors import ConfigError

SPLITS = ("train", "val", "test")


def _stable_seed(seed: int, text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "little")


def assign_splits(
    groups: Mapping[str, tuple[str, int]],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, str]:
    """Give every group one split.

    `groups` maps a group id to (stratum, number of images). Each stratum (e.g. source/class) is
    split on its own so that every class and source is spread over the splits in the given
    fractions, counted in images. Groups are taken largest first (in seeded random order among
    equal sizes) and each goes to the split furthest below its target, so one big identity cannot
    swamp the small val/test splits. The result depends only on the inputs and the seed.
    """
    by_stratum: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for gid, (stratum, n) in groups.items():
        by_stratum[stratum].append((gid, n))
    out: dict[str, str] = {}
    frac = np.asarray(fractions, dtype=np.float64)
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum])
        rng = np.random.default_rng(_stable_seed(seed, stratum))
        order = rng.permutation(len(members))
        shuffled = [members[i] for i in order]
        shuffled.sort(key=lambda g: -g[1])  # stable: ties keep their random order
        filled = np.zeros(3)
        for gid, n in shuffled:
            deficit = frac * (filled.sum() + n) - filled
            # a split with zero share never receives anything
            deficit[frac == 0] = -np.inf
            k = int(np.argmax(deficit))
            out[gid] = SPLITS[k]
            filled[k] += n
    return out


def read_split_pins(path: Path) -> dict[str, str]:
    """photo face (`base`) -> split, from a CSV with `base` and `split` columns (an earlier build's
    index.csv, or the pins file made from one)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the split pins ({exc.strerror})") from None
    if not rows or not {"base", "split"} <= set(rows[0]):
        raise ConfigError(f"{path}: split pins need a CSV with 'base' and 'split' columns (as in index.csv)")
    pins: dict[str, str] = {}
    for i, row in enumerate(rows, start=2):
        if row["split"] not in SPLITS:
            raise ConfigError(f"{path}: line {i}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
        if pins.setdefault(row["base"], row["split"]) != row["split"]:
            raise ConfigError(f"{path}: line {i}: {row['base']} is pinned to both {pins[row['base']]} and {row['split']}")
    return pins


def pinned_split(bases: list[str], pins: Mapping[str, str]) -> str | None:
    """The split of a group from its members' pins: the earliest of train, val, test that any member
    is pinned to, so a photo once trained on never lands in val or test (a group can join photos
    that an earlier build kept apart); None when no member is pinned."""
    found = {pins[b] for b in bases if b in pins}
    return min(found, key=SPLITS.index) if found else None
