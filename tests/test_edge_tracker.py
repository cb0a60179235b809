from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge.boxes import iou_matrix
from edge.classes import (
    MASK,
    MASK_INCORRECT,
    MASK_OVER_CHIN,
    MASK_OVER_NOSE_MOUTH,
    NO_MASK,
    Verdict,
)
from edge.config import load_config
from edge.tracker import Tracker

BOX = (100.0, 100.0, 200.0, 200.0)
OTHER = (400.0, 100.0, 500.0, 200.0)
FPS = 10.0


def tracker(**changes: object) -> Tracker:
    cfg = replace(
        load_config().tracker,
        **{"stable_frames": 3, "stable_seconds": 10.0, "change_frames": 5, "expire_frames": 4,
           "expire_seconds": 100.0, "min_score": 0.5, **changes},
    )
    return Tracker(cfg)


def v(class_id: str, score: float = 0.9, sub: str | None = None) -> Verdict:
    return Verdict(class_id, score, sub, 0.8 if sub else None)


class Door:
    """Feeds a tracker one frame at a time at FPS and collects what it decided."""

    def __init__(self, tr: Tracker) -> None:
        self.tr = tr
        self.frame = 0
        self.events: list[tuple[int, str]] = []

    def step(self, *faces: tuple[tuple[float, ...], Verdict | None]):
        self.frame += 1
        ups = self.tr.update([f[0] for f in faces], [f[1] for f in faces], self.frame, self.frame / FPS)
        for u in ups:
            if u.new_event:
                self.events.append((u.track.id, u.track.committed.label))
        return ups

    def committed(self, index: int = 0) -> str | None:
        live = sorted(self.tr.tracks, key=lambda t: t.id)
        c = live[index].committed
        return None if c is None else c.label


def test_iou_matrix_hand_computed() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0, 1.0]], rtol=1e-6)
    assert iou_matrix(a, np.zeros((0, 4), np.float32)).shape == (1, 0)


def test_verdict_committed_after_n_stable_frames_with_one_event() -> None:
    door = Door(tracker())
    door.step((BOX, v(NO_MASK)))
    door.step((BOX, v(NO_MASK)))
    assert door.committed() is None and door.events == []
    ups = door.step((BOX, v(NO_MASK)))
    assert ups[0].new_event and ups[0].changed
    assert door.committed() == NO_MASK
    for _ in range(20):
        door.step((BOX, v(NO_MASK)))
    assert door.events == [(1, NO_MASK)]


def test_stable_seconds_commits_at_a_low_frame_rate() -> None:
    tr = tracker(stable_frames=10, stable_seconds=1.0)
    assert not tr.update([BOX], [v(MASK)], 1, 0.0)[0].new_event
    assert not tr.update([BOX], [v(MASK)], 2, 0.5)[0].new_event
    assert tr.update([BOX], [v(MASK)], 3, 1.2)[0].new_event


def test_a_wobbling_classifier_commits_nothing() -> None:
    door = Door(tracker())
    for i in range(30):
        door.step((BOX, v(MASK if i % 2 else NO_MASK)))
    assert door.events == [] and door.committed() is None


def test_hysteresis_keeps_the_light_until_the_new_class_is_sustained() -> None:
    door = Door(tracker(stable_frames=3, change_frames=5))
    for _ in range(3):
        door.step((BOX, v(NO_MASK)))
    assert door.committed() == NO_MASK
    # short glitches of another class do not move the committed verdict
    for _ in range(3):
        for _ in range(4):
            door.step((BOX, v(MASK)))
        door.step((BOX, v(NO_MASK)))
    assert door.committed() == NO_MASK
    # the person puts the mask on and keeps it on
    changed = [door.step((BOX, v(MASK)))[0].changed for _ in range(5)]
    assert changed == [False, False, False, False, True]
    assert door.committed() == MASK
    assert door.events == [(1, NO_MASK)]  # still one event for this visit


def test_low_scores_neither_count_nor_break_a_streak() -> None:
    door = Door(tracker(min_score=0.6))
    door.step((BOX, v(MASK, 0.9)))
    door.step((BOX, v(NO_MASK, 0.4)))  # unsure: ignored
    door.step((BOX, v(MASK, 0.9)))
    assert door.committed() is None
    door.step((BOX, v(MASK, 0.9)))
    assert door.committed() == MASK


def test_sub_type_is_the_most_frequent_of_the_streak() -> None:
    door = Door(tracker())
    door.step((BOX, v(MASK_INCORRECT, 0.9, MASK_OVER_CHIN)))
    door.step((BOX, v(MASK_INCORRECT, 0.7, MASK_OVER_NOSE_MOUTH)))
    door.step((BOX, v(MASK_INCORRECT, 0.8, MASK_OVER_CHIN)))
    committed = door.tr.tracks[0].committed
    assert committed.class_id == MASK_INCORRECT and committed.sub_type == MASK_OVER_CHIN
    assert committed.score == pytest.approx(0.8)
    assert committed.advice == "Pull the mask up over your mouth and nose"


def test_a_person_who_leaves_and_returns_is_a_new_visit() -> None:
    door = Door(tracker(expire_frames=4))
    for _ in range(3):
        door.step((BOX, v(MASK)))
    for _ in range(3):
        door.step()
    assert len(door.tr.tracks) == 1  # a brief miss (a blink of the detector) keeps the track
    door.step((BOX, v(MASK)))
    assert door.tr.tracks[0].id == 1
    for _ in range(4):
        door.step()
    assert door.tr.tracks == []  # gone
    for _ in range(3):
        door.step((BOX, v(MASK)))
    assert door.events == [(1, MASK), (2, MASK)]


def test_expiry_by_time_at_a_low_frame_rate() -> None:
    tr = tracker(expire_frames=100, expire_seconds=2.0)
    tr.update([BOX], [v(MASK)], 1, 0.0)
    tr.update([], [], 2, 1.0)
    assert len(tr.tracks) == 1
    tr.update([], [], 3, 2.5)
    assert tr.tracks == []


def test_two_people_are_tracked_and_reported_separately() -> None:
    door = Door(tracker())
    for i in range(4):
        # the detector's order of the two faces changes between frames
        faces = [(BOX, v(MASK)), (OTHER, v(NO_MASK))]
        door.step(*(faces if i % 2 else faces[::-1]))
    assert sorted(label for _, label in door.events) == [MASK, NO_MASK]
    assert len(door.tr.tracks) == 2


def test_a_moving_face_keeps_its_track() -> None:
    door = Door(tracker())
    for i in range(6):
        x = 100.0 + 12 * i  # walking towards the door: IoU with the last box stays high
        door.step(((x, 100.0, x + 100, 200.0), v(NO_MASK)))
    assert [t.id for t in door.tr.tracks] == [1]
    assert door.events == [(1, NO_MASK)]


def test_classification_order_puts_new_faces_first_then_the_least_recently_classified() -> None:
    from edge.tracker import Track, classification_order

    def track(last: int) -> Track:
        return Track(id=last, box=BOX, first_seen=0.0, last_seen=0.0, last_frame=0, classified_frame=last)

    assigned = [track(7), None, track(3), track(5), None]
    assert classification_order(assigned, None) == [0, 1, 2, 3, 4]
    assert classification_order(assigned, 9) == [0, 1, 2, 3, 4]
    assert classification_order(assigned, 2) == [1, 4]  # both new faces, in detector order
    assert classification_order(assigned, 3) == [1, 2, 4]  # then the one classified longest ago
    assert classification_order(assigned, 4) == [1, 2, 3, 4]
    assert classification_order([], 2) == []


SMALL = (100.0, 100.0, 180.0, 180.0)  # 80 px wide (BOX: 100): the same person, further away


def test_faces_under_min_face_px_neither_count_nor_break_a_streak() -> None:
    door = Door(tracker(min_face_px=90))
    ups = [door.step((SMALL, v(MASK)))[0] for _ in range(5)]
    assert all(u.too_far for u in ups)
    assert door.committed() is None and door.events == []  # far away: no verdict at all
    door.step((BOX, v(NO_MASK)))
    door.step((SMALL, v(MASK)))  # far again for a frame: ignored, the streak of large frames goes on
    door.step((BOX, v(NO_MASK)))
    assert door.committed() is None
    up = door.step((BOX, v(NO_MASK)))[0]
    assert not up.too_far and door.committed() == NO_MASK  # committed from the large frames only


def test_an_unsure_streak_is_not_committed() -> None:
    door = Door(tracker(min_score=0.5, commit_score=0.7))
    for _ in range(6):
        door.step((BOX, v(MASK, 0.6)))  # counted (above min_score) but too unsure to commit
    assert door.committed() is None and door.events == []
    door2 = Door(tracker(min_score=0.5, commit_score=0.7))
    for _ in range(3):
        door2.step((BOX, v(MASK, 0.75)))
    assert door2.committed() == MASK
