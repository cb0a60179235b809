"""`masknet doctor` on good, missing and corrupted model folders, run as the user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.crop import CropSpec
from edge.manifest import write_manifest
from edge.paths import DETECTOR_MODEL, LANDMARK_MODEL, models_dir

REPO = Path(__file__).resolve().parent.parent


def doctor(*args: str, models: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if models is not None:
        env["MASKNET_MODELS"] = str(models)
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "doctor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """The third-party models as install.sh leaves them, in a folder the test may damage."""
    source = models_dir()
    for name in (DETECTOR_MODEL, LANDMARK_MODEL):
        assert (source / name).is_file(), f"{source / name} is missing: run ./install.sh first"
    folder = tmp_path / "models"
    folder.mkdir()
    for name in (DETECTOR_MODEL, LANDMARK_MODEL, "THIRD_PARTY.sha256"):
        shutil.copy2(source / name, folder / name)
    return folder


def test_healthy_setup_without_trained_models_passes(models_copy: Path) -> None:
    result = doctor(models=models_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "runtime" in out and any(
        rt in out for rt in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
    )
    assert f"{DETECTOR_MODEL}: sha256" in out and f"{LANDMARK_MODEL}: sha256" in out
    assert f"{DETECTOR_MODEL}: loads and runs" in out
    assert "missing  trained models" in out  # reported, but not an error
    assert "opencv" in out and "picamera2" in out
    assert "gpio" in out and "Factory" in out
    assert "all checks passed" in out


def test_truncated_detector_is_named_with_its_sha256_mismatch(models_copy: Path) -> None:
    detector = models_copy / DETECTOR_MODEL
    detector.write_bytes(detector.read_bytes()[:1000])
    result = doctor(models=models_copy)
    assert result.returncode != 0
    failure = next(line for line in result.stdout.splitlines() if "FAIL" in line)
    assert str(detector) in failure and "sha256 mismatch" in failure
    assert "./install.sh" in failure
    assert "Traceback" not in result.stdout + result.stderr
    assert "1 problem(s) found" in result.stderr


def test_missing_model_and_missing_checksum_list_are_failures(models_copy: Path) -> None:
    (models_copy / LANDMARK_MODEL).unlink()
    result = doctor(models=models_copy)
    assert result.returncode != 0
    assert f"{models_copy / LANDMARK_MODEL}: not found; run ./install.sh" in result.stdout

    (models_copy / "THIRD_PARTY.sha256").unlink()
    result = doctor("--models", str(models_copy))
    assert result.returncode != 0
    assert "THIRD_PARTY.sha256: cannot read the model checksum list" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def _with_trained_models(folder: Path) -> tuple[Path, Path]:
    # The doctor checks bytes against the manifest, never loads the classifiers, so any file
    # stands in for the trained models here.
    masknet = folder / "masknet_int8.tflite"
    imasknet = folder / "imasknet_int8.tflite"
    masknet.write_bytes(b"masknet weights" * 100)
    imasknet.write_bytes(b"imasknet weights" * 100)

    def entry(file: str, task: str, classes: list[str]) -> dict[str, object]:
        return {
            "file": file,
            "sha256": "0" * 64,
            "task": task,
            "classes": classes,
            "input": {"size": 224, "dtype": "uint8", "scale": 1.0, "zero_point": 0},
            "output": {"dtype": "uint8", "scale": 1 / 256, "zero_point": 0},
        }

    write_manifest(
        folder,
        "cascade",
        {
            "masknet": entry(masknet.name, "masknet", ["mask", "mask_incorrect", "no_mask"]),
            "imasknet": entry(
                imasknet.name,
                "imasknet",
                ["mask_over_chin", "mask_over_mouth_chin", "mask_over_nose_mouth"],
            ),
        },
        CropSpec(224, 0.3, False),
    )
    return masknet, imasknet


def test_trained_models_are_checked_against_the_manifest(models_copy: Path) -> None:
    masknet, imasknet = _with_trained_models(models_copy)
    result = doctor(models=models_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "masknet_int8.tflite: masknet, 224x224 uint8, sha256" in result.stdout
    assert "imasknet_int8.tflite: imasknet" in result.stdout
    assert "face crop: size 224, margin 0.3, align false" in result.stdout
    assert "missing  trained models" not in result.stdout

    imasknet.write_bytes(b"swapped")
    result = doctor(models=models_copy)
    assert result.returncode != 0
    assert f"{imasknet}: sha256" in result.stdout and "does not match the manifest" in result.stdout
