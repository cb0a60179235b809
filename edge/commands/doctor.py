"""``masknet doctor``: is this machine ready to run the door monitor?

Checks, in the order a user would fix them: the config, the TFLite runtime, the model files
(third-party ones against ``models/THIRD_PARTY.sha256``, trained ones against
``models/manifest.json``), then builds the pipeline exactly as ``masknet run`` builds it for the
same ``--config`` / ``--models`` (manifest, classifiers with their shape checks, detector), then
the camera back ends and the GPIO pin factory. Prints one line per finding and exits non-zero when
anything would stop ``masknet run``; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edge import __version__
from edge.config import Config
from edge.device import device_model, is_raspberry_pi
from edge.errors import MasknetError
from edge.paths import (
    DETECTOR_MODEL,
    THIRD_PARTY_SHA256,
    detector_path,
    models_dir,
    sha256_file,
    third_party_hashes,
)

OK = "ok"
WARN = "warn"  # worth knowing, does not stop `masknet run`
FAIL = "FAIL"  # `masknet run` would not work
MISSING = "missing"  # not an error: e.g. trained models before they are exported

@dataclass
class Report:
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (section, status, text)

    def add(self, section: str, status: str, text: str) -> None:
        self.lines.append((section, status, text))

    @property
    def failures(self) -> list[str]:
        return [text for _, status, text in self.lines if status == FAIL]

    def render(self) -> str:
        out: list[str] = []
        last = None
        for section, status, text in self.lines:
            head = section if section != last else ""
            last = section
            out.append(f"{head:<9} {status:<8} {text}")
        return "\n".join(out)


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def _short(digest: str) -> str:
    return digest[:12] + "…"


def check_runtime(report: Report) -> object | None:
    """The runtime `masknet run` would use; returns it, or None when there is none."""
    from edge.litert import load_runtime

    try:
        runtime = load_runtime()
    except MasknetError as exc:
        report.add("runtime", FAIL, str(exc))
        return None
    report.add("runtime", OK, f"{runtime.name} {runtime.version}")
    return runtime


def check_third_party(report: Report, folder: Path, runtime: object | None) -> None:
    sums = folder / THIRD_PARTY_SHA256
    try:
        expected = third_party_hashes(sums)
    except MasknetError as exc:
        report.add("models", FAIL, str(exc))
        return
    verified: set[str] = set()
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            report.add("models", FAIL, f"{path}: not found; run ./install.sh to fetch it")
            continue
        actual = sha256_file(path)
        if actual != digest:
            report.add(
                "models",
                FAIL,
                f"{path}: sha256 mismatch (expected {_short(digest)} from {sums.name}, "
                f"got {_short(actual)}, {path.stat().st_size} bytes); the file is corrupt or was "
                "replaced: delete it and run ./install.sh",
            )
            continue
        verified.add(name)
        report.add("models", OK, f"{name}: sha256 {_short(actual)} matches {sums.name}")
    if runtime is not None and DETECTOR_MODEL in verified:
        _smoke_test(report, folder / DETECTOR_MODEL)


def _smoke_test(report: Report, path: Path) -> None:
    """One invoke of the detector: proves the runtime can really execute a model here."""
    from edge.litert import TFLiteModel

    try:
        model = TFLiteModel(path, num_threads=1)
        x = np.zeros(model.input_shape, dtype=model.input_dtype)
        t0 = time.perf_counter()
        model.run(x)
        ms = (time.perf_counter() - t0) * 1e3
    except MasknetError as exc:
        report.add("models", FAIL, str(exc))
        return
    report.add("models", OK, f"{path.name}: loads and runs ({ms:.1f} ms for one invoke, 1 thread)")


def check_trained(report: Report, folder: Path) -> bool:
    """The manifest and each model's bytes; False when there is no usable manifest."""
    from edge.manifest import MANIFEST_NAME, load_manifest, verify_model

    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        # `masknet run` refuses to start without it, so this is a failure, not a note
        report.add(
            "models",
            FAIL,
            f"trained models: {manifest_path} not found (export them with `masknet export`, or pull "
            "the models that ship with the repository)",
        )
        return False
    try:
        manifest = load_manifest(folder, verify=False)
    except MasknetError as exc:
        report.add("models", FAIL, str(exc))
        return False
    recorded = "" if manifest.version >= 3 else f" (version {manifest.version} manifest records none: the defaults)"
    report.add("models", OK, f"face crop: {manifest.crop.describe()}{recorded}")
    used = {spec.name for spec in manifest.classifier_models}
    for spec in manifest.models.values():
        try:
            verify_model(spec)
        except MasknetError as exc:
            # a model the chosen pipeline never loads cannot stop `masknet run`
            report.add("models", FAIL if spec.name in used else WARN, str(exc))
            continue
        role = f"{manifest.classifiers} pipeline" if spec.name in used else "not used by the pipeline"
        if spec.input_features is not None:
            f = spec.input_features
            takes = f"reads {spec.features_of}'s {f.layer} features ({'x'.join(map(str, f.shape))} {f.dtype})"
        else:
            takes = f"{spec.input_size}x{spec.input_size} {spec.input_dtype}"
        # the installer should see that answers are not the plain arg-max (docs/training.md)
        shift = "".join(f"; prior shift {c} {b:+.2f}" for c, b in spec.class_bias.items() if b)
        report.add(
            "models",
            OK,
            f"{spec.path.name}: {spec.task}, {takes}, sha256 {_short(spec.sha256)} matches {MANIFEST_NAME} ({role}){shift}",
        )
    return True


def check_build(report: Report, cfg: Config) -> None:
    """Build the pipeline as `masknet run` does: every classifier loaded and its input and outputs
    checked against the manifest, and the detector loaded. Pins and camera are not touched."""
    from edge.pipeline import load_models

    t0 = time.perf_counter()
    try:
        _, cascade = load_models(cfg)
    except MasknetError as exc:
        report.add("models", FAIL, f"`masknet run` would stop: {exc}")
        return
    ms = (time.perf_counter() - t0) * 1e3
    files = [cascade.first.spec.path.name]
    if cascade.imasknet is not None:
        files.append(cascade.imasknet.spec.path.name)
    report.add(
        "models",
        OK,
        f"pipeline builds as `masknet run` builds it ({ms:.0f} ms): {cascade.classifiers} "
        f"{' + '.join(files)} load and match the manifest's shapes; detector {cfg.detector.name}",
    )


def check_camera(report: Report) -> None:
    found = False
    try:
        picamera2 = importlib.import_module("picamera2")
    except ModuleNotFoundError as exc:
        if exc.name != "picamera2":  # installed, but something it imports is missing
            _picamera2_broken(report, exc)
        elif is_raspberry_pi():
            report.add(
                "camera",
                WARN,
                "picamera2: not available (on this Pi: re-run ./install.sh; the venv needs "
                "--system-site-packages; an OS without python3-picamera2 can still use a webcam)",
            )
        else:
            report.add("camera", MISSING, "picamera2: not installed (only used on a Raspberry Pi)")
    except Exception as exc:  # picamera2 can fail at import on a broken libcamera or numpy ABI
        _picamera2_broken(report, exc)
    else:
        found = True
        version = getattr(picamera2, "__version__", "")
        report.add("camera", OK, f"picamera2 {version}".strip() + ": available (Pi camera)")
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        report.add(
            "camera",
            WARN,
            "opencv (cv2): not installed; video files and webcams need it: run ./install.sh",
        )
    else:
        if hasattr(cv2, "VideoCapture"):
            found = True
            devices = sorted(glob.glob("/dev/video*"))
            where = (
                ", ".join(devices)
                if devices
                else "no /dev/video* device (video files and image folders still work)"
            )
            report.add("camera", OK, f"opencv {cv2.__version__}: VideoCapture available; {where}")
        else:
            report.add("camera", WARN, f"opencv {cv2.__version__}: built without VideoCapture")
    if not found:
        report.add(
            "camera", FAIL, "no frame source back end: neither picamera2 nor opencv can be used"
        )


def _picamera2_broken(report: Report, exc: Exception) -> None:
    """picamera2 is there but cannot be imported: on a Pi the camera cannot work, so that fails."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    hint = ""
    if "numpy" in text:
        hint = (
            "; a numpy 2 in .venv shadows the apt numpy picamera2 was built against: re-run "
            "./install.sh (it holds the venv to numpy<2)"
        )
    report.add(
        "camera",
        FAIL if is_raspberry_pi() else WARN,
        f"picamera2: installed but fails to import ({type(exc).__name__}: {text}){hint}",
    )


def check_gpio(report: Report) -> None:
    try:
        importlib.import_module("gpiozero")
    except ImportError:
        report.add("gpio", FAIL, "gpiozero is not installed: run ./install.sh")
        return
    forced = os.environ.get("GPIOZERO_PIN_FACTORY")
    if not is_raspberry_pi() and not forced:
        report.add(
            "gpio",
            OK,
            f"gpiozero {_dist_version('gpiozero')}: MockFactory (not a Raspberry Pi: LEDs and buzzer are simulated)",
        )
        return
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    try:
        with warnings.catch_warnings(record=True) as tried:
            # gpiozero warns for every factory it falls back from: reported below in one line
            warnings.simplefilter("always")
            factory = Device._default_pin_factory()
    except BadPinFactory as exc:
        report.add(
            "gpio",
            FAIL,
            f"gpiozero {_dist_version('gpiozero')}: no pin factory works ({exc}); install python3-lgpio "
            "(./install.sh does; a Pi 5 needs lgpio) and keep the venv's --system-site-packages",
        )
        return
    except Exception as exc:  # e.g. PermissionError on /dev/gpiochip* when not in the gpio group
        report.add(
            "gpio",
            FAIL,
            f"gpiozero {_dist_version('gpiozero')}: pin factory failed ({type(exc).__name__}: {exc}); "
            "add yourself to the gpio group (./install.sh does) and log in again",
        )
        return
    name = type(factory).__name__
    # closing a half-initialised factory must not turn a pass into a crash
    with contextlib.suppress(Exception):
        factory.close()
    via = f"GPIOZERO_PIN_FACTORY={forced}" if forced else "gpiozero's default"
    report.add("gpio", OK, f"gpiozero {_dist_version('gpiozero')}: {name} ({via})")
    fallbacks = [" ".join(str(w.message).split()) for w in tried]
    if fallbacks:
        # e.g. lgpio missing or its chip not found: on a Pi 5 nothing but lgpio drives the pins
        report.add("gpio", WARN, f"gpiozero fell back before using {name}: {'; '.join(fallbacks)}")


def diagnose(folder: Path | None = None, config: Path | None = None) -> Report:
    from edge.config import load_config

    report = Report()
    board = device_model() or "no device tree"
    report.add(
        "system",
        OK,
        f"masknet-edge {__version__}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()} ({board}), {os.cpu_count()} CPU cores",
    )
    cfg: Config | None = None
    try:
        # the overrides `masknet run --models DIR` makes, so both resolve the same files
        cfg = load_config(config, {"classifier.models_dir": str(folder)} if folder is not None else None)
    except MasknetError as exc:
        report.add("config", FAIL, str(exc))
    else:
        report.add("config", OK, f"{config}: valid" if config is not None else "the documented defaults (no --config)")
    runtime = check_runtime(report)
    if cfg is not None and cfg.classifier.models_dir:
        folder = Path(cfg.classifier.models_dir).expanduser()
    folder = Path(folder) if folder is not None else models_dir()
    report.add("models", OK, f"folder {folder}")
    if cfg is not None:
        from edge.regions import detector_model_file

        detector = detector_model_file(cfg)
    else:
        detector = detector_path("", folder)
    report.add("models", OK, f"detector {detector} (the file `masknet run` uses with this config)")
    # the third-party files are checked where the detector comes from (the default models folder
    # when the --models folder holds only classifiers)
    check_third_party(report, folder if detector.parent == folder else detector.parent, runtime)
    manifest_ok = check_trained(report, folder)
    if runtime is not None and cfg is not None and manifest_ok:
        check_build(report, cfg)
    check_camera(report)
    check_gpio(report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="the TOML config `masknet run` uses (default: the documented defaults)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        metavar="DIR",
        help="models folder to check (default: $MASKNET_MODELS, else <repo>/models)",
    )


def run(args: argparse.Namespace) -> int:
    from edge.native_stderr import NativeStderr

    # the runtime's "Created TensorFlow Lite XNNPACK delegate" and the like stay out of the report
    native = NativeStderr().install()
    try:
        report = diagnose(args.models, getattr(args, "config", None))
    finally:
        native.restore()
    print(report.render())
    failures = report.failures
    if failures:
        print(
            f"\n{len(failures)} problem(s) found: `masknet run` will not work until they are fixed.",
            file=sys.stderr,
        )
        return 1
    print("\nall checks passed")
    return 0
