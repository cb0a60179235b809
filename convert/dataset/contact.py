"""Contact sheets: one PNG per class of sample crops, to look at what the build made."""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from edge.classes import ALL_CLASSES
from edge.errors import ConfigError

TAG_COLOURS = {"real": (40, 160, 40), "recoloured": (200, 120, 0), "synthetic": (30, 30, 200)}  # BGR


def read_index(data: Path) -> list[dict[str, str]]:
    index = data / "index.csv"
    if not index.is_file():
        raise ConfigError(f"{index} not found; run `masknet dataset build --out {data}` first")
    with open(index, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sample(rows: list[dict[str, str]], n: int, seed: int) -> list[dict[str, str]]:
    """Up to n rows spread evenly over origins, in a seeded but stable order."""
    by_origin: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: hashlib.sha1(f"{seed}/{r['path']}".encode()).hexdigest()):
        by_origin[row["origin"]].append(row)
    out: list[dict[str, str]] = []
    while len(out) < n and any(by_origin.values()):
        for origin in sorted(by_origin):
            if by_origin[origin] and len(out) < n:
                out.append(by_origin[origin].pop(0))
    return out


def contact_sheets(data: Path, per_class: int = 64, columns: int = 8, tile: int = 112, seed: int = 0) -> list[Path]:
    """Write `contact_<class>.png` into `data` for every class with images; returns their paths.

    Each tile carries a coloured corner: green real, orange recoloured, red synthetic.
    """
    rows = read_index(data)
    written = []
    for cls in ALL_CLASSES:
        picked = _sample([r for r in rows if r["label"] == cls], per_class, seed)
        if not picked:
            continue
        tiles = []
        for row in picked:
            img = cv2.imread(str(data / row["path"]), cv2.IMREAD_COLOR)
            if img is None:
                img = np.zeros((tile, tile, 3), np.uint8)
            img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
            cv2.rectangle(img, (0, 0), (12, 12), TAG_COLOURS.get(row["origin"], (128, 128, 128)), -1)
            tiles.append(img)
        while len(tiles) % columns:
            tiles.append(np.full((tile, tile, 3), 255, np.uint8))
        sheet = np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])
        path = data / f"contact_{cls}.png"
        cv2.imwrite(str(path), sheet)
        written.append(path)
    return written
