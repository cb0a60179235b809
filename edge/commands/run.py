"""``masknet run``: the door monitor. camera -> faces -> verdict -> LEDs, buzzer and event log.

Exit status: 0 when the source ended, --max-frames was reached or SIGTERM/SIGINT stopped it;
2 for a configuration, model or GPIO problem; 3 when the camera failed for good (systemd
restarts the service). Every problem a user can cause is reported as one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from edge.config import load_config, secret_warnings

log = logging.getLogger("edge.run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: the documented defaults)")
    parser.add_argument(
        "--source",
        metavar="SRC",
        help="auto, picamera, a webcam index, a video file, an rtsp:// or http:// URL, or a folder of images",
    )
    parser.add_argument("--loop", action="store_true", default=None, help="start a folder or video file again at its end")
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
        "indicators.pins": args.pins,
        "events.output": args.events,
        "runtime.threads": args.threads,
        "classifier.models_dir": args.models,
        "preview.enabled": args.preview,
    }
    return {k: v for k, v in pairs.items() if v is not None}


class _Stop:
    """SIGTERM/SIGINT ask the frame loop to stop after the current frame; a second one forces it."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("masknet run: %(levelname)s: %(message)s"))
    root = logging.getLogger("edge")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def frame_loop(
    source: Any,
    pipeline: Any,
    max_frames: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    preview: Any = None,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Read and process frames until the source ends, ``max_frames`` or ``should_stop()``.

    Returns the number of frames processed. ``on_frame(n)`` is called after frame n (soak tests
    sample memory there).
    """
    from edge.timing import CAPTURE

    timer = pipeline.timer
    frames = 0
    while not should_stop() and (max_frames is None or frames < max_frames):
        t = timer.start()
        frame = source.read()
        if frame is None:
            break
        timer.stop(CAPTURE, t)
        results = pipeline.process(frame)
        frames += 1
        if preview is not None and not preview.update(frame, results):
            break
        if on_frame is not None:
            on_frame(frames)
    return frames


def _summary(outcome: str, source: Any, pipeline: Any, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    log.info(
        "%s: %d frames in %.1f s (%.1f FPS), %d events, %d camera reopens",
        outcome, pipeline.frames, elapsed, pipeline.frames / elapsed, pipeline.event_count, source.reopens,
    )
    stages = ", ".join(f"{name} {st.mean_ms:.1f}" for name, st in pipeline.timer.summary().items())
    if stages:
        log.info("mean ms per call: %s", stages)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, _overrides(args))
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return 0
    if args.max_frames is not None and args.max_frames < 1:
        from edge.errors import ConfigError

        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    _setup_logging()
    for line in secret_warnings(cfg, args.config):
        log.warning("%s", line)

    from edge.indicators import Indicators

    if args.test_outputs:
        with Indicators(cfg.indicators) as ind:
            log.info("outputs on %s pins", ind.mode)
            ind.test_outputs()
        return 0

    from edge.events import EventLog
    from edge.pipeline import Pipeline, build_pipeline, load_models
    from edge.preview import Preview
    from edge.sources import ReopeningSource, make_source
    from edge.timing import StageTimer

    # models first: a broken model is reported before any pin or camera is touched
    timer = StageTimer(capacity=256)
    models = load_models(cfg, timer)
    stop = _Stop()
    indicators = source = events = preview = mqtt = None
    pipeline: Pipeline | None = None
    outcome = "stopped by an error"
    started = time.monotonic()
    try:
        indicators = Indicators(cfg.indicators)
        source = ReopeningSource(
            make_source(cfg.camera.source, cfg.camera),
            max_failures=cfg.camera.max_failures,
            backoff_s=cfg.camera.reopen_backoff_s,
            backoff_max_s=cfg.camera.reopen_backoff_max_s,
        )
        source.open()
        events = EventLog(
            cfg.events.output, cfg.events.max_bytes, cfg.events.backups, cfg.events.save_crops,
            cfg.events.crops_dir, cfg.events.max_crops,
        )
        preview = Preview(cfg.preview) if cfg.preview.enabled else None
        pipeline = build_pipeline(cfg, indicators, events, timer, models)
        if cfg.mqtt.enabled:  # only then is anything of MQTT (paho) imported
            from edge.mqtt import attach

            mqtt = attach(cfg, pipeline, source, events)
        log.info(
            "running: %s, %s pipeline, %s pins, events to %s",
            source.description, pipeline.cascade.classifiers, indicators.mode,
            "stdout" if cfg.events.output == "-" else cfg.events.output,
        )
        stop.install()
        frame_loop(
            source, pipeline, args.max_frames, lambda: stop.signal is not None, preview,
            on_frame=None if mqtt is None else mqtt.on_frame,
        )
        outcome = {signal.SIGTERM: "stopped by SIGTERM", signal.SIGINT: "stopped by SIGINT"}.get(
            stop.signal, "done"  # type: ignore[arg-type]
        )
    finally:
        stop.restore()
        # outputs off first: whatever went wrong, the door must not stay red
        for closer in (indicators, source, events, preview, mqtt):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # keep closing the rest
                    log.warning("while shutting down: %s", exc)
        if pipeline is not None and pipeline.frames:
            _summary(outcome, source, pipeline, started)
    return 130 if stop.signal == signal.SIGINT else 0
