"""The ground the rest stands on: the `masknet` command, the packaging, the README's commands
and wiring table, CI's entry point, and the rule that the door never loads TensorFlow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
EDGE_COMMANDS = ("run", "bench", "doctor")
CONVERT_COMMANDS = ("dataset", "train", "quantize", "evaluate", "decide", "export")


def python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_edge_never_imports_tensorflow() -> None:
    # A fresh interpreter: the test process itself may have TensorFlow loaded by other tests.
    result = python(
        "import importlib, pkgutil, sys\n"
        "from edge.cli import main\n"
        "rc = main(['doctor'])\n"
        "import edge\n"
        "for info in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
        "    importlib.import_module(info.name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('DOCTOR', rc)\n"
        "print('LOADED', loaded)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "DOCTOR 0" in result.stdout, result.stdout + result.stderr
    assert "LOADED []" in result.stdout, result.stdout


def test_masknet_command_is_installed_and_lists_every_subcommand() -> None:
    masknet = Path(sys.executable).parent / "masknet"
    assert masknet.is_file(), f"{masknet} missing: run ./install.sh (pip install -e .)"
    result = subprocess.run([str(masknet), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in EDGE_COMMANDS + CONVERT_COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), f"`{command}` not in --help"
    version = subprocess.run([str(masknet), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("masknet-edge ")


def test_unknown_command_exits_non_zero_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "fly"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr or "unknown command" in result.stderr
    assert "Traceback" not in result.stderr


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower()


def test_pyproject_declares_the_package_extras_and_command() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "masknet-edge"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"] == {"masknet": "edge.cli:main"}
    extras = {
        name: {_requirement_name(r) for r in reqs}
        for name, reqs in project["optional-dependencies"].items()
    }
    assert {"ai-edge-litert", "opencv-python-headless", "numpy", "gpiozero"} <= extras["pi"]
    assert {"pytest", "ruff", "scikit-image"} <= extras["dev"]
    assert extras["convert"] & {"tensorflow", "tensorflow-cpu"}


def test_constraints_pin_every_extra_requirement() -> None:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.strip().lower()] = version.strip()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for extra, reqs in project["optional-dependencies"].items():
        for req in reqs:
            # constraints.txt serves x86_64; requirements for other machines resolve freely
            if "platform_machine" in req and "x86_64'" in req and "!=" in req:
                continue
            assert _requirement_name(req) in pins, f"[{extra}] {req} has no pin in constraints.txt"


def _fenced_block_between(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)\n```\s*<!-- /{marker} -->", README, re.S)
    assert match, f"README.md has no ```sh block between <!-- {marker} --> markers"
    return match.group(1).strip()


def test_readme_starts_with_the_two_commands() -> None:
    run_cmd = _fenced_block_between("run-command")
    test_cmd = _fenced_block_between("test-command")
    assert run_cmd.startswith("./install.sh") and "masknet run" in run_cmd
    assert test_cmd.startswith("./install.sh --convert") and "pytest" in test_cmd
    quick_start = README.index("## Quick start")
    assert (
        quick_start
        < README.index("run-command")
        < README.index("test-command")
        < README.index("## What it does")
    )


def _ci_copy(tmp_path: Path, test_command: str) -> Path:
    (tmp_path / ".ci").mkdir(parents=True)
    shutil.copy2(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(
        f"# x\n\n<!-- test-command -->\n```sh\n{test_command}\n```\n<!-- /test-command -->\n"
    )
    return tmp_path / ".ci" / "run"


def _ci(script: Path) -> subprocess.CompletedProcess[str]:
    # the copy runs only its own command: no apt step for Mosquitto here
    env = {**os.environ, "MASKNET_CI_NO_APT": "1"}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, env=env)


def test_ci_runs_exactly_the_readme_test_command(tmp_path: Path) -> None:
    script = _ci_copy(tmp_path, "echo ran from $PWD > marker.txt")
    result = _ci(script)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "marker.txt").read_text().strip() == f"ran from {tmp_path}"
    # and the real .ci/run announces the real README command
    real = (REPO / ".ci" / "run").read_text()
    assert "README.md" in real and "test-command" in real
    assert "set -euo pipefail" in real


def test_ci_fails_on_failing_tests_and_on_no_tests(tmp_path: Path) -> None:
    tests = tmp_path / "suite"
    tests.mkdir()
    (tests / "test_one.py").write_text("def test_fails():\n    assert 1 + 1 == 3\n")
    script = _ci_copy(
        tmp_path / "failing", f"{sys.executable} -m pytest -q -p no:cacheprovider {tests}"
    )
    assert _ci(script).returncode == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    script = _ci_copy(
        tmp_path / "nothing", f"{sys.executable} -m pytest -q -p no:cacheprovider {empty}"
    )
    result = _ci(script)
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


def test_readme_wiring_table_matches_the_default_config() -> None:
    config = tomllib.loads((REPO / "edge" / "default_config.toml").read_text())["indicators"]
    table = {
        part: int(pin)
        for part, pin in re.findall(
            r"^\|\s*(green LED|amber LED|red LED|buzzer)[^|]*\|\s*GPIO (\d+)\s*\|", README, re.M
        )
    }
    assert table == {
        "green LED": config["green_pin"],
        "amber LED": config["amber_pin"],
        "red LED": config["red_pin"],
        "buzzer": config["buzzer_pin"],
    }


def test_readme_lists_every_class_id() -> None:
    from edge.classes import ALL_CLASSES

    for class_id in ALL_CLASSES:
        assert f"`{class_id}`" in README


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed: run ./install.sh (it comes with the dev extra)"
    # the files git knows, so another engineer's half-written untracked file does not count
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True)
    targets = listed.stdout.split() if listed.returncode == 0 and listed.stdout else ["."]
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "concise", *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_readme_links_point_at_files_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert {"docs/configuration.md", "docs/training.md", "models/REPORT.md"} <= set(local)
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_benchmark_table_comes_from_masknet_bench() -> None:
    section = README[
        README.index("## Benchmarking on the device") : README.index("## Troubleshooting")
    ]
    assert ".venv/bin/masknet bench --frames 300" in section
    table = section[section.index("<!-- bench-table -->") : section.index("<!-- /bench-table -->")]
    assert "not a Pi" in table and "| frame (end to end) |" in table
    assert re.search(r"\.venv/bin/masknet bench [^\n]*--markdown", table), (
        "the table's command is written beside it"
    )
