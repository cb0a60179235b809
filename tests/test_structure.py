"""The layering docs/DESIGN.md draws, checked on the source: floors, commands apart, size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EDGE = REPO / "edge"

# docs/DESIGN.md "Floors": a module imports only modules on its own floor or below.
FLOORS: dict[str, int] = {
    "edge": 0, "edge.errors": 0,
    "edge.classes": 1, "edge.paths": 1, "edge.crop": 1, "edge.boxes": 1, "edge.device": 1,
    "edge.timing": 1, "edge.config": 1, "edge.litert": 1, "edge.manifest": 1,
    "edge.stop": 1, "edge.native_stderr": 1, "edge.toml_text": 1, "edge.cli_io": 1,
    "edge.sources": 2, "edge.detector": 2, "edge.cascade": 2, "edge.tracker": 2,
    "edge.indicators": 2, "edge.events": 2, "edge.mqtt": 2, "edge.regions": 2, "edge.face_mesh": 2, "edge.replay": 2, "edge.reopening": 2,
    "edge.pipeline": 3,
    "edge.preview": 4,
    "edge.commands": 5,
    "edge.cli": 6,
}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _edge_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(EDGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _floor(module: str) -> int:
    # edge.commands.bench.scene is on the commands floor, edge.mqtt.outbox on the parts floor
    while module not in FLOORS:
        module = module.rpartition(".")[0]
    return FLOORS[module]


def test_every_edge_module_has_a_floor_and_imports_only_downwards() -> None:
    wrong = []
    for name, path in _edge_modules().items():
        assert name in FLOORS or name.startswith(("edge.commands.", "edge.mqtt.")), f"{name}: add it to FLOORS and docs/DESIGN.md"
        for imported in _imports(path):
            if imported.startswith("edge") and _floor(imported) > _floor(name):
                wrong.append(f"{name} (floor {_floor(name)}) imports {imported} (floor {_floor(imported)})")
    assert not wrong, wrong


def test_edge_never_imports_convert() -> None:
    wrong = [f"{n} imports {i}" for n, p in _edge_modules().items() for i in _imports(p) if i.split(".")[0] == "convert"]
    assert not wrong, wrong


def test_no_command_imports_another_command() -> None:
    commands = {n.split(".")[2] for n in _edge_modules() if n.startswith("edge.commands.")}
    assert commands == {"run", "doctor", "bench", "watch", "detect"}
    wrong = []
    for name, path in _edge_modules().items():
        if not name.startswith("edge.commands."):
            continue
        own = name.split(".")[2]
        for imported in _imports(path):
            parts = imported.split(".")
            if parts[:2] == ["edge", "commands"] and len(parts) > 2 and parts[2] != own:
                wrong.append(f"{name} imports {imported}")
    assert not wrong, wrong


def test_no_edge_module_is_over_500_lines() -> None:
    long = {n: c for n, p in _edge_modules().items() if (c := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


@pytest.mark.parametrize("module", ["edge.tracker", "edge.indicators"])
def test_tracker_and_indicators_load_neither_the_cascade_nor_litert(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in ('edge.cascade', 'edge.litert', 'edge.manifest') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)
