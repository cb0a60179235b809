"""Per-face label decisions kept in a committed CSV, so that a by-eye audit survives rebuilds.

Scene photos (`faces = "all"`) carry one label for every face in them, which is wrong for the
unmasked people in the background. An audit CSV lists single faces with the decision taken:

    file,x0,y0,x1,y1,label,reason
    rwmfd_0001_3.jpg,112,40,170,101,no_mask,background face without a mask

`file` is the photo's path inside the source folder, the box is the detector's face box in the
photo's pixels (what the build finds again: the detector is deterministic), `label` is a class id
or `drop`. The build matches each detected face to the listed box of the same photo with the
highest overlap (IoU >= 0.5) and applies the decision; listed faces it no longer finds are
reported, not guessed.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.boxes import iou
from edge.classes import ALL_CLASSES
from edge.errors import ConfigError

AUDIT_COLUMNS = ("file", "x0", "y0", "x1", "y1", "label", "reason")
DROP = "drop"
MIN_IOU = 0.5


@dataclass(frozen=True)
class Decision:
    file: str
    box: tuple[float, float, float, float]
    label: str  # a class id, or "drop"
    reason: str


class FaceAudit:
    """The decisions of one audit CSV, looked up by photo and face box."""

    def __init__(self, decisions: list[Decision]) -> None:
        self.by_file: dict[str, list[Decision]] = {}
        for d in decisions:
            self.by_file.setdefault(d.file, []).append(d)
        self.used: set[tuple[str, tuple[float, float, float, float]]] = set()

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_file.values())

    def decision(self, file: str, box: np.ndarray) -> Decision | None:
        listed = self.by_file.get(Path(file).as_posix())
        if not listed:
            return None
        overlaps = iou(np.asarray(box, np.float64), np.array([d.box for d in listed], np.float64))
        k = int(np.argmax(overlaps))
        if overlaps[k] < MIN_IOU:
            return None
        self.used.add((listed[k].file, listed[k].box))
        return listed[k]

    def unused(self) -> list[Decision]:
        return [d for ds in self.by_file.values() for d in ds if (d.file, d.box) not in self.used]


def load_audit(path: Path) -> FaceAudit:
    """Read and check an audit CSV; every mistake is a one-line ConfigError naming the file and line."""
    decisions = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(AUDIT_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ConfigError(f"{path}: audit CSV lacks column(s) {', '.join(sorted(missing))}; columns: {', '.join(AUDIT_COLUMNS)}")
            for n, row in enumerate(reader, start=2):
                label = row["label"].strip()
                if label != DROP and label not in ALL_CLASSES:
                    raise ConfigError(f"{path} line {n}: label {label!r} must be a class id ({', '.join(ALL_CLASSES)}) or {DROP!r}")
                try:
                    box = tuple(float(row[c]) for c in ("x0", "y0", "x1", "y1"))
                except (TypeError, ValueError):
                    raise ConfigError(f"{path} line {n}: x0, y0, x1, y1 must be numbers (the face box in pixels)") from None
                if not (box[2] > box[0] and box[3] > box[1]):
                    raise ConfigError(f"{path} line {n}: the box must have x1 > x0 and y1 > y0")
                decisions.append(Decision(row["file"].strip(), box, label, (row["reason"] or "").strip()))  # type: ignore[arg-type]
    except FileNotFoundError:
        raise ConfigError(f"audit_csv {path} not found; fix the path in the recipe ({{repo}}/... for a file in this checkout)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the audit CSV ({exc})") from None
    return FaceAudit(decisions)


def write_audit(path: Path, decisions: list[Decision]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(AUDIT_COLUMNS)
        for d in sorted(decisions, key=lambda d: (d.file, d.box)):
            w.writerow([d.file, *(f"{v:.1f}" for v in d.box), d.label, d.reason])


def audit_candidates(recipe: Any, source: str, models_dir: Path, out: Path, threshold: float = 0.8,
                     tile: int = 112, columns: int = 10) -> tuple[Path, list[Path]]:
    """Every face the build finds in one source, scored by the shipped Mask-net, for a by-eye audit.

    Writes `faces.csv` (file, box, Mask-net's probabilities, whether it is a candidate) and numbered
    contact sheets `sheet_NN.png` of the candidates: faces Mask-net does not call the source's
    label with at least `threshold` probability, most doubtful first. The tile number is the
    `n` column of faces.csv; decisions go into the audit CSV by hand, with a reason.
    """
    import cv2

    from edge.cascade import Classifier
    from edge.crop import crop_face, to_model_input
    from edge.detector import BlazeFaceDetector
    from edge.manifest import load_manifest

    from .build import read_rgb
    from .faces import choose_faces
    from .sources import list_source

    spec = next((s for s in recipe.sources if s.name == source), None)
    if spec is None:
        raise ConfigError(f"recipe {recipe.path}: no source named {source!r}")
    manifest = load_manifest(models_dir)
    net = Classifier(manifest.models["masknet"], 1, manifest.path)
    detector = BlazeFaceDetector(score_threshold=recipe.detector_score, num_threads=1)
    out.mkdir(parents=True, exist_ok=True)
    rows, crops = [], []
    for item in list_source(spec):
        image = read_rgb(item.path)
        if image is None:
            continue
        for ff in choose_faces(image, detector, spec, recipe.pad, Counter()):
            crop = crop_face(image, ff.face.box, 224, keypoints=ff.face.keypoints)
            _, _, p = net(to_model_input(crop, net.spec.input_size))
            probs = dict(zip(net.classes, (float(v) for v in p), strict=True))
            rows.append({"file": item.rel, "box": [round(float(v), 1) for v in ff.face.box], "width": round(ff.face.width),
                         **{f"p_{c}": round(v, 4) for c, v in probs.items()}})
            crops.append(crop)
    label = spec.label or ""
    order = sorted(range(len(rows)), key=lambda i: rows[i].get(f"p_{label}", 0.0))
    picked = [i for i in order if rows[i].get(f"p_{label}", 0.0) < threshold]
    with open(out / "faces.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["n", "file", "x0", "y0", "x1", "y1", "width", *[f"p_{c}" for c in net.classes], "candidate"])
        rank = {i: n for n, i in enumerate(picked)}
        for i, r in enumerate(rows):
            w.writerow([rank.get(i, ""), r["file"], *r["box"], r["width"], *[r[f"p_{c}"] for c in net.classes], int(i in rank)])
    sheets = []
    per_sheet = columns * 7
    for s in range(0, len(picked), per_sheet):
        tiles = []
        for n, i in enumerate(picked[s : s + per_sheet], start=s):
            t = cv2.cvtColor(cv2.resize(crops[i], (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
            cv2.rectangle(t, (0, 0), (40, 16), (255, 255, 255), -1)
            cv2.putText(t, str(n), (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(t)
        while len(tiles) % columns:
            tiles.append(np.full((tile, tile, 3), 255, np.uint8))
        path = out / f"sheet_{s // per_sheet:02d}.png"
        cv2.imwrite(str(path), np.vstack([np.hstack(tiles[k : k + columns]) for k in range(0, len(tiles), columns)]))
        sheets.append(path)
    return out / "faces.csv", sheets
