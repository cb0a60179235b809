"""The event log: one JSON line per committed verdict, to stdout or a size-rotated file.

Every line carries an ``id`` unique to this door (the run's UTC start, a random tag, a sequence
number), so that a receiver of the events (the MQTT publisher, at least once) can drop
duplicates, and a restarted door can find where delivery stopped. Listeners (``on_event``) get
each record after it was written; they must not block (they run in the frame loop).

Each line is flushed as it is written: events are rare (one per person per visit) and a power
cut at the door must not lose the ones already reported. Face crops are not saved unless
``events.save_crops`` is on (privacy); then only no_mask / mask_incorrect crops are kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np

from edge.classes import MASK
from edge.errors import ConfigError

log = logging.getLogger("edge.events")


@dataclass(frozen=True)
class Event:
    track_id: int
    class_id: str  # Mask-net class: mask / mask_incorrect / no_mask
    sub_type: str | None  # I-Mask-net class when class_id is mask_incorrect
    score: float
    box: tuple[float, float, float, float]
    frame: int
    latency_ms: float  # frame capture -> verdict committed
    advice: str
    timestamp: float  # wall clock, seconds since the epoch

    def to_dict(self) -> dict[str, object]:
        return {
            "timestamp": datetime.fromtimestamp(self.timestamp, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "track_id": self.track_id,
            "class_id": self.class_id,
            "sub_type": self.sub_type,
            "score": round(float(self.score), 4),
            "box": [round(float(v), 1) for v in self.box],
            "frame": self.frame,
            "latency_ms": round(float(self.latency_ms), 2),
            "advice": self.advice,
        }


class EventLog:
    """Writes events as JSON lines; ``output`` "-" is stdout, anything else a file path."""

    def __init__(
        self,
        output: str = "-",
        max_bytes: int = 1 << 20,
        backups: int = 5,
        save_crops: bool = False,
        crops_dir: str | Path = "crops",
        max_crops: int = 1000,
    ) -> None:
        self.output = output
        self.max_bytes = max_bytes
        self.backups = backups
        self.save_crops = save_crops
        self.crops_dir = Path(crops_dir)
        self.max_crops = max_crops
        self._crops: deque[Path] = deque()
        self.count = 0
        self.dropped = 0
        self._last_warning = -float("inf")
        self._path: Path | None = None if output == "-" else Path(output)
        self._stream: TextIO | None = None
        self._size = 0
        self._run_tag = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"
        self.on_event: list[Callable[[dict[str, object]], None]] = []
        if self._path is not None:
            self._open()
        if save_crops:
            try:
                self.crops_dir.mkdir(parents=True, exist_ok=True)
                # names start with a UTC time stamp: name order is age order, across restarts
                self._crops.extend(sorted(self.crops_dir.glob("*.jpg")))
            except OSError as exc:
                raise ConfigError(
                    f"events.crops_dir: cannot create {self.crops_dir} ({exc.strerror})"
                ) from None

    def _open(self) -> None:
        assert self._path is not None
        try:
            if self._path.parent != Path(""):
                self._path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self._path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"events.output: cannot write {self._path} ({exc.strerror}); "
                "choose a writable file or '-' for stdout"
            ) from None
        self._size = self._stream.tell()

    def _rotate(self) -> None:
        assert self._path is not None and self._stream is not None
        self._stream.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older = self._path.with_name(f"{self._path.name}.{i}")
                if older.exists():
                    os.replace(older, self._path.with_name(f"{self._path.name}.{i + 1}"))
            os.replace(self._path, self._path.with_name(f"{self._path.name}.1"))
        else:
            self._path.unlink(missing_ok=True)
        self._open()

    def write(self, event: Event, crop: np.ndarray | None = None) -> dict[str, object]:
        record: dict[str, object] = {"id": f"{self._run_tag}-{self.count + self.dropped + 1}"}
        record.update(event.to_dict())
        if self.save_crops and crop is not None and event.class_id != MASK:
            record["crop"] = str(self._save_crop(event, crop))
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            self._write_line(line)
        except (OSError, ConfigError) as exc:
            # a full SD card must not stop the lights: count the loss, say so now and then
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning >= 60.0:
                self._last_warning = now
                log.warning("event log %s: cannot write (%s); %d event(s) lost so far", self.output, exc, self.dropped)
            if self._stream is not None:
                with contextlib.suppress(OSError):
                    self._stream.close()
                self._stream = None  # reopened on the next event
        else:
            self.count += 1
        # an event the file could not keep is still handed on (the lights and the broker need it)
        for listener in self.on_event:
            listener(record)
        return record

    def _write_line(self, line: str) -> None:
        if self._path is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        if self._stream is None:
            self._open()
        assert self._stream is not None
        n = len(line.encode("utf-8"))
        if self._size > 0 and self._size + n > self.max_bytes:
            self._rotate()
        self._stream.write(line)
        self._stream.flush()
        self._size += n

    def _save_crop(self, event: Event, crop: np.ndarray) -> Path:
        import cv2

        stamp = datetime.fromtimestamp(event.timestamp, tz=timezone.utc).strftime(
            "%Y%m%dT%H%M%S.%f"
        )
        path = self.crops_dir / f"{stamp}_t{event.track_id}_{event.sub_type or event.class_id}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        self._crops.append(path)
        while len(self._crops) > self.max_crops:
            self._crops.popleft().unlink(missing_ok=True)
        return path

    def flush(self) -> None:
        stream = sys.stdout if self._path is None else self._stream
        if stream is not None:
            stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
            self._stream = None
        elif self._path is None:
            sys.stdout.flush()
