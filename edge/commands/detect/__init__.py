"""``masknet detect``: the door's face detector alone, and how far it sees.

Modules by concern: ``command`` (arguments, detection on an image / folder / video / camera, one
JSON line per frame, ``--draw``), ``bench`` (``--bench``: recall by face size per detector, false
faces on face-free frames, detector time, and the whole pipeline's frame time before/after).
"""

from edge.commands.detect.command import add_arguments, run

__all__ = ["add_arguments", "run"]
