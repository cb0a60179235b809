"""``masknet run``: the door monitor. camera -> faces -> verdict -> LEDs, buzzer and event log.

Exit status: 0 when the source ended or --max-frames was reached; 2 for a configuration, model or
GPIO problem; 3 when the camera failed for good (systemd restarts the service); 128 + the signal
number when SIGINT (130), SIGTERM (143) or SIGHUP (129) stopped it, at any moment, within about
a second (edge/stop.py), outputs off and events flushed. Every problem a user can cause, and
every stop, is reported as one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.config import load_config, secret_warnings
from edge.native_stderr import NativeStderr
from edge.stop import Stopped, StopSignals, exit_status, signal_name

log = logging.getLogger("edge.run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: the documented defaults)")
    parser.add_argument(
        "--source",
        metavar="SRC",
        help="auto, picamera, a webcam index, a video file, an rtsp:// or http:// URL, or a folder of images",
    )
    parser.add_argument("--loop", action="store_true", default=None, help="start a folder or video file again at its end")
    parser.add_argument(
        "--fast", action="store_true", default=None,
        help="read a video file or folder as fast as the CPU allows instead of at its frame rate "
        "(time rules then follow the frames' timestamps)",
    )
    parser.add_argument("--pins", choices=["auto", "gpio", "mock"], help="GPIO pins: real, mock (prints pin changes), or auto (mock off a Pi)")
    parser.add_argument("--test-outputs", action="store_true", help="switch every LED and the buzzer on once, for checking the wiring, then exit")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--events", metavar="FILE", help="write events (JSON lines) to FILE; '-' = stdout")
    parser.add_argument("--threads", type=int, metavar="N", help="interpreter threads per model")
    parser.add_argument("--models", metavar="DIR", help="folder with manifest.json and the classifiers")
    parser.add_argument("--preview", action="store_true", default=None, help="show boxes and labels (window, or preview/latest.jpg headless)")
    parser.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "camera.source": args.source,
        "camera.loop": args.loop,
        "camera.pace": None if args.fast is None else not args.fast,
        "indicators.pins": args.pins,
        "events.output": args.events,
        "runtime.threads": args.threads,
        "classifier.models_dir": args.models,
        "preview.enabled": args.preview,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("masknet run: %(levelname)s: %(message)s"))
    root = logging.getLogger("edge")
    root.handlers[:] = [handler]
    # MASKNET_DEBUG=1 also shows the native libraries' messages (edge/native_stderr.py)
    root.setLevel(logging.DEBUG if os.environ.get("MASKNET_DEBUG") else logging.INFO)
    root.propagate = False


def frame_loop(
    source: Any,
    pipeline: Any,
    max_frames: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    preview: Any = None,
    on_frame: Callable[[int], None] | None = None,
    stop: StopSignals | None = None,
) -> int:
    """Read and process frames until the source ends, ``max_frames`` or ``should_stop()``.

    Returns the number of frames processed. ``on_frame(n)`` is called after frame n (soak tests
    sample memory there). With ``stop``, a signal lets the current frame finish (its event line is
    written whole) and ends the loop before the next read.
    """
    from edge.timing import CAPTURE

    timer = pipeline.timer
    frames = 0
    step = stop.deferred if stop is not None else contextlib.nullcontext
    while not should_stop() and (max_frames is None or frames < max_frames):
        if stop is not None and stop.signal is not None:
            break
        t = timer.start()
        frame = source.read()
        if frame is None:
            break
        timer.stop(CAPTURE, t)
        with step():
            results = pipeline.process(frame)
            frames += 1
            shown = preview is None or preview.update(frame, results)
        if not shown:
            break
        if on_frame is not None:
            on_frame(frames)
    return frames


class _Door:
    """What a run has switched on, and the one way to switch it off (from either thread)."""

    def __init__(self) -> None:
        self.indicators: Any = None
        self.events: Any = None
        self.source: Any = None
        self.preview: Any = None
        self.mqtt: Any = None  # the MQTT publisher when [mqtt] is enabled
        self.pipeline: Any = None
        self.phase = "during start-up"
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False

    def shutdown(self, outcome: str) -> None:
        """Outputs off first (the door must not stay red), then the camera, events, preview."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for closer in (self.indicators, self.source, self.events, self.preview, self.mqtt):
                if closer is not None:
                    try:
                        closer.close()
                    except Exception as exc:  # keep closing the rest
                        log.warning("while shutting down: %s", exc)
            self._report(outcome)

    def force(self, signum: int) -> None:
        """From the stop watcher while the main thread is stuck in a blocking call (camera open or
        read): outputs off and events flushed; the camera is left to the process exit, since
        releasing it under the blocked call is not safe."""
        if not self._lock.acquire(timeout=0.5):
            return  # the main thread is already shutting down; the exit follows regardless
        try:
            if self._closed:
                return
            self._closed = True
            for closer in (self.indicators, self.events):
                if closer is not None:
                    with contextlib.suppress(Exception):
                        closer.close()
            self._report(f"stopped by {signal_name(signum)}", forced=True)
        finally:
            self._lock.release()

    def _report(self, outcome: str, forced: bool = False) -> None:
        pipeline = self.pipeline
        why = " (a blocking call did not return in time; forced)" if forced else ""
        if pipeline is None or not pipeline.frames:
            if outcome != "stopped by an error":
                log.info("%s %s, before the first frame%s", outcome, self.phase, why)
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        events = self.events
        written, lost = (events.count, events.dropped) if events is not None else (0, 0)
        reopens = self.source.reopens if self.source is not None else 0
        log.info(
            "%s%s: %d frames in %.1f s (%.1f FPS), %d events written, %d lost, %d camera reopens",
            outcome, why, pipeline.frames, elapsed, pipeline.frames / elapsed, written, lost, reopens,
        )
        if pipeline.faces_seen > pipeline.faces_classified:
            log.info(
                "classified %d of %d faces seen (classifier.max_faces_per_frame %d; the rest carried their last answer)",
                pipeline.faces_classified, pipeline.faces_seen, pipeline.max_faces,
            )
        stages = ", ".join(f"{name} {st.mean_ms:.1f}" for name, st in pipeline.timer.summary().items())
        if stages:
            log.info("mean ms per call: %s", stages)


def run(args: argparse.Namespace) -> int:
    native = NativeStderr().install()
    try:
        _setup_logging()
        code, signalled = _run_door(args)
    finally:
        native.restore()
    if signalled:
        # Outputs are off and events flushed: skip the interpreter's teardown of TFLite and
        # OpenCV (a third of a second here, more on a busy Pi), so a stop stays within its bound.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return code


def _run_door(args: argparse.Namespace) -> tuple[int, bool]:
    door = _Door()
    stop = StopSignals(on_force=door.force)
    stop.install()
    outcome = "stopped by an error"
    try:
        # a Stopped raised anywhere in here, even as the block exits, is caught below; after it a
        # signal only sets the flag, so the shutdown cannot be interrupted
        with stop.interruptible():
            _run(args, door, stop)
        outcome = "done"
    except Stopped:
        pass
    finally:
        if stop.signal is not None:
            outcome = f"stopped by {signal_name(stop.signal)}"
        door.shutdown(outcome)
        stop.restore()
    if stop.signal is not None:
        return exit_status(stop.signal), True
    return 0, False


def _run(args: argparse.Namespace, door: _Door, stop: StopSignals) -> None:
    cfg = load_config(args.config, _overrides(args))
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return
    if args.max_frames is not None and args.max_frames < 1:
        from edge.errors import ConfigError

        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    for line in secret_warnings(cfg, args.config):
        log.warning("%s", line)

    from edge.indicators import Indicators

    if args.test_outputs:
        door.indicators = Indicators(cfg.indicators)
        log.info("outputs on %s pins", door.indicators.mode)
        door.indicators.test_outputs()
        return

    from edge.events import EventLog
    from edge.pipeline import build_pipeline, load_models
    from edge.preview import Preview
    from edge.reopening import ReopeningSource
    from edge.sources import make_source
    from edge.timing import StageTimer

    # models first: a broken model is reported before any pin or camera is touched
    log.info("starting: loading the models")
    timer = StageTimer(capacity=256)
    pipeline = build_pipeline(cfg, None, None, timer, load_models(cfg, timer))
    door.indicators = Indicators(cfg.indicators)
    door.events = EventLog(
        cfg.events.output, cfg.events.max_bytes, cfg.events.backups, cfg.events.save_crops,
        cfg.events.crops_dir, cfg.events.max_crops,
    )
    door.phase = "while opening the camera"
    source = ReopeningSource(
        make_source(cfg.camera.source, cfg.camera),
        max_failures=cfg.camera.max_failures,
        backoff_s=cfg.camera.reopen_backoff_s,
        backoff_max_s=cfg.camera.reopen_backoff_max_s,
    )
    door.source = source
    source.open()
    door.preview = Preview(cfg.preview) if cfg.preview.enabled else None
    pipeline.indicators = door.indicators
    pipeline.events = door.events
    door.pipeline = pipeline
    if cfg.mqtt.enabled:  # only then is anything of MQTT (paho) imported
        from edge.mqtt import attach

        door.mqtt = attach(cfg, pipeline, source, door.events)
    door.phase = "while reading the camera"
    door.started = time.monotonic()
    log.info(
        "running: %s, %s pipeline, %s pins, events to %s",
        source.description, pipeline.cascade.classifiers, door.indicators.mode,
        "stdout" if cfg.events.output == "-" else cfg.events.output,
    )
    frame_loop(
        source, pipeline, args.max_frames, preview=door.preview, stop=stop,
        on_frame=None if door.mqtt is None else door.mqtt.on_frame,
    )
