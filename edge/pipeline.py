"""One frame through the door: detect faces, classify each, track, decide, drive the outputs.

``Pipeline.process(frame)`` is the whole per-frame step, callable on any RGB frame, so that
``masknet bench`` times exactly what ``masknet run`` does. Every stage is bracketed by the
StageTimer (a no-op unless a real timer is passed in). ``build_pipeline(cfg, ...)`` assembles
it from the run config: both commands build it that way.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.cascade import Cascade
from edge.classes import SEVERITY, Verdict
from edge.config import Config
from edge.detector import Face, FaceDetector
from edge.events import Event, EventLog
from edge.indicators import Indicators
from edge.manifest import Manifest, load_manifest
from edge.paths import configured_models_dir
from edge.regions import detector_from_config
from edge.sources import Frame
from edge.timing import (
    DECODE_NMS,
    DETECTOR_INVOKE,
    DETECTOR_PREPROCESS,
    INDICATOR,
    NULL_TIMER,
    TRACKING,
    StageTimer,
)
from edge.tracker import Tracker, classification_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """One face on one frame."""

    face: Face  # as detected, in pixels of the detection image
    box: tuple[float, float, float, float]  # in pixels of the image the crop came from
    verdict: Verdict | None  # the classifier's latest answer for this face (None: not classified yet)
    track_id: int
    committed: Verdict | None  # the track's committed verdict after this frame
    new_event: bool  # this frame committed a verdict for the track, its first or a change (an event was logged)
    classified: bool = True  # False: over classifier.max_faces_per_frame, ``verdict`` is carried
    too_far: bool = False  # narrower than tracker.min_face_px: no verdict from this frame


class Pipeline:
    """The per-frame step. The cascade is built with the same ``timer`` (``build_pipeline`` does)."""

    def __init__(
        self,
        detector: FaceDetector,
        cascade: Cascade,
        tracker: Tracker,
        indicators: Indicators | None = None,
        events: EventLog | None = None,
        timer: StageTimer = NULL_TIMER,
        hold_seconds: float = 1.0,
        max_faces: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._detector = detector
        # a detector that exposes its three steps is timed step by step; any other as one invoke
        self._steps = all(callable(getattr(detector, m, None)) for m in ("preprocess", "invoke", "postprocess"))
        # a detector over regions (edge.regions) cuts its far-pass tiles from the full frame
        step = getattr(detector, "preprocess" if self._steps else "detect", None)
        self._full = step is not None and "full" in inspect.signature(step).parameters
        self.cascade = cascade
        self.tracker = tracker
        self.indicators = indicators
        self.events = events
        self.timer = timer
        self.hold_seconds = hold_seconds
        self.max_faces = max_faces  # faces classified per frame (None: every face)
        self.clock = clock
        self.wall_clock = wall_clock
        self.frames = 0
        self.event_count = 0
        self.faces_seen = 0
        self.faces_classified = 0
        self._last_display = -float("inf")
        self._too_far_logged: set[int] = set()  # tracks whose "too far" line was logged (once each)

    @property
    def detector(self) -> FaceDetector:
        return self._detector

    def detect(self, image: np.ndarray, full: np.ndarray | None = None) -> list[Face]:
        """Faces in ``image``; ``full`` is the same instant at full resolution, when there is one."""
        timer = self.timer
        extra = {"full": full} if self._full and full is not None else {}
        if self._steps:
            t = timer.start()
            prepared = self._detector.preprocess(image, **extra)  # type: ignore[attr-defined]
            t = timer.stop(DETECTOR_PREPROCESS, t)
            raw = self._detector.invoke(prepared)  # type: ignore[attr-defined]
            t = timer.stop(DETECTOR_INVOKE, t)
            faces = self._detector.postprocess(raw, prepared)  # type: ignore[attr-defined]
            timer.stop(DECODE_NMS, t)
            return faces
        t = timer.start()
        faces = self._detector.detect(image, **extra)
        timer.stop(DETECTOR_INVOKE, t)
        return faces

    def process(self, frame: Frame | np.ndarray, t: float | None = None) -> list[FaceResult]:
        """Run one frame; returns one result per detected face (best detector score first)."""
        if isinstance(frame, np.ndarray):
            frame = Frame(image=frame, timestamp=self.clock() if t is None else t, number=self.frames + 1)
        self.frames += 1
        number = frame.number or self.frames
        now = frame.timestamp if t is None else t
        timer = self.timer

        faces = self.detect(frame.image, frame.full)
        crop_image = frame.crop_image
        sx = crop_image.shape[1] / frame.image.shape[1]
        sy = crop_image.shape[0] / frame.image.shape[0]
        scaled = sx != 1.0 or sy != 1.0
        if scaled:
            box_scale = np.array([sx, sy, sx, sy], np.float32)
            kp_scale = box_scale[:2]
        boxes: list[tuple[float, float, float, float]] = []
        keypoints: list[np.ndarray] = []
        for face in faces:
            box, kps = face.box, face.keypoints
            if scaled:
                box = box * box_scale
                kps = kps * kp_scale
            boxes.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))
            keypoints.append(kps)

        t0 = timer.start()
        assigned = self.tracker.match(boxes)
        matching_ns = timer.start() - t0  # one TRACKING sample per frame: matching + update
        verdicts: list[Verdict | None] = [None] * len(faces)
        crops: list[np.ndarray | None] = [None] * len(faces)
        chosen = classification_order(assigned, self.max_faces)
        self.faces_seen += len(faces)
        self.faces_classified += len(chosen)
        for i in chosen:
            # the event log decides whether a crop is saved (events.save_crops)
            verdicts[i], crops[i] = self.cascade.classify(crop_image, np.asarray(boxes[i], np.float32), keypoints[i])

        t0 = timer.start()
        updates = self.tracker.update(boxes, verdicts, number, now, assigned)
        timer.add(TRACKING, timer.start() - t0 + matching_ns)

        results: list[FaceResult] = []
        for u, face in zip(updates, faces, strict=True):
            if u.changed:
                self._log_event(
                    u.track.id, u.track.committed, boxes[u.index], number, frame.read_at, crops[u.index], u.previous
                )
            if u.too_far and u.track.id not in self._too_far_logged:
                self._too_far_logged.add(u.track.id)
                box = boxes[u.index]
                log.info("track %d: face %.0f px wide is under tracker.min_face_px %.0f: too far, no verdict",
                         u.track.id, max(box[2] - box[0], box[3] - box[1]), self.tracker.config.min_face_px)
            results.append(
                FaceResult(
                    face, boxes[u.index], u.track.last_verdict, u.track.id, u.track.committed, u.changed,
                    classified=verdicts[u.index] is not None, too_far=u.too_far,
                )
            )

        if self.indicators is not None:
            t0 = timer.start()
            self._drive_indicators(updates, now)
            timer.stop(INDICATOR, t0)
        return results

    def _log_event(
        self,
        track_id: int,
        verdict: Verdict | None,
        box: tuple[float, float, float, float],
        number: int,
        captured: float,
        crop: np.ndarray | None,
        previous: Verdict | None = None,
    ) -> None:
        assert verdict is not None
        self.event_count += 1
        if self.events is None:
            return
        event = Event(
            track_id=track_id,
            class_id=verdict.class_id,
            sub_type=verdict.sub_type,
            score=verdict.score,
            box=box,
            frame=number,
            latency_ms=(self.clock() - captured) * 1000.0,
            advice=verdict.advice,
            timestamp=self.wall_clock(),
            previous_class_id=previous.class_id if previous is not None else None,
            previous_sub_type=previous.sub_type if previous is not None else None,
        )
        self.events.write(event, crop)

    def _drive_indicators(self, updates: list, now: float) -> None:
        ind = self.indicators
        assert ind is not None
        shown: Verdict | None = None
        for tr in self.tracker.tracks:
            v = tr.committed
            if v is not None and (shown is None or SEVERITY[v.class_id] > SEVERITY[shown.class_id]):
                shown = v
        if shown is not None:
            ind.show(shown)
            self._last_display = now
        elif now - self._last_display >= self.hold_seconds:
            ind.idle()
        for u in updates:
            if u.changed and u.track.committed is not None:
                ind.buzz(u.track.committed.class_id)

    def reset(self) -> None:
        """Forget all tracks (e.g. between bench runs)."""
        self.tracker.reset()
        self._last_display = -float("inf")
        self._too_far_logged.clear()


def load_models(
    cfg: Config,
    timer: StageTimer = NULL_TIMER,
    manifest: Manifest | None = None,
    imasknet_on_every_face: bool = False,
) -> tuple[FaceDetector, Cascade]:
    """The detector and the cascade the config names (``manifest``: another set of classifiers,
    e.g. bench's float twins). Loading them first reports a broken model before any pin or
    camera is touched."""
    mdir = configured_models_dir(cfg.classifier.models_dir)
    if manifest is None:
        manifest = load_manifest(mdir, verify=True)
    cascade = Cascade(
        manifest,
        num_threads=cfg.runtime.threads,
        align=cfg.classifier.align,
        timer=timer,
        imasknet_on_every_face=imasknet_on_every_face,
    )
    # the model over the region of interest and the far-pass tiles (edge/regions.py)
    return detector_from_config(cfg), cascade


def build_pipeline(
    cfg: Config,
    indicators: Indicators | None,
    events: EventLog | None,
    timer: StageTimer = NULL_TIMER,
    models: tuple[FaceDetector, Cascade] | None = None,
) -> Pipeline:
    """The door's pipeline from the run config: ``masknet run`` and ``masknet bench`` build it so.

    ``models`` are ``load_models(cfg, timer)``'s result when the caller loaded them first
    (loaded here otherwise, with ``timer``).
    """
    detector, cascade = models if models is not None else load_models(cfg, timer)
    return Pipeline(
        detector,
        cascade,
        Tracker(cfg.tracker),
        indicators=indicators,
        events=events,
        timer=timer,
        hold_seconds=cfg.indicators.hold_seconds,
        max_faces=cfg.classifier.max_faces_per_frame,
    )
