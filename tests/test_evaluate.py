"""`masknet evaluate`: scoring levels, counts, JSON keys and the confusion PNG."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert import evaluate as ev
from convert.metrics import classification_report
from edge.classes import MASKNET_CLASSES, SUBTYPES
from edge.crop import CropSpec
from edge.errors import MasknetError
from edge.manifest import ModelSpec, write_manifest


def _folder(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / cls / f"{cls}_{i}.jpg"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    return root


class _ByName:
    """A stand-in classifier that answers what the file name's `answers` entry says."""

    takes_features = False

    def __init__(self, spec: ModelSpec, answers: dict[str, str]) -> None:
        self.spec = spec
        self.answers = answers

    def __call__(self, x: np.ndarray) -> tuple[str, float, None]:
        return self.answers[_CURRENT["name"]], 1.0, None


_CURRENT: dict[str, str] = {}


@pytest.fixture()
def fake_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A manifest whose 'models' answer per image from a table, so scoring can be checked exactly."""
    models = tmp_path / "models"
    models.mkdir()
    specs = {}
    for task, classes in (("masknet", MASKNET_CLASSES), ("imasknet", SUBTYPES)):
        (models / f"{task}_int8.tflite").write_bytes(task.encode())
        specs[task] = ModelSpec(name=task, path=models / f"{task}_int8.tflite", sha256="", task=task,
                                classes=classes, input_size=32)
    write_manifest(models, "cascade", specs, CropSpec())
    tables: dict[str, dict[str, str]] = {"masknet": {}, "imasknet": {}}
    monkeypatch.setattr(ev, "Classifier", lambda spec, n, path: _ByName(spec, tables[spec.task]))
    real_read = ev.load_rgb

    def read(path: Path):
        _CURRENT["name"] = path.name
        return real_read(path)

    monkeypatch.setattr(ev, "load_rgb", read)
    return models, tables


def test_cascade_scores_subtypes_only_when_both_stages_are_right(tmp_path: Path, fake_models) -> None:
    models, tables = fake_models
    data = _folder(tmp_path / "faces", {"mask": 2, "no_mask": 1, "mask_incorrect": 1, "mask_over_chin": 2})
    tables["masknet"].update({
        "mask_0.jpg": "mask", "mask_1.jpg": "no_mask",          # one Mask-net error
        "no_mask_0.jpg": "no_mask",
        "mask_incorrect_0.jpg": "mask_incorrect",
        "mask_over_chin_0.jpg": "mask_incorrect",               # cascade right
        "mask_over_chin_1.jpg": "mask_incorrect",               # Mask-net right, I-Mask-net wrong
    })
    tables["imasknet"].update({name: "mask_over_chin" for name in tables["masknet"]})
    tables["imasknet"]["mask_over_chin_1.jpg"] = "mask_over_nose_mouth"

    r = ev.evaluate(data, models, progress=False)
    assert r["n"] == 6
    assert r["counts"] == {"mask": 2, "mask_incorrect": 1, "mask_over_chin": 2, "no_mask": 1}
    assert r["masknet.n"] == 6 and r["masknet.accuracy"] == pytest.approx(5 / 6)
    assert r["masknet.confusion"][0] == [1, 0, 1]  # mask row: one right, one called no_mask
    assert r["imasknet.n"] == 2 and r["imasknet.accuracy"] == pytest.approx(0.5)
    # cascade: every image with a 5-class label (not the sub-type-less mask_incorrect photo)
    assert r["cascade.n"] == 5
    assert r["cascade.accuracy"] == pytest.approx(3 / 5)
    assert r["cascade.per_class"]["mask_over_chin"]["recall"] == pytest.approx(0.5)
    assert r["cascade.per_class"]["mask"]["support"] == 2
    # per image, by path in the folder: what the export gate pairs two sets of models on
    assert r["masknet.answers"]["mask/mask_1.jpg"] == "no_mask" and len(r["masknet.answers"]) == 6


def test_the_gate_pairs_the_photos_and_wants_a_win_beyond_the_noise() -> None:
    from convert.export import gate_share_ahead
    from convert.metrics import share_ahead

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 600)
    right = np.where(rng.random(600) < 0.95, y, (y + 1) % 3)  # 95 % right
    worse = np.where(rng.random(600) < 0.85, y, (y + 1) % 3)  # 85 % right
    one_more = right.copy()
    one_more[np.flatnonzero(right != y)[0]] = y[np.flatnonzero(right != y)[0]]  # one more face right
    assert share_ahead(y, right, worse) > 0.99 and share_ahead(y, worse, right) < 0.01
    assert share_ahead(y, right, right) == 0.5  # the same answers: a coin flip, never a win
    assert 0.5 < share_ahead(y, one_more, right) < 0.9  # one face is not a win the gate takes
    assert share_ahead(y, right, worse) == share_ahead(y, right, worse)  # seeded
    # the gate reads the evaluations' per-image answers, paired by image
    names = [f"{MASKNET_CLASSES[c]}/{i:03d}.jpg" for i, c in enumerate(y)]
    new = {"masknet.answers": {n: MASKNET_CLASSES[p] for n, p in zip(names, right, strict=True)}}
    old = {"masknet.answers": {n: MASKNET_CLASSES[p] for n, p in zip(names, worse, strict=True)}}
    assert gate_share_ahead(new, old) == pytest.approx(share_ahead(y, right, worse))
    assert gate_share_ahead(new, {"masknet.balanced_accuracy": 0.9}) is None  # an older evaluation


def test_cli_writes_flat_json_and_png(tmp_path: Path, fake_models, capsys) -> None:
    import argparse

    models, tables = fake_models
    data = _folder(tmp_path / "faces", {"mask": 1, "mask_over_mouth_chin": 1})
    tables["masknet"].update({"mask_0.jpg": "mask", "mask_over_mouth_chin_0.jpg": "mask_incorrect"})
    tables["imasknet"].update({"mask_0.jpg": "mask_over_chin", "mask_over_mouth_chin_0.jpg": "mask_over_mouth_chin"})
    parser = argparse.ArgumentParser()
    ev.add_arguments(parser)
    out_json, out_png = tmp_path / "r.json", tmp_path / "cm.png"
    args = parser.parse_args([str(data), "--models", str(models), "--json", str(out_json), "--confusion-png", str(out_png)])
    assert ev.run(args) == 0
    printed = capsys.readouterr().out
    assert "Mask-net" in printed and "balanced accuracy" in printed
    result = json.loads(out_json.read_text())
    for level in ("masknet", "imasknet", "cascade"):
        for key in ("accuracy", "balanced_accuracy", "per_class", "confusion"):
            assert f"{level}.{key}" in result
    assert result["n"] == 2 and result["cascade.accuracy"] == 1.0
    png = cv2.imread(str(out_png))
    assert png is not None and png.shape[1] > png.shape[0]


def _with_index(data: Path, bases: dict[str, str]) -> Path:
    """index.csv for the images of ``data``: file name -> the photo it was made from."""
    lines = ["path,split,label,origin,source,group,base"]
    for img in sorted(data.glob("*/*.jpg")):
        lines.append(f"{img.parent.name}/{img.name},val,{img.parent.name},real,real,g,{bases[img.name]}")
    (data / "index.csv").write_text("\n".join(lines) + "\n")
    return data


def test_exclude_leaves_out_every_image_made_from_a_listed_photo(tmp_path: Path, fake_models, capsys) -> None:
    import argparse

    models, tables = fake_models
    data = _with_index(_folder(tmp_path / "faces", {"mask": 2, "no_mask": 2}), {
        "mask_0.jpg": "real/mask/a.jpg#0", "mask_1.jpg": "real/mask/b.jpg#0",
        "no_mask_0.jpg": "real/no_mask/c.jpg#0", "no_mask_1.jpg": "real/no_mask/c.jpg#1",
    })
    tables["masknet"].update({"mask_0.jpg": "no_mask", "mask_1.jpg": "mask", "no_mask_0.jpg": "no_mask", "no_mask_1.jpg": "mask"})
    tables["imasknet"].update({name: "mask_over_chin" for name in tables["masknet"]})
    seen = tmp_path / "seen.csv"
    seen.write_text("base\nreal/mask/a.jpg#0\nreal/no_mask/c.jpg#1\nreal/elsewhere.jpg#0\n")
    r = ev.evaluate(data, models, progress=False, exclude=ev.read_photo_list(seen))
    # the two photos the models "trained on" (and both were the wrong answers) are left out
    assert r["n"] == 2 and r["masknet.accuracy"] == 1.0 and r["excluded_photos"] == 3
    assert ev.evaluate(data, models, progress=False)["masknet.accuracy"] == 0.5
    parser = argparse.ArgumentParser()
    ev.add_arguments(parser)
    out = tmp_path / "r.json"
    assert ev.run(parser.parse_args([str(data), "--models", str(models), "--exclude", str(seen), "--json", str(out)])) == 0
    assert json.loads(out.read_text())["n"] == 2
    # a CSV with a split column (split pins, an index.csv): only its train rows were trained on
    pins = tmp_path / "pins.csv"
    pins.write_text("base,split\nreal/mask/a.jpg#0,train\nreal/no_mask/c.jpg#1,test\n")
    assert ev.read_photo_list(pins) == {"real/mask/a.jpg#0"}


@pytest.mark.parametrize(("text", "message"), [
    (None, "seen.csv: cannot read the photo list"),
    ("file\nreal/mask/a.jpg#0\n", "seen.csv: expected a CSV with a 'base' column"),
])
def test_a_bad_photo_list_is_one_clear_error(tmp_path: Path, text: str | None, message: str) -> None:
    seen = tmp_path / "seen.csv"
    if text is not None:
        seen.write_text(text)
    with pytest.raises(MasknetError, match=message):
        ev.read_photo_list(seen)


def test_unknown_class_folder_is_refused(tmp_path: Path, fake_models) -> None:
    models, _ = fake_models
    data = _folder(tmp_path / "faces", {"mask": 1})
    (data / "masked").mkdir()
    with pytest.raises(MasknetError, match="masked: unknown class folder"):
        ev.evaluate(data, models, progress=False)


def test_report_metrics_by_hand() -> None:
    y_true = np.array([0, 0, 0, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 0])
    rep = classification_report(y_true, y_pred, 3, ["a", "b", "c"])
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert rep["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert rep["per_class"]["b"]["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert rep["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 0, 1]]


@pytest.mark.convert
@pytest.mark.slow
def test_evaluate_runs_tiny_litert_models(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from convert.tiny import build_tiny_models

    build_tiny_models(tmp_path / "models", input_size=32)
    data = _folder(tmp_path / "faces", {"mask": 3, "no_mask": 2, "mask_over_nose_mouth": 4})
    r = ev.evaluate(data, tmp_path / "models", progress=False)
    assert r["n"] == 9
    assert r["masknet.n"] == 9 and r["imasknet.n"] == 4 and r["cascade.n"] == 9
    assert sum(map(sum, r["masknet.confusion"])) == 9
    assert sum(map(sum, r["cascade.confusion"])) == 9


def test_evaluate_never_imports_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, convert.evaluate, edge.manifest; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
