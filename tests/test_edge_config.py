from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, assert_clean_failure, masknet, write_config

from edge.config import (
    DEFAULT_CONFIG_PATH,
    default_tree,
    dump_toml,
    load_config,
    rule_keys,
    tomllib,
)
from edge.errors import ConfigError


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in tree.items():
        if isinstance(value, dict):
            keys |= _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_every_documented_default_has_a_validation_rule_and_back() -> None:
    assert _leaf_keys(default_tree()) == rule_keys()


def test_defaults_work_without_a_file() -> None:
    cfg = load_config()
    assert cfg.camera.source == "auto"
    assert cfg.indicators.pins == "auto"
    assert cfg.events.save_crops is False  # privacy: off unless asked
    assert cfg.tracker.stable_frames >= 2


def test_documentation_lists_every_key() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [k for k in sorted(rule_keys()) if f"`{k.rsplit('.', 1)[-1]}`" not in doc]
    assert not missing, f"docs/configuration.md does not describe {missing}"


def test_file_values_override_defaults_and_ints_become_floats(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.toml",
        '[camera]\nsource = "frames/"\nfps = 5\n[tracker]\nstable_seconds = 2\n'
        "[indicators.buzzer]\nno_mask = []\n",
    )
    cfg = load_config(path)
    assert cfg.camera.source == "frames/"
    assert cfg.camera.fps == 5
    assert cfg.camera.width == 1280  # untouched keys keep their defaults
    assert cfg.tracker.stable_seconds == 2.0 and isinstance(cfg.tracker.stable_seconds, float)
    assert cfg.indicators.buzzer["no_mask"] == ()
    assert cfg.indicators.buzzer["mask_incorrect"] == (0.1, 0.1, 0.1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[camera]\nfps_x = 10\n", "config.toml: unknown key 'camera.fps_x'"),
        ("[camra]\nfps = 10\n", "config.toml: unknown key 'camra'"),
        ("[indicators.buzzer]\nmaybe = [0.1]\n", "unknown key 'indicators.buzzer.maybe'"),
        ('[camera]\nfps = "15"\n', "config.toml: 'camera.fps' must be an integer, got a string '15'"),
        ("[camera]\nloop = 1\n", "'camera.loop' must be a boolean"),
        ("[tracker]\nmin_score = 1.5\n", "'tracker.min_score' must be between 0 and 1, got 1.5"),
        ("[indicators]\nred_pin = 40\n", "'indicators.red_pin' must be a BCM pin number 0-27"),
        ('[indicators]\npins = "real"\n', "'indicators.pins' must be \"auto\", \"gpio\" or \"mock\""),
        ("[indicators.amber_blink]\nmask_over_chin = [0.1]\n", "'indicators.amber_blink.mask_over_chin'"),
        ("camera = 3\n", "'camera' must be a table"),
        ('[classifier]\nalign = "yes"\n', "'classifier.align' must be \"auto\", true or false, got 'yes'"),
        ("[classifier]\nalign = 1\n", "'classifier.align' must be a string, got an integer 1"),
        ("[camera\n", "config.toml: not valid TOML"),
    ],
)
def test_bad_config_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value).replace(str(tmp_path) + "/", "")
    assert "\n" not in str(info.value)


def test_classifier_align_is_auto_unless_set(tmp_path: Path) -> None:
    assert load_config().classifier.align == "auto"  # the crop the manifest records
    for value in (True, False):
        path = write_config(tmp_path / "config.toml", f"[classifier]\nalign = {str(value).lower()}\n")
        assert load_config(path).classifier.align is value


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_command_line_overrides_are_validated_like_the_file() -> None:
    assert load_config(overrides={"runtime.threads": 3}).runtime.threads == 3
    with pytest.raises(ConfigError, match="command line: 'runtime.threads' must be between 1 and 64"):
        load_config(overrides={"runtime.threads": 0})


def test_dump_toml_round_trips_the_effective_config() -> None:
    cfg = load_config(overrides={"camera.source": 'C:\\cams\\"door"'})
    assert tomllib.loads(dump_toml(cfg.raw)) == cfg.raw


def test_the_default_file_parses_as_plain_toml() -> None:
    with DEFAULT_CONFIG_PATH.open("rb") as f:
        assert tomllib.load(f)["camera"]["source"] == "auto"


def test_print_config_shows_the_effective_config(tmp_path: Path) -> None:
    path = write_config(tmp_path / "door.toml", "[camera]\nfps = 7\n")
    proc = masknet("run", "--config", str(path), "--threads", "3", "--print-config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = tomllib.loads(proc.stdout)
    assert shown["camera"]["fps"] == 7
    assert shown["runtime"]["threads"] == 3
    assert shown["events"]["save_crops"] is False


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[camera]\nfps_x = 10\n", ("config.toml: unknown key 'camera.fps_x'",)),
        ('[camera]\nfps = "fast"\n', ("'camera.fps' must be an integer",)),
    ],
)
def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    write_config(tmp_path / "config.toml", text)
    proc = masknet("run", "--config", "config.toml", "--pins", "mock", cwd=tmp_path)
    line = assert_clean_failure(proc, 2, *fragments)
    assert line.startswith("masknet run: error: ")
