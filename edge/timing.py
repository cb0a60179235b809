"""A cheap per-stage timer for the frame loop.

The pipeline brackets each stage with ``t0 = timer.start()`` / ``timer.stop(STAGE, t0)``: two
``perf_counter_ns`` calls and a write into a preallocated ring buffer, no allocation per frame.
``NULL_TIMER`` makes both calls no-ops for runs that do not report timings. ``masknet bench``
reads ``summary()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

CAPTURE = "capture"
DETECTOR_PREPROCESS = "detector_preprocess"
DETECTOR_INVOKE = "detector_invoke"
DECODE_NMS = "decode_nms"
CROP = "crop"
MASKNET_INVOKE = "masknet_invoke"
IMASKNET_INVOKE = "imasknet_invoke"
TRACKING = "tracking"
INDICATOR = "indicator"

STAGES: tuple[str, ...] = (
    CAPTURE,
    DETECTOR_PREPROCESS,
    DETECTOR_INVOKE,
    DECODE_NMS,
    CROP,
    MASKNET_INVOKE,
    IMASKNET_INVOKE,
    TRACKING,
    INDICATOR,
)


@dataclass(frozen=True)
class StageStats:
    """Statistics of one stage over the samples kept (the last ``capacity`` calls)."""

    stage: str
    count: int  # calls since the last reset (may exceed the samples kept)
    total_ms: float  # over all calls since the last reset
    mean_ms: float  # over all calls since the last reset
    p50_ms: float
    p95_ms: float
    max_ms: float


class StageTimer:
    """Durations per named stage; the last ``capacity`` samples of each kept for percentiles."""

    def __init__(self, stages: tuple[str, ...] = STAGES, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.stages = tuple(stages)
        self.capacity = capacity
        self._index = {name: i for i, name in enumerate(self.stages)}
        self._samples = np.zeros((len(self.stages), capacity), dtype=np.int64)
        self._count = [0] * len(self.stages)
        self._total = [0] * len(self.stages)

    @staticmethod
    def start() -> int:
        return time.perf_counter_ns()

    def stop(self, stage: str, t0: int) -> int:
        """Record the time since ``t0`` under ``stage``; returns the current time (ns) so that
        consecutive stages can chain: ``t = timer.stop(A, t)``."""
        now = time.perf_counter_ns()
        self.add(stage, now - t0)
        return now

    def add(self, stage: str, duration_ns: int) -> None:
        """Record a duration measured elsewhere."""
        i = self._index[stage]
        n = self._count[i]
        self._samples[i, n % self.capacity] = duration_ns
        self._count[i] = n + 1
        self._total[i] += duration_ns

    def reset(self) -> None:
        """Forget everything recorded (e.g. after warm-up frames)."""
        self._samples[:] = 0
        self._count = [0] * len(self.stages)
        self._total = [0] * len(self.stages)

    def count(self, stage: str) -> int:
        return self._count[self._index[stage]]

    def samples_ms(self, stage: str) -> np.ndarray:
        """The kept samples of ``stage`` in milliseconds (oldest order not preserved)."""
        i = self._index[stage]
        n = min(self._count[i], self.capacity)
        return self._samples[i, :n].astype(np.float64) / 1e6

    def summary(self) -> dict[str, StageStats]:
        """Stats of every stage that was recorded at least once, in pipeline order."""
        out: dict[str, StageStats] = {}
        for name in self.stages:
            i = self._index[name]
            if self._count[i] == 0:
                continue
            ms = self.samples_ms(name)
            out[name] = StageStats(
                stage=name,
                count=self._count[i],
                total_ms=self._total[i] / 1e6,
                mean_ms=self._total[i] / 1e6 / self._count[i],
                p50_ms=float(np.percentile(ms, 50)),
                p95_ms=float(np.percentile(ms, 95)),
                max_ms=float(ms.max()),
            )
        return out


class NullTimer(StageTimer):
    """A timer that records nothing (the default for ``masknet run``)."""

    def __init__(self) -> None:
        super().__init__(stages=STAGES, capacity=1)

    @staticmethod
    def start() -> int:
        return 0

    def stop(self, stage: str, t0: int) -> int:
        return 0

    def add(self, stage: str, duration_ns: int) -> None:
        return None


NULL_TIMER = NullTimer()
