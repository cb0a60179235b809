from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.classes import MASK, MASK_INCORRECT, MASK_OVER_CHIN, NO_MASK
from edge.errors import ConfigError
from edge.events import Event, EventLog


def event(class_id: str = NO_MASK, track_id: int = 1, sub: str | None = None) -> Event:
    return Event(
        track_id=track_id,
        class_id=class_id,
        sub_type=sub,
        score=0.9731234,
        box=(10.04, 20.0, 110.0, 120.56),
        frame=42,
        latency_ms=12.3456,
        advice="Please put on a mask",
        timestamp=1_790_000_000.5,
    )


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_json_line_per_event_with_every_field(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "events.jsonl"))
    log.write(event(MASK_INCORRECT, sub=MASK_OVER_CHIN))
    log.close()
    (rec,) = read_lines(tmp_path / "events.jsonl")
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}-1", rec.pop("id"))  # run start, tag, sequence
    assert rec == {
        "timestamp": "2026-09-21T14:13:20.500+00:00",
        "track_id": 1,
        "class_id": MASK_INCORRECT,
        "sub_type": MASK_OVER_CHIN,
        "score": 0.9731,
        "box": [10.0, 20.0, 110.0, 120.6],
        "frame": 42,
        "latency_ms": 12.35,
        "advice": "Please put on a mask",
    }


def test_stdout_output(capsys: pytest.CaptureFixture[str]) -> None:
    log = EventLog("-")
    log.write(event())
    log.close()
    assert json.loads(capsys.readouterr().out)["class_id"] == NO_MASK


def test_size_based_rotation_keeps_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path), max_bytes=1024, backups=2)
    for i in range(40):
        log.write(event(track_id=i))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 1024
    # newest events in the live file, the one before in .1, nothing lost between them
    live, older = read_lines(path), read_lines(tmp_path / "events.jsonl.1")
    assert live[-1]["track_id"] == 39
    assert older[-1]["track_id"] + 1 == live[0]["track_id"]


def test_appends_to_an_existing_log_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for i in range(2):
        log = EventLog(str(path))
        log.write(event(track_id=i))
        log.close()
    assert [r["track_id"] for r in read_lines(path)] == [0, 1]


def test_crops_are_not_saved_by_default(tmp_path: Path) -> None:
    crop = np.zeros((224, 224, 3), np.uint8)
    log = EventLog(str(tmp_path / "e.jsonl"), crops_dir=tmp_path / "crops")
    rec = log.write(event(), crop)
    log.close()
    assert "crop" not in rec
    assert not (tmp_path / "crops").exists()


def test_saved_crops_only_for_no_mask_and_incorrect(tmp_path: Path) -> None:
    crop = np.full((224, 224, 3), 128, np.uint8)
    log = EventLog(str(tmp_path / "e.jsonl"), save_crops=True, crops_dir=tmp_path / "crops")
    with_crop = log.write(event(NO_MASK), crop)
    without = log.write(event(MASK, track_id=2), crop)
    log.close()
    assert Path(with_crop["crop"]).is_file()
    assert "crop" not in without
    assert len(list((tmp_path / "crops").iterdir())) == 1


def test_unwritable_event_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match="events.output: cannot write"):
        EventLog(str(tmp_path / "blocker" / "events.jsonl"))


def test_saved_crops_are_capped_oldest_first(tmp_path: Path) -> None:
    crop = np.full((32, 32, 3), 128, np.uint8)
    crops = tmp_path / "crops"
    log = EventLog(str(tmp_path / "e.jsonl"), save_crops=True, crops_dir=crops, max_crops=3)
    paths = [Path(log.write(replace(event(), timestamp=1_790_000_000.0 + i), crop)["crop"]) for i in range(5)]
    log.close()
    assert sorted(crops.iterdir()) == paths[2:]
    # a restart counts the crops already there
    log = EventLog(str(tmp_path / "e.jsonl"), save_crops=True, crops_dir=crops, max_crops=3)
    newest = Path(log.write(replace(event(), timestamp=1_790_000_100.0), crop)["crop"])
    log.close()
    assert sorted(crops.iterdir()) == [*paths[3:], newest]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
def test_a_full_disk_loses_events_with_a_warning_but_does_not_stop_the_run(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog("/dev/full")
    with caplog.at_level("WARNING", logger="edge.events"):
        log.write(event())
        log.write(event(track_id=2))
    assert log.dropped == 2 and log.count == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # rate-limited
    assert "event log /dev/full: cannot write" in warnings[0]


def test_event_ids_are_unique_in_order_and_listeners_get_every_record(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "events.jsonl"))
    heard: list[dict[str, object]] = []
    log.on_event.append(heard.append)
    for i in range(3):
        log.write(event(track_id=i + 1))
    log.close()
    lines = read_lines(tmp_path / "events.jsonl")
    assert heard == lines
    ids = [rec["id"] for rec in lines]
    assert [i.rsplit("-", 1)[1] for i in ids] == ["1", "2", "3"]
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 1  # one run
