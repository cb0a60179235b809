"""``masknet bench``: how many frames per second will this device do, and where does the time go?

Runs the door's own pipeline (``edge.pipeline.build_pipeline``: the detector, the cascade, the
tracker and mock LED/buzzer pins) frame after frame and reports every stage's latency, the
end-to-end frame time, frames per second and the peak resident memory. The frames come from any
source ``masknet run`` accepts or, by default, from a generated scene at the camera resolution
with a real face (scikit-image's astronaut) pasted in K times, so it runs with no data and no
camera. Warm-up frames are run first and not counted.

By default I-Mask-net runs on every face: Mask-net's answer is still computed (and timed) for
real, but the cascade takes every face as "mask_incorrect" so the second model always runs, the
worst case of a door where everyone wears the mask wrong. ``--real-cascade`` keeps the real
decision.

Modules by concern: ``command`` (arguments, the plan of runs, ``run``), ``scene`` (the
generated frames), ``measure`` (one timed configuration, the float twins), ``report`` (ratios,
tables, the printed text).
"""

from edge.commands.bench.command import add_arguments, run

__all__ = ["add_arguments", "run"]
