"""Suite-wide skip rules: data-backed tests need ../shared/data, convert tests need TensorFlow.

Only these two markers may skip, and each says why, so a Pi without the training stack or a
clone without the shared data still runs everything else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _has_tensorflow() -> bool:
    # find_spec, not import: importing TensorFlow costs seconds and the edge tests must not pay it
    return importlib.util.find_spec("tensorflow") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_data = not SHARED_DATA.is_dir()
    no_tf = not _has_tensorflow()
    skip_data = pytest.mark.skip(reason=f"needs the shared data set at {SHARED_DATA} (absent)")
    skip_tf = pytest.mark.skip(
        reason="needs the training stack (TensorFlow): run ./install.sh --convert"
    )
    for item in items:
        if no_data and "shared_data" in item.keywords:
            item.add_marker(skip_data)
        if no_tf and "convert" in item.keywords:
            item.add_marker(skip_tf)


@pytest.fixture
def models(pytestconfig: pytest.Config) -> Path:
    """The classifiers `masknet run` tests use: the committed ones, else tiny ones (cached)."""
    from helpers import classifier_models, need_detector

    need_detector()
    return classifier_models(pytestconfig.cache)


@pytest.fixture
def workdir(tmp_path: Path, models: Path) -> Path:
    """A folder with config.toml = RUN_CONFIG, where `masknet run` tests run."""
    from helpers import RUN_CONFIG, write_config

    write_config(tmp_path / "config.toml", RUN_CONFIG)
    return tmp_path
