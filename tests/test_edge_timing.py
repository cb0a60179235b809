from __future__ import annotations

import time

import pytest

from edge.timing import CAPTURE, CROP, NULL_TIMER, STAGES, StageTimer


def test_stage_names_are_the_benchmark_contract() -> None:
    assert STAGES == (
        "capture", "detector_preprocess", "detector_invoke", "decode_nms", "crop",
        "masknet_invoke", "imasknet_invoke", "tracking", "indicator",
    )


def test_records_durations_and_summarises() -> None:
    timer = StageTimer(capacity=8)
    for _ in range(3):
        t = timer.start()
        time.sleep(0.002)
        timer.stop(CAPTURE, t)
    timer.add(CROP, 5_000_000)
    s = timer.summary()
    assert list(s) == [CAPTURE, CROP]  # only stages that ran, in pipeline order
    assert s[CAPTURE].count == 3
    assert 2.0 <= s[CAPTURE].p50_ms < 50.0
    assert s[CROP].mean_ms == pytest.approx(5.0)
    assert s[CROP].max_ms == pytest.approx(5.0)


def test_ring_buffer_keeps_the_latest_samples_and_counts_all() -> None:
    timer = StageTimer(capacity=4)
    for ms in (100, 1, 1, 1, 1):
        timer.add(CROP, ms * 1_000_000)
    s = timer.summary()[CROP]
    assert s.count == 5
    assert s.max_ms == pytest.approx(1.0)  # the 100 ms sample was overwritten
    assert s.mean_ms == pytest.approx(104 / 5)  # the mean covers every call
    timer.reset()
    assert timer.summary() == {}


def test_chained_stops_cover_consecutive_stages() -> None:
    timer = StageTimer()
    t = timer.start()
    t = timer.stop(CAPTURE, t)
    timer.stop(CROP, t)
    assert timer.count(CAPTURE) == timer.count(CROP) == 1


def test_null_timer_records_nothing() -> None:
    t = NULL_TIMER.start()
    NULL_TIMER.stop(CAPTURE, t)
    assert NULL_TIMER.summary() == {}
