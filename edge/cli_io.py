"""Command-line plumbing that several commands share: number-list options in, JSON reports out.

``masknet bench``, ``masknet detect --bench`` and ``masknet evaluate`` all take comma-separated
lists (``--faces 1,4,8``, ``--face-sizes 24,32``, ``--face-px 48,96``) and all end by printing a
table and optionally writing the same figures as JSON; one place keeps their errors and their
``--json -`` behaviour alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import ConfigError, MasknetError

N = TypeVar("N", int, float)


def parse_number_list(
    text: str, option: str, kind: Callable[[str], N], lo: float, hi: float | None = None, unit: str = ""
) -> list[N]:
    """``"24, 32,48"`` -> ``[24, 32, 48]``; one clear ConfigError naming ``option`` otherwise.

    ``kind`` is ``int`` or ``float``; every value must lie in ``lo``..``hi`` (no upper bound when
    ``hi`` is None). Empty items are skipped, so a trailing comma is harmless.
    """
    what = "whole numbers" if kind is int else "numbers"
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be a comma-separated list of {what}, got {text!r}") from None
    if not values or any(v < lo or (hi is not None and v > hi) for v in values):
        bound = f"at least {lo:g}" if hi is None else f"between {lo:g} and {hi:g}"
        raise ConfigError(f"{option}: values must be {bound}{unit}, got {text!r}")
    return values


def emit_report(report: dict[str, Any], render: Callable[[], str], json_arg: str | None) -> None:
    """Print the report's table, and write its JSON to ``json_arg`` if given.

    ``--json -`` prints the JSON alone: stdout is for a program then, and the table would break it.
    """
    text = json.dumps(report, indent=2)
    if json_arg == "-":
        print(text)
        return
    print(render())
    if json_arg:
        try:
            Path(json_arg).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise MasknetError(f"--json {json_arg}: cannot write ({exc.strerror})") from None
