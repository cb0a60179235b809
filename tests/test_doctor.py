"""`masknet doctor` on good, missing and corrupted model folders, run as the user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_clean_failure, classifier_models, masknet

from edge.config import load_config
from edge.detector import DETECTORS
from edge.manifest import load_manifest, write_manifest
from edge.paths import DETECTOR_MODEL, LANDMARK_MODEL, models_dir, third_party_hashes

# the detector file the default config runs (`masknet run` and `masknet doctor` alike)
RUN_DETECTOR = DETECTORS[load_config().detector.name].spec.model_file
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
def models_copy(tmp_path: Path, pytestconfig: pytest.Config) -> Path:
    """A complete models folder as install.sh and `masknet export` leave it (third-party files and
    the trained classifiers with their manifest), in a folder the test may damage."""
    source = models_dir()
    names = sorted(third_party_hashes())  # every model install.sh fetches
    assert {DETECTOR_MODEL, LANDMARK_MODEL} <= set(names)
    for name in names:
        assert (source / name).is_file(), f"{source / name} is missing: run ./install.sh first"
    folder = tmp_path / "models"
    folder.mkdir()
    for name in [*names, "THIRD_PARTY.sha256"]:
        shutil.copy2(source / name, folder / name)
    trained = classifier_models(pytestconfig.cache)
    manifest = json.loads((trained / "manifest.json").read_text())
    for entry in manifest["models"].values():
        shutil.copy2(trained / entry["file"], folder / entry["file"])
    shutil.copy2(trained / "manifest.json", folder / "manifest.json")
    return folder


def _failures(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if " FAIL " in line]


def test_healthy_setup_passes_and_builds_what_run_builds(models_copy: Path) -> None:
    result = doctor(models=models_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "runtime" in out and any(
        rt in out for rt in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
    )
    assert f"{DETECTOR_MODEL}: sha256" in out and f"{LANDMARK_MODEL}: sha256" in out
    assert f"{DETECTOR_MODEL}: loads and runs" in out
    assert f"detector {models_copy / RUN_DETECTOR} (the file `masknet run` uses" in out
    assert "pipeline builds as `masknet run` builds it" in out
    assert "face crop: size" in out  # the crop the manifest records
    assert "opencv" in out and "picamera2" in out
    assert "gpio" in out and "Factory" in out
    assert "all checks passed" in out
    # the runtime's own messages ("Created TensorFlow Lite XNNPACK delegate") stay out
    assert "INFO:" not in result.stderr


def test_the_prior_shift_is_shown_where_the_manifest_has_one(models_copy: Path) -> None:
    from convert.decide import record_class_bias

    record_class_bias(models_copy, 0.3)
    result = doctor(models=models_copy)
    assert result.returncode == 0, result.stdout
    line = next(x for x in result.stdout.splitlines() if "masknet_int8.tflite: masknet" in x)
    assert line.endswith("; prior shift mask_incorrect +0.30")
    record_class_bias(models_copy, 0.0)
    assert "prior shift" not in doctor(models=models_copy).stdout


def test_missing_manifest_fails_like_run(models_copy: Path) -> None:
    (models_copy / "manifest.json").unlink()
    result = doctor(models=models_copy)
    assert result.returncode == 1
    (failure,) = _failures(result)
    assert f"{models_copy / 'manifest.json'} not found" in failure
    assert "1 problem(s) found" in result.stderr


def test_classifier_that_does_not_load_fails_naming_it(models_copy: Path) -> None:
    manifest = load_manifest(models_copy, verify=False)
    model = manifest.models["imasknet"].path
    model.write_bytes(model.read_bytes()[:2000])
    write_manifest(models_copy, manifest.classifiers, manifest.models, manifest.crop)  # its sha256 matches again
    result = doctor(models=models_copy)
    assert result.returncode == 1, result.stdout
    (failure,) = _failures(result)
    assert str(model) in failure and "not a valid TFLite model" in failure
    assert "Traceback" not in result.stdout + result.stderr


def test_classifier_whose_input_shape_disagrees_with_the_manifest_fails(models_copy: Path) -> None:
    manifest = json.loads((models_copy / "manifest.json").read_text())
    real = manifest["models"]["masknet"]["input"]["size"]
    for entry in manifest["models"].values():
        entry["input"]["size"] = real + 32  # consistent manifest, models that disagree with it
    (models_copy / "manifest.json").write_text(json.dumps(manifest))
    result = doctor("--models", str(models_copy))
    assert result.returncode == 1, result.stdout
    (failure,) = _failures(result)
    assert "manifest.json" in failure and f"input.size {real + 32}" in failure and "does not match" in failure


def test_run_and_doctor_use_the_same_detector_file(models_copy: Path, tmp_path: Path) -> None:
    detector = models_copy / RUN_DETECTOR
    detector.write_bytes(detector.read_bytes()[:5000])
    result = doctor("--models", str(models_copy))
    assert result.returncode == 1
    assert any(str(detector) in line and "sha256 mismatch" in line for line in _failures(result))
    proc = masknet("run", "--models", str(models_copy), "--source", str(tmp_path), "--pins", "mock", cwd=tmp_path)
    assert_clean_failure(proc, 2, str(detector), "not a valid TFLite model")


def test_truncated_detector_is_named_with_its_sha256_mismatch(models_copy: Path) -> None:
    detector = models_copy / DETECTOR_MODEL
    detector.write_bytes(detector.read_bytes()[:1000])
    result = doctor(models=models_copy)
    assert result.returncode != 0
    failure = _failures(result)[0]
    assert str(detector) in failure and "sha256 mismatch" in failure
    assert "./install.sh" in failure
    assert "Traceback" not in result.stdout + result.stderr


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


def test_swapped_classifier_is_a_sha256_mismatch(models_copy: Path) -> None:
    manifest = json.loads((models_copy / "manifest.json").read_text())
    imasknet = models_copy / manifest["models"]["imasknet"]["file"]
    imasknet.write_bytes(b"swapped")
    result = doctor(models=models_copy)
    assert result.returncode != 0
    assert f"{imasknet}: sha256" in result.stdout and "does not match the manifest" in result.stdout


def test_a_config_doctor_cannot_read_is_a_failure(models_copy: Path, tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes("# caf\u00e9\n[camera]\nfps = 10\n".encode("latin-1"))
    result = doctor("--config", str(config), models=models_copy)
    assert result.returncode == 1
    (failure,) = _failures(result)
    assert str(config) in failure and "not UTF-8" in failure


NUMPY_ABI_ERROR = (
    "numpy.dtype size changed, may indicate binary incompatibility. "
    "Expected 96 from C header, got 88 from PyObject"
)


@pytest.fixture
def broken_picamera2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A picamera2 that fails at import the way apt's does under a venv's numpy 2 (simplejpeg)."""
    package = tmp_path / "site" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ValueError({NUMPY_ABI_ERROR!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)


def _doctor_in_process(
    models: Path, on_pi: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`masknet doctor` in this process, so that it can be told it runs on a Pi."""
    import argparse

    from edge.commands import doctor as doctor_module

    monkeypatch.setattr(doctor_module, "is_raspberry_pi", lambda *_: on_pi)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")  # so the camera is the only problem here
    rc = doctor_module.run(argparse.Namespace(models=models))
    out, err = capsys.readouterr()
    return rc, out, err


def test_on_a_pi_a_picamera2_that_fails_to_import_fails_with_the_real_error(
    models_copy: Path,
    broken_picamera2: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = _doctor_in_process(models_copy, True, monkeypatch, capsys)
    assert rc == 1, out + err
    camera = [line for line in out.splitlines() if "picamera2:" in line]
    assert len(camera) == 1 and "FAIL" in camera[0]
    assert f"ValueError: {NUMPY_ABI_ERROR}" in camera[0]
    assert "re-run ./install.sh" in camera[0] and "numpy<2" in camera[0]
    assert "1 problem(s) found" in err


def test_off_a_pi_a_broken_picamera2_is_only_a_warning(
    models_copy: Path,
    broken_picamera2: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = _doctor_in_process(models_copy, False, monkeypatch, capsys)
    camera = next(line for line in out.splitlines() if "picamera2:" in line)
    assert "warn" in camera and NUMPY_ABI_ERROR in camera
    assert rc == 0, out + err
