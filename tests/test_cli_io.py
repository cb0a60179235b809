"""The shared number-list parser and report writer of bench, detect --bench and evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli_io import emit_report, parse_number_list
from edge.errors import ConfigError, MasknetError


def test_number_lists_parse_with_spaces_and_a_trailing_comma() -> None:
    assert parse_number_list("24, 32,48,", "--face-sizes", int, 8, 700) == [24, 32, 48]
    assert parse_number_list("0,0.35", "--far-tile", float, 0.0, 1.0) == [0.0, 0.35]


@pytest.mark.parametrize(
    ("text", "kind", "lo", "hi", "message"),
    [
        ("24,abc", int, 8, 700, "--opt must be a comma-separated list of whole numbers, got '24,abc'"),
        ("0.5,x", float, 0.0, 1.0, "--opt must be a comma-separated list of numbers, got '0.5,x'"),
        ("4,800", int, 8, 700, "--opt: values must be between 8 and 700 pixels, got '4,800'"),
        ("0", int, 1, None, "--opt: values must be at least 1, got '0'"),
        (" , ", int, 1, None, "--opt: values must be at least 1, got ' , '"),
    ],
)
def test_bad_number_lists_name_the_option_and_the_rule(text: str, kind: type, lo: float, hi: float | None, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_number_list(text, "--opt", kind, lo, hi, " pixels" if hi is not None else "")
    assert str(err.value) == message


def test_report_prints_the_table_and_writes_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    emit_report({"a": 1}, lambda: "TABLE", str(out))
    assert capsys.readouterr().out == "TABLE\n"
    assert json.loads(out.read_text()) == {"a": 1}


def test_json_dash_prints_only_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit_report({"a": [1, 2]}, lambda: "TABLE", "-")
    assert json.loads(capsys.readouterr().out) == {"a": [1, 2]}


def test_an_unwritable_report_is_one_line_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "r.json"
    with pytest.raises(MasknetError, match=r"^--json .*r\.json: cannot write \("):
        emit_report({"a": 1}, lambda: "TABLE", str(target))


def test_evaluate_refuses_a_bad_face_px_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "evaluate", str(tmp_path), "--face-px", "2,48"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "masknet evaluate: error: --face-px: values must be between 4 and 1024 pixels, got '2,48'"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["int8_where.py", "{tmp}", "{tmp}", "--face-px", "2,48"],
         "int8_where.py: error: --face-px: values must be between 4 and 1024 pixels, got '2,48'"),
        (["int8_where.py", "{tmp}", "{tmp}"],
         "int8_where.py: error: {tmp}/model.keras: not found; make it with `masknet train` first"),
        (["int8_agreement.py", "{tmp}", "{tmp}", "--face-px", "24,x"],
         "int8_agreement.py: error: --face-px must be a comma-separated list of whole numbers, got '24,x'"),
    ],
)
def test_the_int8_tools_refuse_bad_input_in_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    tools = Path(__file__).resolve().parents[1] / "tools"
    args = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, str(tools / args[0]), *args[1:]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == message.format(tmp=tmp_path)
