"""Box geometry shared by the detector (NMS), the tracker and the data-set build: boxes are
``(x0, y0, x1, y1)`` float pixels."""

from __future__ import annotations

import numpy as np


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with many (N, 4)."""
    return iou_matrix(np.asarray(box)[np.newaxis], np.asarray(boxes))[0]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4) against every box in ``b`` (M x 4), x0 y0 x1 y1.

    Computed in the boxes' own dtype (the tracker and NMS pass float32, data-set matching float64).
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.result_type(a, b))
    inter = intersection_matrix(a, b)
    ax0, ay0, ax1, ay1 = (a[:, i : i + 1] for i in range(4))
    bx0, by0, bx1, by1 = (b[:, i] for i in range(4))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def intersection_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Overlap area of every box in ``a`` (N x 4) with every box in ``b`` (M x 4), in their dtype."""
    ax0, ay0, ax1, ay1 = (a[:, i : i + 1] for i in range(4))
    bx0, by0, bx1, by1 = (b[:, i] for i in range(4))
    return np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
