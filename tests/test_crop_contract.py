"""The crop is a contract: a data set built with a non-default crop, trained, quantized and
exported, is cut the same way by the door (`masknet run`), `masknet evaluate --detect` and
`masknet bench`, pixel for pixel, because the crop travels dataset.json -> summary.json ->
manifest.json and every consumer cuts with the manifest's CropSpec."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import astronaut, need_detector, write_config, write_images
from test_models_pipeline import _config

from edge.classes import ALL_CLASSES, NO_MASK
from edge.crop import CropSpec

pytestmark = [pytest.mark.convert, pytest.mark.slow]

# neither the size nor the margin is the default: a consumer falling back to 224 / 0.25 shows
BUILD_CROP = CropSpec(size=112, margin=0.4, align=False)


def _test_face() -> np.ndarray:
    """The astronaut's head and shoulders: found by BlazeFace short-range as a frame and in
    evaluate's padded copy alike."""
    return np.ascontiguousarray(astronaut()[0:288, 80:368])




def _photos(folder: Path, per_class: int = 8) -> None:
    """Small face-less photos per class (used whole: tight_fallback), distinct enough in their
    low frequencies that no two merge as near-duplicates, and the astronaut (a real face)."""
    rng = np.random.default_rng(0)
    for c in ALL_CLASSES:
        images = [
            cv2.resize(rng.integers(0, 256, (4, 4, 3)).astype(np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
            for _ in range(per_class)
        ]
        write_images(folder / c, images, prefix=c)
    write_images(folder / NO_MASK, [astronaut()], prefix="astronaut")


class CutSpy:
    """Records every CropSpec.cut: the spec, the face it was given and the crop it made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[CropSpec, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]] = []
        self.original = CropSpec.cut
        spy = self

        def cut(self: CropSpec, image, box, keypoints=None):  # noqa: ANN001 - the method's own signature
            out = spy.original(self, image, box, keypoints)
            spy.calls.append((self, image.copy(), np.asarray(box).copy(), None if keypoints is None else np.asarray(keypoints).copy(), out))
            return out

        monkeypatch.setattr(CropSpec, "cut", cut)

    def take(self) -> list[tuple[CropSpec, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("tensorflow")
    need_detector()
    from convert.dataset.build import Builder
    from convert.dataset.recipe import parse_recipe
    from convert.model import load_config
    from convert.quantize import quantize_run
    from convert.train import train
    from edge.cli import main

    root = tmp_path_factory.mktemp("crop_contract")
    _photos(root / "photos")
    recipe = parse_recipe({
        "seed": 1,
        "crop": BUILD_CROP.to_json(),
        "split": {"fractions": [0.5, 0.25, 0.25]},
        "source": [{"name": "people", "path": str(root / "photos"), "faces": "dominant", "tight_fallback": 100}],
    })
    data = root / "data"
    builder = Builder(recipe, data, progress=False)
    builder.run()
    with open(data / "index.csv", newline="", encoding="utf-8") as f:
        train_rows = [r["path"] for r in csv.DictReader(f) if r["split"] == "train"]
    (data / "calibration.txt").write_text("\n".join(train_rows) + "\n")
    runs = root / "runs"
    for task in ("masknet", "imasknet"):
        # the pipeline test's tiny backbone; one epoch is enough to have something to export
        cfg = load_config(_config(root, task), {"train.epochs": 1, "augment.views": 1})
        train(cfg, data, runs / task, runs / "cache", log=lambda _msg: None)
        quantize_run(runs / task, data, data / "calibration.txt", log=lambda _msg: None)
    models = root / "models"
    assert main(["export", "--runs", str(runs), "--data", str(data), "--out", str(models),
                 "--threads", "1", "--latency-runs", "2"]) == 0
    return {"root": root, "data": data, "runs": runs, "models": models, "builder": builder}  # type: ignore[dict-item]


def test_the_crop_travels_from_the_build_into_the_manifest(exported) -> None:
    from edge.manifest import load_manifest

    assert exported["builder"].crop == BUILD_CROP
    recorded = json.loads((exported["data"] / "dataset.json").read_text())["crop"]
    assert CropSpec.from_json(recorded) == BUILD_CROP
    for task in ("masknet", "imasknet"):
        summary = json.loads((exported["runs"] / task / "summary.json").read_text())
        assert CropSpec.from_json(summary["crop"]) == BUILD_CROP
    manifest = load_manifest(exported["models"])
    assert manifest.version == 3 and manifest.crop == BUILD_CROP


def _assert_cut_as_built(spy: CutSpy, builder) -> None:
    """Every crop the command cut is the build's crop of the same face, pixel for pixel, and the
    test face (the astronaut) was among them."""
    calls = spy.take()
    assert calls, "the command cut no face through CropSpec.cut"
    faces = 0
    for spec, image, box, keypoints, out in calls:
        assert spec == builder.crop
        # the reference cuts go around the spy
        as_built = spy.original(builder.crop, image, box, keypoints)
        np.testing.assert_array_equal(out, as_built)
        assert out.shape == (BUILD_CROP.size, BUILD_CROP.size, 3)
        default = spy.original(CropSpec(), image, box, keypoints)
        assert default.shape != out.shape or not np.array_equal(default, out)
        faces += image.shape[:2] == (288, 288)
    assert faces, "the test face was not cut"


def test_door_evaluate_and_bench_cut_the_crop_the_data_set_was_built_with(
    exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.cli import main

    models, builder = str(exported["models"]), exported["builder"]
    # `masknet run` in this process points the "edge" logger at stderr: undone afterwards
    edge_log = logging.getLogger("edge")
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(edge_log, attr, list(edge_log.handlers) if attr == "handlers" else getattr(edge_log, attr))
    spy = CutSpy(monkeypatch)
    frames = tmp_path / "frames"
    write_images(frames, [_test_face()])
    config = write_config(tmp_path / "config.toml", "[tracker]\nmin_score = 0.0\ncommit_score = 0.0\n")
    assert main(["run", "--config", str(config), "--models", models, "--source", str(frames),
                 "--max-frames", "1", "--pins", "mock", "--events", str(tmp_path / "events.jsonl")]) == 0
    _assert_cut_as_built(spy, builder)

    faces = tmp_path / "faces"
    write_images(faces / NO_MASK, [_test_face()])
    assert main(["evaluate", str(faces), "--models", models, "--detect"]) == 0
    _assert_cut_as_built(spy, builder)

    assert main(["bench", "--config", str(config), "--models", models, "--source", str(frames),
                 "--frames", "2", "--warmup", "0", "--no-progress"]) == 0
    _assert_cut_as_built(spy, builder)
    capsys.readouterr()


def test_the_data_set_holds_the_build_cut_of_the_test_face(exported) -> None:
    """The files training read are that cut: the astronaut's crop on disk is the build's
    CropSpec applied to the face the build found (JPEG quality 95 aside)."""
    from convert.dataset.faces import choose_faces
    from convert.files import load_rgb

    builder = exported["builder"]
    with open(exported["data"] / "index.csv", newline="", encoding="utf-8") as f:
        (row,) = [r for r in csv.DictReader(f) if "astronaut" in r["base"]]
    on_disk = load_rgb(exported["data"] / row["path"])
    image = astronaut()
    (found,) = choose_faces(image, builder.detector, builder.recipe.sources[0], builder.recipe.pad, Counter(), builder.crop.margin)
    cut = builder.crop.cut(image, found.face.box, found.face.keypoints)
    assert on_disk.shape == cut.shape == (BUILD_CROP.size, BUILD_CROP.size, 3)
    assert np.abs(on_disk.astype(int) - cut.astype(int)).mean() < 3.0
