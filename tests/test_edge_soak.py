"""Soak: 20,000 frames through the whole door loop must not grow resident memory.

Looping folder source of small frames (a visitor for 3 frames, then an empty doorway for 9),
real BlazeFace, the classifier cascade, tracker, mock GPIO pins and a size-rotated event log:
the same objects `masknet run` builds. Resident memory (RSS, /proc/self/statm) is sampled every
1,000 frames; after the first 1,000 (warm-up: interpreters, allocator pools, caches) it may grow
by less than 5 MB. docs/soak.md records measured runs.

    .venv/bin/pytest -m slow tests/test_edge_soak.py -s          # MASKNET_SOAK_FRAMES=N to change
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from helpers import astronaut, blank, classifier_models, need_detector, write_images

from edge.commands.run import frame_loop
from edge.config import load_config
from edge.events import EventLog
from edge.indicators import Indicators
from edge.pipeline import build_pipeline
from edge.reopening import ReopeningSource
from edge.sources import FolderSource

FRAMES = int(os.environ.get("MASKNET_SOAK_FRAMES", "20000"))
WARMUP = 1000
LIMIT_MB = 5.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc to read resident memory")
def test_soak_20000_frames_resident_memory_stays_flat(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    need_detector()
    models = classifier_models(pytestconfig.cache)
    face = cv2.resize(astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    write_images(tmp_path / "frames", [face] * 3 + [blank(160)] * 9)

    cfg = load_config(overrides={
        "classifier.models_dir": str(models),
        "runtime.threads": 1,
        "tracker.min_score": 0.0,
        "tracker.commit_score": 0.0,  # random tiny models: every verdict commits (mechanics)
        "tracker.min_face_px": 0,  # the 160 px frames hold a 29 px face
        "tracker.stable_frames": 3,
        "tracker.expire_frames": 3,
        "indicators.hold_seconds": 0.0,
        "events.max_bytes": 64 * 1024,
        "events.backups": 2,
    })
    events = EventLog(str(tmp_path / "events.jsonl"), cfg.events.max_bytes, cfg.events.backups)
    indicators = Indicators(replace(cfg.indicators, pins="mock"), echo=None)
    pipeline = build_pipeline(cfg, indicators=indicators, events=events)
    source = ReopeningSource(FolderSource(tmp_path / "frames", loop=True))
    source.open()

    samples: dict[int, float] = {}

    def sample(n: int) -> None:
        if n % 1000 == 0:
            samples[n] = rss_mb()

    started = time.monotonic()
    try:
        frames = frame_loop(source, pipeline, max_frames=FRAMES, on_frame=sample)
    finally:
        source.close()
        events.close()
        indicators.close()
    elapsed = time.monotonic() - started

    after_warmup = samples[WARMUP]
    growth = max(samples.values()) - after_warmup
    print(
        f"\nsoak: {frames} frames in {elapsed:.0f} s ({frames / elapsed:.0f} FPS), "
        f"{pipeline.event_count} events, models {models.name}; RSS at {WARMUP}: {after_warmup:.1f} MB, "
        f"at {frames}: {samples[max(samples)]:.1f} MB, max growth after warm-up {growth:.2f} MB"
    )
    print("RSS MB every 1000 frames: " + " ".join(f"{v:.1f}" for _, v in sorted(samples.items())))
    assert frames == FRAMES
    # one event per visit: each 12-frame cycle commits on its third frame
    assert pipeline.event_count == (FRAMES - 3) // 12 + 1
    assert growth < LIMIT_MB
