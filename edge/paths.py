"""Where the models live, and the names and checksums of the third-party ones."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edge.errors import ModelError

DETECTOR_MODEL = "face_detection_short_range.tflite"
LANDMARK_MODEL = "face_landmark.tflite"
# sha256sum format ("<hex>  <name>"), shared with install.sh so both check the same bytes.
THIRD_PARTY_SHA256 = "THIRD_PARTY.sha256"


def repo_root() -> Path:
    """The checkout this package was installed from (editable install) or unpacked into."""
    return Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """``$MASKNET_MODELS`` when set (e.g. a read-only image with models elsewhere), else ``<repo>/models``."""
    env = os.environ.get("MASKNET_MODELS")
    if env:
        return Path(env).expanduser()
    return repo_root() / "models"


def configured_models_dir(setting: str) -> Path:
    """The folder ``classifier.models_dir`` names (``~`` expanded); empty = :func:`models_dir`."""
    return Path(setting).expanduser() if setting else models_dir()


def detector_path(configured: str = "", folder: Path | str | None = None, file_name: str = DETECTOR_MODEL) -> Path:
    """The detector file ``masknet run`` and ``masknet doctor`` both use: ``detector.model`` when
    set, else the one in the models folder (``--models`` / ``classifier.models_dir``), else the
    one install.sh put in the default models folder (a folder of exported classifiers alone)."""
    if configured:
        return Path(configured).expanduser()
    if folder is not None:
        candidate = Path(folder).expanduser() / file_name
        if candidate.is_file():
            return candidate
    return models_dir() / file_name


def third_party_hashes(path: Path | None = None) -> dict[str, str]:
    """File name -> expected sha256 (lower-case hex) from ``models/THIRD_PARTY.sha256``.

    The list is committed with the code, so the checkout's copy is the reference even when
    ``$MASKNET_MODELS`` points the models elsewhere; that folder's copy is only a fallback for
    installs without the checkout.
    """
    if path is None:
        candidates = [repo_root() / "models" / THIRD_PARTY_SHA256, models_dir() / THIRD_PARTY_SHA256]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model checksum list ({exc.strerror}); re-run ./install.sh") from None
    hashes: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ModelError(f"{path}:{lineno}: expected '<sha256>  <file name>', got {raw!r}")
        # sha256sum marks binary mode with a leading '*'
        name = parts[1].strip().lstrip("*")
        hashes[name] = digest
    return hashes


def sha256_file(path: Path | str, chunk_size: int = 1 << 20) -> str:
    """Lower-case hex sha256 of a file, read in chunks so large models don't sit in memory twice."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()
