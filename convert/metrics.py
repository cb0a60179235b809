"""Classification metrics, text tables and the confusion-matrix picture (numpy + OpenCV only)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def resampled_balanced_accuracy(
    y_true: np.ndarray, answers: Sequence[np.ndarray], resamples: int = 2000, seed: int = 0
) -> np.ndarray:
    """Balanced accuracy of each set of ``answers`` in each paired bootstrap resample of the
    images (drawn with replacement, the same draw for every set; seeded): shape (sets, resamples).
    A class a resample happens to miss does not count for that resample."""
    y = np.asarray(y_true, np.int64)
    sets = [np.asarray(a, np.int64) for a in answers]
    if len(y) == 0 or any(len(a) != len(y) for a in sets):
        raise ValueError("resampled_balanced_accuracy needs the same non-empty set of images for every set")
    weights = np.random.default_rng(seed).multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=resamples)
    bal = np.zeros((len(sets), resamples))
    present = np.zeros(resamples)
    for c in np.unique(y):
        w = weights[:, y == c]
        n = w.sum(axis=1)
        has = n > 0
        for i, a in enumerate(sets):
            bal[i, has] += (w[has] @ (a[y == c] == c)) / n[has]
        present += has
    return bal / present


def share_ahead(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, resamples: int = 2000, seed: int = 0
) -> float:
    """Paired bootstrap: the share of resamples of the images (drawn with replacement, the same
    draw for both) in which answers ``a`` have the higher balanced accuracy than answers ``b``;
    ties count half. 0.5 means the two cannot be told apart on these images; seeded, so the same
    answers give the same share."""
    try:
        bal_a, bal_b = resampled_balanced_accuracy(y_true, [pred_a, pred_b], resamples, seed)
    except ValueError:
        raise ValueError("share_ahead needs the same non-empty set of images for both") from None
    diff = bal_a - bal_b
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    classes: Sequence[str] | None = None,
    n_pred_classes: int | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over classes present), per-class P/R/F1, confusion.

    ``n_pred_classes`` > ``n_classes`` allows predictions outside the true classes (a cascade
    can answer a class that no test folder holds); those columns count as errors.
    """
    n_pred = max(n_classes, n_pred_classes or 0)
    cm = confusion_matrix(y_true, y_pred, n_pred)
    names = list(classes) if classes is not None else [str(i) for i in range(n_pred)]
    per_class: dict[str, dict[str, float | int]] = {}
    recalls = []
    for i in range(n_classes):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        predicted = int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[names[i]] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            recalls.append(recall)
    n = int(cm.sum())
    return {
        "accuracy": float(np.trace(cm[:n_classes, :n_classes]) / n) if n else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "per_class": per_class,
        "confusion": cm[:n_classes].tolist(),
        "classes": names[:n_pred],
        "n": n,
    }


def format_report(title: str, rep: dict[str, Any]) -> str:
    """A table like the paper's Tables 1 and 2, then accuracy, balanced accuracy and the confusion."""
    lines = [title, f"{'class':<22}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for name, m in rep["per_class"].items():
        lines.append(f"{name:<22}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9d}")
    lines.append(f"{'accuracy':<22}{rep['accuracy']:>30.4f}{rep['n']:>9d}")
    lines.append(f"{'balanced accuracy':<22}{rep['balanced_accuracy']:>30.4f}")
    cols = rep["classes"]
    width = max(8, max(len(c) for c in cols) + 1)
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * 22 + "".join(f"{c[:width - 1]:>{width}}" for c in cols))
    for name, row in zip(rep["per_class"], rep["confusion"], strict=True):
        lines.append(f"{name:<22}" + "".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def markdown_report(rep: dict[str, Any]) -> str:
    out = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, m in rep["per_class"].items():
        out.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    out.append(f"| **accuracy** | | | {rep['accuracy']:.4f} | {rep['n']} |")
    out.append(f"| balanced accuracy | | | {rep['balanced_accuracy']:.4f} | |")
    return "\n".join(out)


def save_confusion_png(path: Path, panels: Sequence[tuple[str, dict[str, Any]]]) -> Path:
    """One confusion-matrix panel per report, side by side, row-normalised shading with counts."""
    import cv2

    cell, pad, label_w, top = 70, 20, 190, 240
    images = []
    for title, rep in panels:
        cm = np.asarray(rep["confusion"], np.int64)
        rows_n, cols_n = cm.shape
        h, w = top + rows_n * cell + pad, label_w + cols_n * cell + pad
        img = np.full((h, w, 3), 255, np.uint8)
        cv2.putText(img, title, (pad, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(img, f"acc {rep['accuracy']:.4f}  bal {rep['balanced_accuracy']:.4f}  n {rep['n']}",
                    (pad, 55), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        for j, name in enumerate(rep["classes"][:cols_n]):
            # column labels written upwards so long class ids fit
            label = np.full((cell, top - 70, 3), 255, np.uint8)
            cv2.putText(label, name[:22], (2, cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            rot = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
            x0 = label_w + j * cell
            img[65 : 65 + rot.shape[0], x0 : x0 + cell] = rot[:, :cell]
        for i, name in enumerate(list(rep["per_class"])[:rows_n]):
            y0 = top + i * cell
            cv2.putText(img, name[:22], (5, y0 + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            total = max(1, int(cm[i].sum()))
            for j in range(cols_n):
                x0 = label_w + j * cell
                frac = cm[i, j] / total
                shade = int(255 - 200 * frac)
                colour = (shade, shade, 255) if i != j else (shade, 255, shade)
                cv2.rectangle(img, (x0, y0), (x0 + cell - 2, y0 + cell - 2), colour, -1)
                txt = str(int(cm[i, j]))
                cv2.putText(img, txt, (x0 + 8, y0 + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        images.append(img)
    height = max(im.shape[0] for im in images)
    row = np.hstack([np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)), constant_values=255) for im in images])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR)):
        from edge.errors import MasknetError

        raise MasknetError(f"{path}: cannot write the confusion-matrix PNG")
    return path


def measure_latency(path: Path, runs: int = 50, warmup: int = 5, num_threads: int | None = None) -> dict[str, float]:
    """Median / p90 milliseconds of one invoke of a TFLite model with LiteRT on this machine."""
    from edge.litert import TFLiteModel

    model = TFLiteModel(path, num_threads=num_threads)
    shape = model.input_shape
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for _ in range(warmup):
        model.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.run(x)
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "runs": runs}
