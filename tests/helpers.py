"""Shared helpers of the tests (models, test images, running `masknet` in a subprocess); no tests here."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
DETECTOR_MODEL = MODELS / "face_detection_short_range.tflite"
SHARED_DATA = REPO.parent / "shared" / "data"


def need_detector() -> Path:
    if not DETECTOR_MODEL.is_file():
        pytest.skip("models/face_detection_short_range.tflite is absent; ./install.sh fetches it")
    return DETECTOR_MODEL


def committed_models() -> Path:
    """The trained models in models/; skips (saying why) when they are not there."""
    if not (MODELS / "manifest.json").is_file():
        pytest.skip("models/manifest.json is absent: the trained classifiers are not in models/ yet")
    return MODELS


def tiny_models(cache: pytest.Cache, pipeline: str = "cascade", shared_features: bool = True) -> Path:
    """Tiny random int8 classifiers + manifest (convert/tiny.py), built once and cached."""
    from edge.errors import ModelError
    from edge.manifest import load_manifest

    # keyed on the code that builds them, so a change there never tests yesterday's models
    code = hashlib.sha256(b"".join((REPO / "convert" / f).read_bytes() for f in ("tiny.py", "quantize.py")))
    layout = "shared" if shared_features else "standalone"
    folder = cache.mkdir(f"edge_tiny_{pipeline}_{layout}_{code.hexdigest()[:12]}")
    try:
        load_manifest(folder, verify=True)
        return folder
    except ModelError:
        pass
    pytest.importorskip("tensorflow")
    from convert.tiny import build_tiny_models

    build_tiny_models(folder, input_size=32, seed=0, pipeline=pipeline, shared_features=shared_features)
    return folder


def classifier_models(cache: pytest.Cache) -> Path:
    """The committed models when present (no TensorFlow needed), else tiny ones."""
    if (MODELS / "manifest.json").is_file():
        return MODELS
    return tiny_models(cache)


def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def blank(size: int = 256, value: int = 90) -> np.ndarray:
    """A frame with nobody in it."""
    return np.full((size, size, 3), value, np.uint8)


def write_images(folder: Path, images: Sequence[np.ndarray], prefix: str = "f") -> list[Path]:
    """Write RGB frames as numbered JPEGs (name order = play order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        p = folder / f"{prefix}{i:05d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


# Mechanics config: random tiny models score low, so every verdict counts and commits (min_score and
# commit_score 0); the same frame repeated is a stable verdict after 3 frames; 3 empty frames end a visit.
RUN_CONFIG = """
[tracker]
min_score = 0.0
commit_score = 0.0
stable_frames = 3
stable_seconds = 100.0
expire_frames = 3
[indicators]
hold_seconds = 0.0
[camera]
max_failures = 3
reopen_backoff_s = 0.05
reopen_backoff_max_s = 0.1
"""


def visits_folder(folder: Path, people: int, frames_each: int = 5, gap: int = 4) -> Path:
    face, nobody = astronaut(), blank(512)
    frames: list[np.ndarray] = []
    for i in range(people):
        # each visitor stands a little elsewhere
        frames += [np.roll(face, 20 * i, axis=1)] * frames_each + [nobody] * gap
    write_images(folder, frames)
    return folder


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def masknet(*args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `masknet` command as a user would, in a subprocess."""
    full_env = dict(os.environ)
    full_env.pop("DISPLAY", None)
    full_env.pop("WAYLAND_DISPLAY", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    """The `masknet CMD: error:` lines of stderr."""
    return [line for line in stderr.splitlines() if ": error: " in line]


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """Non-zero exit with exactly one error line containing every fragment, and no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]
