"""``--preview``: boxes and labels on the camera picture, so a user can aim the camera.

On a desktop (a display and an OpenCV build with windows) the picture is shown in a window;
press q in it to stop. Headless (the usual Pi at a door, reached over ssh) the annotated frame
is written to ``<preview.folder>/latest.jpg``, replaced atomically, so it can be watched with any
image viewer or copied with scp; only that one file is ever written, so a forgotten preview
cannot fill the SD card.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.classes import MASK, MASK_INCORRECT, NO_MASK
from edge.config import PreviewConfig
from edge.errors import ConfigError
from edge.pipeline import FaceResult
from edge.sources import Frame

log = logging.getLogger("edge.preview")

# BGR, as OpenCV draws
_COLOURS = {MASK: (60, 180, 60), MASK_INCORRECT: (0, 170, 255), NO_MASK: (40, 40, 230)}
_PENDING = (200, 200, 200)
WINDOW = "masknet preview"


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _window_works() -> bool:
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        return True
    except cv2.error:  # opencv-python-headless has no highgui
        return False


def annotate(frame: Frame, results: Sequence[FaceResult]) -> np.ndarray:
    """A BGR copy of the frame the faces were cropped from, with a box and label per face."""
    import cv2

    image = cv2.cvtColor(frame.crop_image, cv2.COLOR_RGB2BGR)
    thick = max(1, image.shape[1] // 400)
    for r in results:
        x0, y0, x1, y1 = (int(round(v)) for v in r.box)
        shown = r.committed or r.verdict
        colour = _COLOURS.get(shown.class_id, _PENDING) if r.committed and shown else _PENDING
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thick)
        # a new face over classifier.max_faces_per_frame has no answer yet
        said = f"{shown.label} {shown.score:.2f}" if shown is not None else "..."
        label = f"#{r.track_id} {said}" + ("" if r.committed else " ?")
        cv2.putText(
            image, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick + 0.1,
            colour, thick, cv2.LINE_AA,
        )
    return image


class Preview:
    def __init__(self, config: PreviewConfig) -> None:
        self.config = config
        mode = config.mode
        if mode == "auto":
            mode = "window" if _has_display() and _window_works() else "folder"
        elif mode == "window" and not (_has_display() and _window_works()):
            raise ConfigError(
                "preview.mode 'window': no desktop display or OpenCV without window support; "
                "use preview.mode = \"folder\""
            )
        self.mode = mode
        self.folder = Path(config.folder)
        self.path = self.folder / "latest.jpg"
        self._n = 0
        if mode == "folder":
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"preview.folder: cannot create {self.folder} ({exc.strerror})") from None
            log.info("preview: writing %s", self.path)

    def update(self, frame: Frame, results: Sequence[FaceResult]) -> bool:
        """Show or write the frame; False when the user closed the window (stop the run)."""
        import cv2

        self._n += 1
        if (self._n - 1) % self.config.every_n:
            return True
        image = annotate(frame, results)
        if self.mode == "window":
            cv2.imshow(WINDOW, image)
            key = cv2.waitKey(1) & 0xFF
            return key != ord("q")
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            tmp = self.path.with_suffix(".jpg.tmp")
            try:
                tmp.write_bytes(data.tobytes())
                os.replace(tmp, self.path)
            except OSError as exc:
                log.warning("preview: cannot write %s (%s)", self.path, exc.strerror)
        return True

    def close(self) -> None:
        if self.mode == "window":
            import cv2

            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(WINDOW)
