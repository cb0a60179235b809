"""Faces across frames: IoU association, stable verdicts with hysteresis, one event per visit.

A person standing at the door is seen on many frames and the classifier's answer on single
frames wobbles (motion blur, a hand at the face). The tracker turns per-frame verdicts into a
committed verdict per person:

* a detection joins the live track whose last box overlaps it most (greedy IoU matching);
* the first verdict is committed once the same Mask-net class has been seen ``stable_frames``
  frames in a row, or has held ``stable_seconds`` over at least two frames;
* a committed verdict is only replaced after ``change_frames`` frames in a row of another class
  (hysteresis: the lights do not flicker between two answers);
* verdicts scoring below ``min_score`` neither count towards nor break a streak;
* a face narrower than ``min_face_px`` (the person is still far from the door) gets no verdict:
  its frames neither count towards nor break a streak (``TrackUpdate.too_far``), so a verdict is
  made from the frames where the face is large, not from the first frames of a walk-up;
* a streak whose mean score is below ``commit_score`` is not committed (too unsure to judge);
* the first commit of a track is ``TrackUpdate.new_event``; it and every later change are
  ``TrackUpdate.changed`` (with ``previous``, the verdict it replaced): the pipeline logs an event
  for each, so the event file tells what the lights told;
* a track unseen for ``expire_frames`` frames or ``expire_seconds`` seconds has left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.boxes import iou_matrix
from edge.classes import Verdict
from edge.config import TrackerConfig


@dataclass
class Track:
    id: int
    box: tuple[float, float, float, float]
    first_seen: float
    last_seen: float
    last_frame: int
    hits: int = 1
    missed: int = 0
    committed: Verdict | None = None
    committed_at: float | None = None
    # the current streak of one Mask-net class
    streak_class: str | None = None
    streak_len: int = 0
    streak_since: float = 0.0
    streak_score_sum: float = 0.0
    streak_subtypes: dict[str, int] = field(default_factory=dict)
    streak_last: Verdict | None = None
    event_sent: bool = False
    # the classifier's last answer for this face and the frame it came from (a frame over the
    # classification budget carries it instead of classifying again)
    last_verdict: Verdict | None = None
    classified_frame: int = -1


@dataclass(frozen=True)
class TrackUpdate:
    """What happened to one detection on this frame."""

    track: Track
    index: int  # index of the detection in the frame's list
    verdict: Verdict | None  # this frame's verdict (None when not classified)
    new_event: bool  # the track committed its first verdict on this frame
    changed: bool  # the committed verdict changed on this frame (first commit included)
    previous: Verdict | None = None  # the committed verdict this frame's change replaced
    too_far: bool = False  # the face was narrower than min_face_px: its verdict was not used


class Tracker:
    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()

    def match(self, boxes: Sequence[tuple[float, float, float, float]]) -> list[Track | None]:
        """The live track each detection continues (None: a new face), without changing anything."""
        assigned: list[Track | None] = [None] * len(boxes)
        if self.tracks and boxes:
            ious = iou_matrix(
                np.asarray([tr.box for tr in self.tracks], dtype=np.float32),
                np.asarray(boxes, dtype=np.float32),
            )
            used_tracks: set[int] = set()
            # greedy: best overlaps first; a handful of faces at a door needs nothing smarter
            order = np.argsort(ious, axis=None)[::-1]
            for flat in order:
                ti, di = divmod(int(flat), ious.shape[1])
                if ious[ti, di] < self.config.iou_threshold:
                    break
                if ti in used_tracks or assigned[di] is not None:
                    continue
                used_tracks.add(ti)
                assigned[di] = self.tracks[ti]
        return assigned

    def update(
        self,
        boxes: Sequence[tuple[float, float, float, float]],
        verdicts: Sequence[Verdict | None],
        frame: int,
        t: float,
        assigned: Sequence[Track | None] | None = None,
    ) -> list[TrackUpdate]:
        """Associate this frame's detections, advance each track's decision, expire the gone.

        ``boxes[i]`` and ``verdicts[i]`` describe detection i (verdict None: not classified on
        this frame). ``assigned`` is ``match(boxes)`` when the caller already has it. Returns one
        update per detection, in detection order.
        """
        if assigned is None:
            assigned = self.match(boxes)
        cfg = self.config
        updates: list[TrackUpdate] = []
        seen: set[int] = set()
        for i, box in enumerate(boxes):
            tr = assigned[i]
            if tr is None:
                tr = Track(id=self._next_id, box=tuple(box), first_seen=t, last_seen=t, last_frame=frame)
                self._next_id += 1
                self.tracks.append(tr)
            else:
                tr.box = tuple(box)
                tr.last_seen = t
                tr.last_frame = frame
                tr.hits += 1
                tr.missed = 0
            seen.add(tr.id)
            if verdicts[i] is not None:
                tr.last_verdict = verdicts[i]
                tr.classified_frame = frame
            too_far = max(box[2] - box[0], box[3] - box[1]) < cfg.min_face_px
            previous = tr.committed
            new_event, changed = self._decide(tr, None if too_far else verdicts[i], t)
            updates.append(TrackUpdate(tr, i, verdicts[i], new_event, changed, previous if changed else None, too_far))

        kept: list[Track] = []
        for tr in self.tracks:
            if tr.id not in seen:
                tr.missed += 1
                if tr.missed >= cfg.expire_frames or t - tr.last_seen >= cfg.expire_seconds:
                    continue
            kept.append(tr)
        self.tracks = kept
        return updates

    def _decide(self, tr: Track, v: Verdict | None, t: float) -> tuple[bool, bool]:
        cfg = self.config
        if v is None or v.score < cfg.min_score:
            return False, False
        if v.class_id == tr.streak_class:
            tr.streak_len += 1
            tr.streak_score_sum += v.score
        else:
            tr.streak_class = v.class_id
            tr.streak_len = 1
            tr.streak_since = t
            tr.streak_score_sum = v.score
            tr.streak_subtypes.clear()
        if v.sub_type is not None:
            tr.streak_subtypes[v.sub_type] = tr.streak_subtypes.get(v.sub_type, 0) + 1
        tr.streak_last = v

        if tr.committed is None:
            stable = tr.streak_len >= cfg.stable_frames or (
                tr.streak_len >= 2 and t - tr.streak_since >= cfg.stable_seconds
            )
        elif tr.committed.class_id != tr.streak_class:
            stable = tr.streak_len >= cfg.change_frames
        else:
            # same class as committed: only a change of sub-type needs refreshing
            stable = tr.streak_len >= cfg.change_frames and (
                self._streak_verdict(tr).sub_type != tr.committed.sub_type
            )
        if not stable or tr.streak_score_sum / tr.streak_len < cfg.commit_score:
            return False, False
        first = tr.committed is None
        tr.committed = self._streak_verdict(tr)
        tr.committed_at = t
        new_event = first and not tr.event_sent
        if new_event:
            tr.event_sent = True
        return new_event, True

    @staticmethod
    def _streak_verdict(tr: Track) -> Verdict:
        """The streak as one verdict: its class, mean score and most frequent sub-type."""
        last = tr.streak_last
        assert last is not None
        sub = max(tr.streak_subtypes, key=tr.streak_subtypes.__getitem__) if tr.streak_subtypes else None
        if sub == last.sub_type and tr.streak_len == 1:
            return last
        return last.with_summary(score=tr.streak_score_sum / tr.streak_len, sub_type=sub)


def classification_order(assigned: Sequence[Track | None], budget: int | None) -> list[int]:
    """Which detections to classify on this frame when at most ``budget`` may be (None: all).

    New faces first (nobody may wait for a first verdict behind people already judged), then the
    tracks classified least recently; ties keep the detector's order (best score first). The rest
    carry their last verdict to the next frame.
    """
    indices = range(len(assigned))
    if budget is None or budget >= len(assigned):
        return list(indices)

    def priority(i: int) -> tuple[int, int]:
        tr = assigned[i]
        return (-1, i) if tr is None else (tr.classified_frame, i)

    return sorted(sorted(indices, key=priority)[:budget])
