"""`masknet decide`: Mask-net's prior shift for wrongly worn masks, chosen on real val photos."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import assert_clean_failure, astronaut, classifier_models, masknet

from convert import decide
from convert import evaluate as ev
from edge.cascade import Classifier
from edge.classes import MASK_INCORRECT, MASKNET_CLASSES
from edge.crop import to_model_input
from edge.errors import MasknetError
from edge.manifest import load_manifest

MASK, INCORRECT, NO_MASK = range(3)


REAL_PROBS = np.array([
    [0.90, 0.08, 0.02], [0.90, 0.08, 0.02], [0.90, 0.08, 0.02], [0.90, 0.08, 0.02],
    [0.55, 0.44, 0.01],  # a mask that any shift above log(0.55 / 0.44) = 0.22 calls wrong
    [0.60, 0.40, 0.00],  # wrongly worn masks under-called: right from log(1.5) = 0.41 ...
    [0.70, 0.30, 0.00],  # ... and from log(7 / 3) = 0.85
    [0.10, 0.90, 0.00],
    [0.01, 0.01, 0.98],
])
REAL_TRUTH = np.array([MASK] * 5 + [INCORRECT] * 3 + [NO_MASK])


def test_the_smallest_shift_with_the_best_balanced_accuracy_on_real_photos_wins() -> None:
    rows = decide.sweep(REAL_PROBS, REAL_TRUTH, np.ones(len(REAL_TRUTH), bool), resamples=200)
    by = {r["offset"]: r for r in rows}
    assert by[0.0]["balanced_accuracy"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert by[0.3]["recall"] == pytest.approx({"mask": 0.8, "mask_incorrect": 1 / 3, "no_mask": 1.0})
    assert by[0.6]["recall"]["mask_incorrect"] == pytest.approx(2 / 3)
    # every shift from 0.85 to 2.00 scores (0.8 + 1 + 1) / 3: the least of them is taken
    assert by[0.85]["balanced_accuracy"] == by[2.0]["balanced_accuracy"] == pytest.approx(2.8 / 3)
    assert by[0.85]["whole"] == pytest.approx(2.8 / 3) and by[0.85]["whole_behind"] < decide.VETO
    assert decide.best_offset(rows) == 0.85
    # a model that needs no shift gets none
    assert decide.best_offset(decide.sweep(np.eye(3), np.arange(3), np.ones(3, bool), resamples=50)) == 0.0


def test_a_shift_that_loses_on_all_the_images_beyond_the_noise_is_vetoed() -> None:
    # thirty drawn masks the model is only 60 % sure of: any shift above log(1.5) calls them wrong
    probs = np.vstack([REAL_PROBS, np.tile([0.60, 0.40, 0.00], (30, 1)), np.tile([0.1, 0.9, 0.0], (5, 1))])
    truth = np.concatenate([REAL_TRUTH, [MASK] * 30, [INCORRECT] * 5])
    real = np.arange(len(truth)) < len(REAL_TRUTH)
    rows = decide.sweep(probs, truth, real, resamples=500)
    by = {r["offset"]: r for r in rows}
    assert by[0.85]["balanced_accuracy"] == pytest.approx(2.8 / 3)  # the real photos alone would take it
    assert by[0.85]["whole_behind"] == 1.0 and by[0.0]["whole_behind"] == 0.0
    assert decide.best_offset(rows) == 0.0
    assert decide.best_offset(rows, veto=1.01) == 0.85  # no veto: the real photos' choice


def _copy_models(tmp_path: Path, pytestconfig: pytest.Config) -> Path:
    src = classifier_models(pytestconfig.cache)
    dst = tmp_path / "models"
    dst.mkdir()
    for f in [src / "manifest.json", *src.glob("*_int8.tflite")]:
        shutil.copy2(f, dst / f.name)
    return dst


def test_a_class_bias_moves_the_answer_and_the_score_stays_a_probability(tmp_path: Path, pytestconfig) -> None:
    models = _copy_models(tmp_path, pytestconfig)
    manifest = load_manifest(models)
    spec = dataclasses.replace(manifest.models["masknet"], class_bias={})
    x = to_model_input(astronaut()[:300, 100:400], spec.input_size)
    label, score, p = Classifier(spec, 1, manifest.path)(x)
    k = spec.classes.index(MASK_INCORRECT)
    # just enough to make mask_incorrect win, or to make it lose where it already wins
    others = max(p[i] for i in range(len(p)) if i != k)
    offset = math.log(others / p[k]) + (0.1 if label != MASK_INCORRECT else -0.1)
    shifted = Classifier(dataclasses.replace(spec, class_bias={MASK_INCORRECT: offset}), 1, manifest.path)
    label2, score2, p2 = shifted(x)
    assert (label2 == MASK_INCORRECT) == (label != MASK_INCORRECT)
    prior = np.ones(len(p))
    prior[k] = math.exp(offset)
    assert p2 == pytest.approx(p * prior / (p * prior).sum(), rel=1e-5)
    assert score2 == pytest.approx(p2.max()) and p2.sum() == pytest.approx(1.0)


def _real_folder(root: Path) -> Path:
    """Twelve variations of one photo in the three Mask-net folders, with an index.csv of real photos."""
    img = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    lines = ["path,split,label,origin,source,group,base"]
    for i in range(12):
        cls = MASKNET_CLASSES[i % 3]
        (root / cls).mkdir(parents=True, exist_ok=True)
        y, x = 10 * i, 15 * (11 - i)
        face = cv2.resize(img[y:y + 300, x + 50:x + 350], (96 + 8 * i, 96 + 8 * i))
        cv2.imwrite(str(root / cls / f"p{i}.jpg"), face if i % 2 else face[:, ::-1])
        lines.append(f"{cls}/p{i}.jpg,val,{cls},real,real,g{i},p{i}.jpg#0")
    (root / "index.csv").write_text("\n".join(lines) + "\n")
    return root


def test_the_chosen_shift_is_what_masknet_evaluate_then_scores(tmp_path: Path, pytestconfig) -> None:
    models = _copy_models(tmp_path, pytestconfig)
    data = _real_folder(tmp_path / "val")
    offset, rows, n = decide.choose(models, data, progress=False)
    assert n == 12 and offset in decide.GRID
    before = ev.evaluate(data, models, origin="real", progress=False)
    assert before["masknet.balanced_accuracy"] == pytest.approx(rows[0]["balanced_accuracy"])
    assert ev.evaluate(data, models, progress=False)["masknet.balanced_accuracy"] == pytest.approx(rows[0]["whole"])
    decide.record_class_bias(models, offset)
    manifest = load_manifest(models, verify=True)  # the model files are untouched
    assert manifest.models["masknet"].class_bias == ({MASK_INCORRECT: offset} if offset else {})
    after = ev.evaluate(data, models, origin="real", progress=False)
    assert after["masknet.balanced_accuracy"] == pytest.approx(next(r for r in rows if r["offset"] == offset)["balanced_accuracy"])
    # choosing again starts from the plain model, not from the shift just written
    assert decide.choose(models, data, progress=False)[0] == offset


def test_photos_without_an_index_are_one_clear_error(tmp_path: Path, pytestconfig) -> None:
    models = _copy_models(tmp_path, pytestconfig)
    data = _real_folder(tmp_path / "val")
    (data / "index.csv").unlink()
    with pytest.raises(MasknetError, match="no index.csv here or in the folder above"):
        decide.choose(models, data, progress=False)
    before = (models / "manifest.json").read_bytes()
    proc = masknet("decide", str(data), "--models", str(models), "--write", cwd=tmp_path)
    assert_clean_failure(proc, 2, str(data), "index.csv")
    assert (models / "manifest.json").read_bytes() == before
