"""What this machine is: the board (Raspberry Pi or not), a name for its CPU, and the process's
peak memory. Read by the indicators (real pins only on a Pi), ``masknet doctor`` and
``masknet bench``."""

from __future__ import annotations

import contextlib
import platform
import resource
import sys
from pathlib import Path

DEVICE_MODEL_FILE = Path("/proc/device-tree/model")


def device_model(path: Path = DEVICE_MODEL_FILE) -> str:
    """The board name from the device tree ('' when there is none, i.e. not a single-board computer)."""
    try:
        return path.read_bytes().replace(b"\0", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def is_raspberry_pi(path: Path = DEVICE_MODEL_FILE) -> bool:
    return "Raspberry Pi" in device_model(path)


def cpu_model() -> str:
    """A human name for the CPU: x86 'model name', else the board (Raspberry Pi), else the arch."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "model", "hardware", "cpu model"):
        if key in fields:
            return fields[key]
    return device_model() or platform.processor() or platform.machine()


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux: clear_refs 5 resets VmHWM), so the figure covers the
    timed run and not the scene generation before it. Elsewhere the peak is since process start."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (since the last reset_peak_rss where supported)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return peak * scale / (1024.0 * 1024.0)
