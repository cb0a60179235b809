from __future__ import annotations

from pathlib import Path

from edge.device import cpu_model, device_model, is_raspberry_pi, peak_rss_mb, reset_peak_rss


def test_pi_detection_reads_the_nul_terminated_device_tree_model(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    assert device_model(model) == "Raspberry Pi 4 Model B Rev 1.4"
    assert is_raspberry_pi(model)
    model.write_bytes(b"Hardkernel ODROID-C4\0")
    assert not is_raspberry_pi(model)
    model.write_text("QEMU Virtual Machine")
    assert not is_raspberry_pi(model)
    assert not is_raspberry_pi(tmp_path / "absent")
    assert device_model(tmp_path / "absent") == ""


def test_cpu_name_and_peak_memory_of_this_machine() -> None:
    assert cpu_model().strip()
    reset_peak_rss()
    block = bytearray(64 * 1024 * 1024)  # 64 MiB touched: the peak covers it
    block[:: 4096] = b"\1" * len(block[:: 4096])
    assert peak_rss_mb() >= 64
