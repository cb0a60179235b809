"""The int8 calibration list: a deterministic, stratified choice of training crops.

`masknet quantize` feeds these images through the float model to fix each tensor's int8 range,
so they must look like what the door sees: every class and every origin (real, recoloured,
synthetic) is represented. Only the list and the recipe that made it are committed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

from edge.errors import ConfigError

from .contact import read_index

MIN_COUNT, MAX_COUNT = 200, 500


def select(rows: list[dict[str, str]], count: int = 300, seed: int = 0, split: str = "train") -> list[str]:
    """`count` paths from `split`, spread as evenly as possible over (class, origin) strata.

    Small strata give all they have and the rest is shared among the larger ones; within a
    stratum the order is a seeded hash of the path, so the choice is stable across machines.
    """
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise ConfigError(f"calibration --count must be {MIN_COUNT}..{MAX_COUNT}, not {count}")
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        if row["split"] == split:
            strata[(row["label"], row["origin"])].append(row["path"])
    total = sum(len(v) for v in strata.values())
    if total < count:
        raise ConfigError(f"only {total} {split} images in the index; build a larger data set or lower --count")
    for key in strata:
        strata[key].sort(key=lambda p: hashlib.sha256(f"{seed}/{p}".encode()).hexdigest())
    # water-filling: raise a common quota until the strata together give `count`
    quota = {k: 0 for k in strata}
    left = count
    open_keys = sorted(strata)
    while left > 0 and open_keys:
        share = max(1, left // len(open_keys))
        for k in list(open_keys):
            take = min(share, len(strata[k]) - quota[k], left)
            quota[k] += take
            left -= take
            if quota[k] >= len(strata[k]):
                open_keys.remove(k)
            if left == 0:
                break
    return sorted(p for k in sorted(strata) for p in strata[k][: quota[k]])


def write_calibration(data: Path, out: Path, count: int = 300, seed: int = 0) -> tuple[Path, list[str]]:
    """Write `calibration.txt` (one dataset-relative path per line) and `recipe.toml` into `out`."""
    rows = read_index(data)
    paths = select(rows, count, seed)
    info_path = data / "dataset.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    listing = out / "calibration.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    by_key: dict[str, int] = defaultdict(int)
    label_of = {r["path"]: (r["label"], r["origin"]) for r in rows}
    for p in paths:
        by_key["/".join(label_of[p])] += 1
    strata_lines = "\n".join(f'"{k}" = {v}' for k, v in sorted(by_key.items()))
    (out / "recipe.toml").write_text(
        "# How calibration.txt was made; rerun to reproduce:\n"
        f"#   masknet dataset calibration --data {data} --out {out} --count {count} --seed {seed}\n"
        "# Paths in calibration.txt are relative to the data set folder (--data).\n"
        f"count = {len(paths)}\n"
        f"seed = {seed}\n"
        'split = "train"\n'
        'method = "equal share per (class, origin) stratum, small strata give all; seeded sha256 order within a stratum"\n'
        f'dataset_file_list_sha256 = "{info.get("file_list_sha256", "")}"\n'
        f'dataset_code_version = "{info.get("code_version", "")}"\n'
        f'dataset_recipe = "{(info.get("recipe") or {}).get("name", "")}"\n'
        "\n[strata]\n" + strata_lines + "\n",
        encoding="utf-8",
    )
    return listing, paths
