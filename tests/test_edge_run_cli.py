"""`masknet run` as a user runs it: in a subprocess, asserting on exit status, stderr and files.

Every bad input must end in one `masknet run: error: ...` line and no traceback.
"""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import (
    REPO,
    assert_clean_failure,
    astronaut,
    blank,
    classifier_models,
    masknet,
    need_detector,
    write_config,
    write_images,
)

# Mechanics config: random tiny models score low, so every verdict counts and commits (min_score and
# commit_score 0); the same frame repeated is a stable verdict after 3 frames; 3 empty frames end a visit.
CONFIG = """
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


@pytest.fixture
def models(pytestconfig: pytest.Config) -> Path:
    need_detector()
    return classifier_models(pytestconfig.cache)


@pytest.fixture
def workdir(tmp_path: Path, models: Path) -> Path:
    write_config(tmp_path / "config.toml", CONFIG)
    return tmp_path


def run(workdir: Path, models: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return masknet("run", "--config", "config.toml", "--models", str(models), *args, cwd=workdir, timeout=timeout)


def visits_folder(folder: Path, people: int, frames_each: int = 5, gap: int = 4) -> Path:
    face, nobody = astronaut(), blank(512)
    frames: list[np.ndarray] = []
    for i in range(people):
        # each visitor stands a little elsewhere
        frames += [np.roll(face, 20 * i, axis=1)] * frames_each + [nobody] * gap
    write_images(folder, frames)
    return folder


def test_folder_run_ends_by_itself_with_one_event_per_person(workdir: Path, models: Path) -> None:
    visits_folder(workdir / "frames", people=3)
    proc = run(workdir, models, "--source", "frames", "--pins", "mock", "--max-frames", "100",
               "--events", "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in (workdir / "out.jsonl").read_text().splitlines()]
    assert len(events) == 3
    assert [e["track_id"] for e in events] == [1, 2, 3]
    assert [e["frame"] for e in events] == [3, 12, 21]
    assert {"timestamp", "class_id", "sub_type", "score", "box", "latency_ms", "advice"} <= set(events[0])
    assert "done: 27 frames" in proc.stderr
    # mock pins report their changes: the verdict's light went on for each visitor
    assert proc.stderr.count(") on") >= 3
    assert proc.stdout == ""  # events went to the file, not stdout


def test_max_frames_stops_a_looping_source(workdir: Path, models: Path) -> None:
    visits_folder(workdir / "frames", people=1)
    proc = run(workdir, models, "--source", "frames", "--loop", "--pins", "mock", "--max-frames", "23")
    assert proc.returncode == 0, proc.stderr
    assert "done: 23 frames" in proc.stderr
    # events on stdout by default: the same person keeps coming back every 9 frames
    assert len(proc.stdout.splitlines()) == 3


def test_unreadable_image_is_skipped_with_a_warning(workdir: Path, models: Path) -> None:
    folder = visits_folder(workdir / "frames", people=1)
    (folder / "f00002.png").write_bytes(b"\x89PNG truncated")
    proc = run(workdir, models, "--source", "frames", "--pins", "mock")
    assert proc.returncode == 0, proc.stderr
    assert f"masknet run: WARNING: skipping unreadable image {Path('frames') / 'f00002.png'}" in proc.stderr
    assert "done: 8 frames" in proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_truncated_classifier_is_refused(workdir: Path, models: Path) -> None:
    broken = workdir / "models"
    shutil.copytree(models, broken, ignore=shutil.ignore_patterns("*.md", "face_*"))
    manifest = json.loads((broken / "manifest.json").read_text())
    model = broken / manifest["models"]["masknet"]["file"]
    model.write_bytes(model.read_bytes()[:1000])
    proc = run(workdir, broken, "--source", "frames", "--pins", "mock")
    assert_clean_failure(proc, 2, str(model), "does not match the manifest")


def test_truncated_model_with_a_matching_checksum_is_refused(workdir: Path, models: Path) -> None:
    from edge.manifest import load_manifest, write_manifest

    broken = workdir / "models"
    shutil.copytree(models, broken, ignore=shutil.ignore_patterns("*.md", "face_*"))
    manifest = load_manifest(broken, verify=False)
    model = manifest.models["imasknet"].path
    model.write_bytes(model.read_bytes()[:2000])
    write_manifest(broken, manifest.classifiers, manifest.models, manifest.crop)  # re-hash the broken bytes
    proc = run(workdir, broken, "--source", "frames", "--pins", "mock")
    assert_clean_failure(proc, 2, str(model), "not a valid TFLite model")


def test_truncated_detector_is_refused(workdir: Path, models: Path) -> None:
    bad = workdir / "detector.tflite"
    bad.write_bytes((REPO / "models" / "face_detection_short_range.tflite").read_bytes()[:5000])
    (workdir / "config.toml").write_text(CONFIG + f'[detector]\nmodel = "{bad}"\n')
    proc = run(workdir, models, "--source", "frames", "--pins", "mock")
    assert_clean_failure(proc, 2, str(bad), "not a valid TFLite model")


def test_model_that_does_not_match_its_manifest_is_refused(workdir: Path, models: Path) -> None:
    broken = workdir / "models"
    shutil.copytree(models, broken, ignore=shutil.ignore_patterns("*.md", "face_*"))
    manifest = json.loads((broken / "manifest.json").read_text())
    real = manifest["models"]["masknet"]["input"]["size"]
    for entry in manifest["models"].values():
        # every model, so the manifest stays consistent and only the model file disagrees
        entry["input"]["size"] = real + 32
    (broken / "manifest.json").write_text(json.dumps(manifest))
    proc = run(workdir, broken, "--source", "frames", "--pins", "mock")
    assert_clean_failure(proc, 2, "does not match", "manifest.json", f"input.size {real + 32}")


def test_missing_manifest_is_refused(workdir: Path) -> None:
    (workdir / "empty").mkdir()
    proc = masknet("run", "--models", "empty", "--source", "frames", "--pins", "mock", cwd=workdir)
    assert_clean_failure(proc, 2, "manifest.json", "not found")


def test_missing_camera_exits_3(workdir: Path, models: Path) -> None:
    proc = run(workdir, models, "--source", "7", "--pins", "mock")
    assert_clean_failure(proc, 3, "cannot open webcam 7")


def test_auto_source_without_any_camera_exits_3(workdir: Path, models: Path) -> None:
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a webcam 0, so auto finds a camera")
    proc = run(workdir, models, "--source", "auto", "--pins", "mock")
    assert_clean_failure(proc, 3, "camera.source 'auto': no camera found")
    assert "pin GPIO" not in proc.stderr  # no output was switched on


def test_missing_source_path_is_named(workdir: Path, models: Path) -> None:
    proc = run(workdir, models, "--source", "no/such/folder", "--pins", "mock")
    assert_clean_failure(proc, 3, "'no/such/folder': no such file, folder or camera")


class DroppingCamera:
    """An MJPEG network camera on localhost: `streams` connections of `k` frames each, then 503."""

    def __init__(self, k: int, streams: int) -> None:
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
        served = {"n": 0}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                served["n"] += 1
                if served["n"] > streams:
                    self.send_error(503, "camera offline")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for _ in range(k):
                    part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    self.wfile.write(part + jpeg + b"\r\n")
                    self.wfile.flush()
                    time.sleep(0.01)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/stream.mjpg"
        self.served = served
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dropping_camera() -> Iterator[DroppingCamera]:
    cam = DroppingCamera(k=6, streams=2)
    yield cam
    cam.close()


def test_camera_dropping_mid_run_is_reopened_then_gives_up_with_status_3(
    workdir: Path, models: Path, dropping_camera: DroppingCamera
) -> None:
    proc = run(workdir, models, "--source", dropping_camera.url, "--pins", "mock", "--events", "out.jsonl")
    line = assert_clean_failure(proc, 3, "stream http://127.0.0.1", "gave up after 3 failures in a row")
    assert "at frame 12" in line  # 6 frames, reopened, 6 more, then the camera stayed away
    assert proc.stderr.count("reopening in") == 3  # 1 after frame 6, 2 after frame 12
    assert "12 frames" in proc.stderr and "1 camera reopens" in proc.stderr
    # the events of the frames before the failure were written and flushed
    assert len((workdir / "out.jsonl").read_text().splitlines()) == 1


def test_gpio_pin_already_in_use_is_one_line(workdir: Path, models: Path) -> None:
    (workdir / "config.toml").write_text(CONFIG.replace("[indicators]\n", "[indicators]\nred_pin = 17\n"))
    visits_folder(workdir / "frames", people=1)
    proc = run(workdir, models, "--source", "frames", "--pins", "mock")
    assert_clean_failure(proc, 2, "indicators.red_pin: GPIO17 is already in use by indicators.green_pin")


def test_test_outputs_switches_each_output_once(tmp_path: Path) -> None:
    proc = masknet("run", "--test-outputs", "--pins", "mock", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    changes = [line for line in proc.stderr.splitlines() if line.startswith("pin GPIO")]
    assert changes == [
        "pin GPIO17 (green) on", "pin GPIO17 (green) off",
        "pin GPIO27 (amber) on", "pin GPIO27 (amber) off",
        "pin GPIO22 (red) on", "pin GPIO22 (red) off",
        "pin GPIO23 (buzzer) on", "pin GPIO23 (buzzer) off",
    ]


def test_sigterm_turns_outputs_off_and_flushes_events(workdir: Path, models: Path) -> None:
    visits_folder(workdir / "frames", people=1, frames_each=6, gap=0)
    cmd = [sys.executable, "-m", "edge.cli", "run", "--config", "config.toml", "--models", str(models),
           "--source", "frames", "--loop", "--pins", "mock", "--events", "out.jsonl"]
    proc = subprocess.Popen(cmd, cwd=workdir, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # wait until a verdict has lit an LED
            lines.append(line)
            if ") on" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
    stderr = "".join(lines) + rest
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stderr
    assert "Traceback" not in stderr
    # the last change of the lit LED is "off": the door does not stay lit after the service stops
    lit_pin = next(line.split(" (")[0] for line in lines if ") on" in line)
    last = [line for line in stderr.splitlines() if line.startswith(lit_pin)][-1]
    assert last.endswith(" off"), last
    assert len((workdir / "out.jsonl").read_text().splitlines()) == 1


def test_headless_preview_writes_latest_jpeg(workdir: Path, models: Path) -> None:
    visits_folder(workdir / "frames", people=1)
    proc = run(workdir, models, "--source", "frames", "--pins", "mock", "--preview")
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(workdir / "preview" / "latest.jpg"))
    assert image is not None and image.shape == (512, 512, 3)
    assert sorted(p.name for p in (workdir / "preview").iterdir()) == ["latest.jpg"]


def test_real_pins_off_a_pi_are_one_line(tmp_path: Path) -> None:
    from edge.device import is_raspberry_pi

    if is_raspberry_pi():
        pytest.skip("on a Raspberry Pi real pins work")
    proc = masknet("run", "--test-outputs", "--pins", "gpio", cwd=tmp_path)
    assert_clean_failure(proc, 2, "no GPIO library found", "--pins mock")
    assert "Warning" not in proc.stderr


def test_models_cut_otherwise_than_the_config_says_are_refused(workdir: Path, models: Path) -> None:
    """The manifest records the crop the models were trained on; a run config's classifier.align
    that contradicts it is refused in one line before a camera or pin is touched."""
    from dataclasses import replace

    from edge.manifest import load_manifest, write_manifest

    aligned = workdir / "models"
    shutil.copytree(models, aligned, ignore=shutil.ignore_patterns("*.md", "face_*"))
    manifest = load_manifest(aligned)
    write_manifest(aligned, manifest.classifiers, manifest.models, replace(manifest.crop, align=True))
    write_config(workdir / "config.toml", CONFIG + "[classifier]\nalign = false\n")
    visits_folder(workdir / "frames", people=1)
    proc = run(workdir, aligned, "--source", "frames", "--pins", "mock")
    assert_clean_failure(proc, 2, "classifier.align = false disagrees with", str(aligned / "manifest.json"))
    # "auto" (the default) follows the manifest
    write_config(workdir / "config.toml", CONFIG)
    proc = run(workdir, aligned, "--source", "frames", "--pins", "mock")
    assert proc.returncode == 0, proc.stderr
