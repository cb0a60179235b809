"""Perceptual hashes and grouping of near-duplicate images.

Near duplicates (the same photo re-saved, resized, brightened, mirrored, or a burst of
almost identical shots) must land in one split, otherwise the test set measures memory. A 64-bit
DCT hash is compared by Hamming distance; mirrored copies are caught by hashing the mirror too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np


def phash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an RGB or grey uint8 image."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    # the DC term only says how bright the image is; leave it out of the median
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def phash_pair(image: np.ndarray) -> tuple[int, int]:
    """Hash of the image and of its mirror image."""
    return phash(image), phash(np.ascontiguousarray(image[:, ::-1]))


def hamming(a: int, b: int) -> int:
    return int((a ^ b).bit_count())


class UnionFind:
    """Disjoint sets over 0..n-1; the representative of a set is its smallest member."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


def near_duplicate_pairs(
    hashes: Sequence[int], mirror_hashes: Sequence[int] | None = None, max_distance: int = 8, chunk: int = 1024
) -> Iterable[tuple[int, int]]:
    """Index pairs (i < j) whose hashes (or one's mirror vs the other) differ in <= max_distance bits."""
    h = np.asarray([np.uint64(x) for x in hashes], dtype=np.uint64)
    m = np.asarray([np.uint64(x) for x in mirror_hashes], dtype=np.uint64) if mirror_hashes is not None else None
    n = len(h)
    for start in range(0, n, chunk):
        block = h[start : start + chunk, None]
        dist = np.bitwise_count(block ^ h[None, :])
        if m is not None:
            dist = np.minimum(dist, np.bitwise_count(block ^ m[None, :]))
        rows, cols = np.nonzero(dist <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                yield i, c


def group_near_duplicates(
    hashes: Sequence[int], mirror_hashes: Sequence[int] | None = None, max_distance: int = 8, uf: UnionFind | None = None
) -> UnionFind:
    """Union every near-duplicate pair into one set (pass `uf` to merge with groups known already)."""
    uf = uf if uf is not None else UnionFind(len(hashes))
    for i, j in near_duplicate_pairs(hashes, mirror_hashes, max_distance):
        uf.union(i, j)
    return uf
