"""`masknet bench`: it runs anywhere, measures every stage and writes every field.

Never asserts that anything is fast: timings depend on the machine and its load. What is checked
is what was measured (which stages ran how often) and that the report is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.commands.bench.measure import STAT_FIELDS, stats
from edge.commands.bench.scene import Scene, face_layout, face_patch
from edge.paths import models_dir
from edge.timing import STAGES

HEADER_KEYS = ("cpu", "cores", "runtime", "runtime_version", "threads", "models")


@pytest.fixture(scope="session")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed models when they are there, else tiny random ones with the same interface."""
    if (models_dir() / "manifest.json").is_file():
        return models_dir()
    pytest.importorskip(
        "tensorflow", reason="no committed models and no TensorFlow to build tiny ones"
    )
    from convert.tiny import build_tiny_models

    out = tmp_path_factory.mktemp("tiny-models")
    build_tiny_models(out, input_size=32)
    return out


def bench(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, models: Path, *args: str
) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    rc = main(["bench", "--models", str(models), "--no-progress", "--json", str(out), *args])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    return json.loads(out.read_text()), printed


def assert_block(block: dict, frames: int) -> None:
    assert set(STAGES) <= set(block["stages"])
    for name in STAGES:
        assert tuple(block["stages"][name]) == STAT_FIELDS, name
    assert set(STAT_FIELDS) | {"fps"} <= set(block["frame"])
    assert block["frame"]["count"] == frames
    assert block["frame"]["fps"] == pytest.approx(1000.0 / block["frame"]["mean_ms"])
    f = block["frame"]
    assert 0 < f["p50_ms"] <= f["p95_ms"] <= f["p99_ms"] <= f["max_ms"]


def test_default_run_writes_every_field_and_runs_imasknet_on_every_face(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    result, printed = bench(capsys, tmp_path, bench_models, "--frames", "12", "--warmup", "3")
    header = result["header"]
    for key in HEADER_KEYS:
        assert header[key] not in (None, "", []), key
    roles = {m["role"] for m in header["models"]}
    assert {"detector", "masknet", "imasknet"} <= roles
    assert all(len(m["sha256"]) == 64 for m in header["models"])
    assert result["faces"] == 1 and result["frames"] == 12
    assert result["rss_peak_mb"] > 10
    assert_block(result, 12)

    stages = result["stages"]
    assert result["faces_detected_mean"] == 1.0, "the pasted astronaut must be found on every frame"
    for name in ("detector_preprocess", "detector_invoke", "decode_nms"):
        assert stages[name]["count"] == 12, name
    detector_ms = sum(
        result["per_frame_ms"][n] for n in ("detector_preprocess", "detector_invoke", "decode_nms")
    )
    assert detector_ms < result["frame"]["mean_ms"]
    # the worst case: Mask-net's answer is overridden so I-Mask-net runs on every face
    assert stages["masknet_invoke"]["count"] == stages["imasknet_invoke"]["count"] == 12
    assert stages["crop"]["count"] == 12 and stages["tracking"]["count"] == 12
    assert stages["indicator"]["count"] == 12
    assert stages["capture"]["count"] == 0 and stages["capture"]["mean_ms"] is None  # no camera
    assert result["ratios"]["overhead"] > 1.0  # the frame contains the invokes

    assert "frame (end to end)" in printed and "masknet_invoke" in printed
    assert "I-Mask-net on every face" in printed


def test_markdown_tables_for_an_issue(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    _, printed = bench(
        capsys, tmp_path, bench_models, "--frames", "4", "--warmup", "1", "--markdown"
    )
    assert "| stage | mean ms | p50 ms | p95 ms | p99 ms | max ms | count | ms/frame |" in printed
    assert "| frame (end to end) |" in printed
    assert "- runtime: " in printed


def test_real_cascade_runs_imasknet_only_when_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    result, _ = bench(
        capsys, tmp_path, bench_models, "--frames", "6", "--warmup", "1", "--real-cascade"
    )
    stages = result["stages"]
    assert stages["masknet_invoke"]["count"] == 6
    assert stages["imasknet_invoke"]["count"] <= 6
    assert "only when Mask-net says mask_incorrect" in result["header"]["cascade"]


def test_faces_and_threads_lists_compare_every_combination(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    result, printed = bench(
        capsys,
        tmp_path,
        bench_models,
        "--frames",
        "5",
        "--warmup",
        "1",
        "--faces",
        "1,3",
        "--threads",
        "1,2",
    )
    combos = {(r["threads"], r["faces"]) for r in result["runs"]}
    assert combos == {(1, 1), (1, 3), (2, 1), (2, 3)}
    for r in result["runs"]:
        assert_block(r, 5)
        assert r["faces_detected_mean"] == r["faces"]
        assert r["stages"]["masknet_invoke"]["count"] == 5 * r["faces"]
    assert result["header"]["threads"] == 1 and result["faces"] == 1
    assert set(result["ratios"]["frame_vs_one_face"]) == {"3"}
    assert "frame time with 3 faces / with 1 face" in printed
    assert "each face adds" in printed


def test_cost_split_is_the_line_through_one_and_most_faces() -> None:
    from edge.commands.bench.report import ratios

    def run(faces: int, frame_ms: float) -> dict:
        return {"variant": "int8", "threads": 2, "input_size": 224, "faces": faces,
                "overhead_ratio": 1.1, "frame": {"mean_ms": frame_ms}}

    r = ratios([run(1, 2.0), run(2, 3.4), run(4, 6.2)])
    assert r["frame_vs_one_face"] == {"2": pytest.approx(1.7), "4": pytest.approx(3.1)}
    # (6.2 - 2.0) / 3 = 1.4 ms per face; 2.0 - 1.4 = 0.6 ms per frame
    assert r["cost_split_ms"] == {"per_face": pytest.approx(1.4), "per_frame": pytest.approx(0.6)}
    assert "cost_split_ms" not in ratios([run(1, 2.0)])


def test_repeat_runs_every_combination_each_round_and_reports_the_spread(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    result, printed = bench(
        capsys, tmp_path, bench_models, "--frames", "4", "--warmup", "1", "--faces", "1,2", "--repeat", "3"
    )
    assert len(result["rounds"]) == 3
    # the tables and the top-level ratios are round 1's
    assert result["rounds"][0] == result["ratios"]
    growth = [r["frame_vs_one_face"]["2"] for r in result["rounds"]]
    sp = result["ratios_spread"]["frame_vs_one_face.2"]
    assert sp["min"] == min(growth) and sp["max"] == max(growth)
    assert sp["median"] == pytest.approx(sorted(growth)[1])
    assert set(result["ratios_spread"]) >= {"overhead", "cost_split_ms.per_face", "cost_split_ms.per_frame"}
    assert "3 rounds" in printed and "2 faces / 1 face: median" in printed


@pytest.mark.parametrize(
    "option, message",
    [("--repeat", "--repeat must be at least 1, got 0"), ("--frames", "--frames must be at least 1, got 0")],
)
def test_counts_below_one_are_refused_by_name(
    capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    assert main(["bench", option, "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"masknet bench: error: {message}"]


def test_spread_of_known_rounds() -> None:
    from edge.commands.bench.report import spread

    rounds = [
        {"overhead": 1.2, "frame_vs_one_face": {"4": 3.1}},
        {"overhead": 1.3, "frame_vs_one_face": {"4": 2.9}},
        {"overhead": 1.1, "frame_vs_one_face": {"4": 3.0}, "int8_vs_float_masknet_invoke": 0.5},
    ]
    sp = spread(rounds)
    assert sp["overhead"] == {"min": 1.1, "median": pytest.approx(1.2), "max": 1.3}
    assert sp["frame_vs_one_face.4"] == {"min": 2.9, "median": pytest.approx(3.0), "max": 3.1}
    assert "int8_vs_float_masknet_invoke" not in sp  # only what every round measured


def test_a_folder_source_times_capture(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    import cv2

    from edge.detector import create_detector

    folder = tmp_path / "frames"
    folder.mkdir()
    scene = Scene(face_patch(create_detector("blazeface_short")), 1, (640, 480), None, seed=1)
    for i, (image, _) in zip(range(3), scene.frames(), strict=False):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    # 3 images, 7 frames: a folder source loops
    result, _ = bench(
        capsys, tmp_path, bench_models, "--source", str(folder), "--frames", "7", "--warmup", "1"
    )
    assert result["stages"]["capture"]["count"] == 7
    assert result["faces"] is None and f"--source {folder}" in result["header"]["input"]
    assert_block(result, 7)


@pytest.mark.convert
def test_compare_float_adds_a_float_block(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    from convert.tiny import build_tiny_models

    models = tmp_path / "models"
    build_tiny_models(models, input_size=32, float_twins=True)

    result, printed = bench(
        capsys, tmp_path, models, "--frames", "5", "--warmup", "1", "--compare-float"
    )
    assert_block(result["float"], 5)
    assert {m["file"] for m in result["float"]["models"]} >= {
        "masknet_float.tflite",
        "imasknet_float.tflite",
    }
    assert result["ratios"]["int8_vs_float_masknet_invoke"] > 0
    assert "int8 / float Mask-net invoke" in printed


def test_missing_float_exports_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    rc = main(
        [
            "bench",
            "--models",
            str(bench_models),
            "--compare-float",
            "--float-models",
            str(tmp_path),
            "--frames",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "masknet_float.tflite" in err and str(tmp_path) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("k", range(1, 10))
def test_face_layout_fits_the_frame_without_overlap(k: int) -> None:
    side, corners = face_layout(k, 1280, 720)
    assert len(corners) == k and side > 100
    for x, y in corners:
        assert 0 <= x <= 1280 - side and 0 <= y <= 720 - side
    for i, (x0, y0) in enumerate(corners):
        for x1, y1 in corners[i + 1 :]:
            assert abs(x0 - x1) >= side or abs(y0 - y1) >= side


def test_stats_of_known_samples() -> None:
    s = stats(np.arange(1, 101, dtype=np.float64))
    assert s["count"] == 100 and s["mean_ms"] == 50.5 and s["max_ms"] == 100
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    empty = stats([], 0)
    assert empty["count"] == 0 and all(empty[k] is None for k in STAT_FIELDS[:-1])


def test_json_to_stdout_is_pure_json(
    capsys: pytest.CaptureFixture[str], bench_models: Path
) -> None:
    rc = main(
        [
            "bench",
            "--models",
            str(bench_models),
            "--no-progress",
            "--frames",
            "3",
            "--warmup",
            "0",
            "--json",
            "-",
        ]
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 3 and result["stages"]["masknet_invoke"]["count"] == 3


def test_float_twins_are_found_by_the_shipped_sha256(tmp_path: Path, bench_models: Path) -> None:
    import shutil

    from edge.commands.bench.measure import float_search_dirs
    from edge.manifest import load_manifest

    manifest = load_manifest(bench_models)
    first = manifest.classifier_models[0]
    # quantize writes the float twin next to the int8 file, wherever the run folder is
    for run, data in (("old", b"an older export"), ("final", first.path.read_bytes())):
        folder = tmp_path / run / first.task
        folder.mkdir(parents=True)
        (folder / first.path.name).write_bytes(data)
    dirs = float_search_dirs(manifest, tmp_path)
    assert dirs[0] == tmp_path / "final" / first.task
    assert tmp_path / "old" / first.task not in dirs
    assert manifest.path.parent in dirs
    shutil.rmtree(tmp_path / "final")
    assert float_search_dirs(manifest, tmp_path)[0] == manifest.path.parent


def test_two_exports_are_compared_side_by_side(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bench_models: Path
) -> None:
    import shutil

    other = tmp_path / "other-export"
    shutil.copytree(bench_models, other, ignore=shutil.ignore_patterns("*.md", "face_*"))
    result, printed = bench(
        capsys, tmp_path, bench_models, "--models", str(other), "--frames", "3", "--warmup", "1"
    )
    assert len(result["runs"]) == 2
    sizes = {r["input_size"] for r in result["runs"]}
    assert sizes == {result["runs"][0]["input_size"]}
    assert "frame/invokes" in printed  # the comparison table
