"""``python -m convert.score_band MODELS DATA_DIR``: how right Mask-net is by how sure it is.

On the real photos of a data-set folder (index.csv origin == real), the share of answers at or
above each score and their accuracy, and the accuracy of the answers below: the figures behind
the door's ``tracker.commit_score`` (a streak whose mean score is below it is not committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from convert.evaluate import list_images
from convert.files import load_rgb
from edge.cascade import Classifier
from edge.classes import masknet_label
from edge.crop import to_model_input
from edge.manifest import load_manifest

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def score_bands(models: Path, data: Path) -> list[str]:
    manifest = load_manifest(models)
    net = Classifier(manifest.models["masknet"], 2, manifest.path)
    scores, right = [], []
    for path, label in list_images(data, origin="real"):
        image = load_rgb(path)
        answer, score, _ = net(to_model_input(image, net.spec.input_size))
        scores.append(score)
        right.append(answer == masknet_label(label))
    s, ok = np.array(scores), np.array(right)
    lines = [f"{len(s)} real photos of {data}; Mask-net accuracy {ok.mean():.4f}"]
    for t in THRESHOLDS:
        sel = s >= t
        below = f"{ok[~sel].mean():.4f}" if (~sel).any() else "-"
        lines.append(f"score >= {t}: {sel.mean():.3f} of answers, accuracy {ok[sel].mean():.4f}; "
                     f"below: accuracy {below} (n {int((~sel).sum())})")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m convert.score_band MODELS_DIR DATA_DIR")
    print("\n".join(score_bands(Path(sys.argv[1]), Path(sys.argv[2]))))
