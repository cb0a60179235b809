"""MQTT for many doors: the door publishes (``Publisher``), ``masknet watch`` subscribes.

Imported only when ``[mqtt] enabled = true`` (and by ``masknet watch``): a door without MQTT
never loads paho. ``attach`` wires a publisher to a running door: the event log hands it every
record, and ``DoorFeed.on_frame`` (called by the frame loop after each frame) reports the light
and the people in view, and keeps the frame times apart for while the broker was connected and
while it was not (the proof that an outage never slows the door).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from edge.classes import MASK_INCORRECT, SUBTYPES
from edge.config import Config
from edge.errors import ConfigError
from edge.mqtt.client import door_name, resolve_password, tls_context, topic_prefix
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics

log = logging.getLogger("edge.mqtt")

IDLE = "idle"


class DoorFeed:
    """What the frame loop tells the publisher, and the frame-time record of the run."""

    def __init__(self, publisher: Publisher, pipeline: Any, capacity: int = 100_000) -> None:
        self.publisher = publisher
        self.pipeline = pipeline
        self._last: float | None = None
        # frame period (ms), split by whether the broker was connected when the frame ended
        self._times = {True: np.zeros(capacity), False: np.zeros(capacity)}
        self._n = {True: 0, False: 0}

    def on_frame(self, _frames: int) -> None:
        now = time.perf_counter()
        connected = self.publisher.connected.is_set()
        if self._last is not None:
            n = self._n[connected]
            buf = self._times[connected]
            buf[n % len(buf)] = (now - self._last) * 1000.0
            self._n[connected] = n + 1
        self._last = now
        indicators = self.pipeline.indicators
        light = IDLE if indicators is None else indicators.state
        sub_type = None
        if light in SUBTYPES:
            light, sub_type = MASK_INCORRECT, light
        self.publisher.state(light, sub_type, len(self.pipeline.tracker.tracks))

    def frame_time_p99(self, connected: bool) -> tuple[float, int]:
        n = self._n[connected]
        if n == 0:
            return float("nan"), 0
        return float(np.percentile(self._times[connected][: min(n, len(self._times[connected]))], 99)), n

    def close(self) -> None:
        self.publisher.close()
        on, n_on = self.frame_time_p99(True)
        off, n_off = self.frame_time_p99(False)
        log.info(
            "mqtt: frame time p99 %.1f ms while connected (%d frames), %.1f ms while offline (%d frames)",
            on, n_on, off, n_off,
        )


def attach(cfg: Config, pipeline: Any, source: Any, events: Any) -> DoorFeed:
    """Start publishing this door; returns the feed whose ``on_frame`` the frame loop calls."""
    m = cfg.mqtt
    try:
        import paho.mqtt.client  # noqa: F401 - checked here: the thread imports it later
    except ImportError:
        raise ConfigError(
            "mqtt.enabled: the paho-mqtt package is not installed; run ./install.sh "
            "(or pip install paho-mqtt), or set mqtt.enabled = false"
        ) from None
    password = resolve_password(m)
    tls = tls_context(m)
    door = door_name(m)
    topics = Topics(door, topic_prefix(m, door))

    def health() -> dict[str, int]:
        return {
            "frames": pipeline.frames,
            "camera_reopens": getattr(source, "reopens", 0),
            "events_lost": events.dropped,
        }

    publisher = Publisher(m, topics, cfg.events.output, cfg.events.backups, health, password, tls)
    events.on_event.append(publisher.event)
    publisher.start()
    return DoorFeed(publisher, pipeline)


__all__ = ["DoorFeed", "Publisher", "attach"]
