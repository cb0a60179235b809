"""The test faces of tools/arm64-check, and their classes as JSON.

``faces OUT [SHARED_DATA]`` (on the host) writes skimage's astronaut and, when the shared data's
mask templates are there, the same face wearing a surgical mask in three states (drawn by the
data set's generator) to OUT/faces, and the same faces as door visits (each held for a few
frames, then an empty doorway) to OUT/visits for ``masknet run``. ``classify FOLDER [MODELS_DIR]`` loads the detector, Mask-net and
I-Mask-net and prints every face's class; tools/arm64-check runs it natively (x86) and under
qemu-aarch64 (a Pi's CPU) and compares the two.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from edge.config import load_config
from edge.detector import create_detector
from edge.litert import load_runtime
from edge.pipeline import load_models
from edge.sources import FolderSource

MASK_STATES = ("mask", "mask_over_chin", "mask_over_nose_mouth")
FRAMES_PER_VISIT, GAP = 6, 4  # as tests/test_edge_acceptance.py: enough for the tracker to commit


def write_faces(out: Path, shared_data: Path | None) -> int:
    import cv2
    import numpy as np
    from skimage import data

    image = np.ascontiguousarray(data.astronaut())
    images = {"astronaut": image}
    templates_dir = shared_data / "mask_templates" if shared_data else None
    if templates_dir is not None and (templates_dir / "masks.cfg").is_file():
        from convert.dataset.synth import draw_mask, load_templates
        from edge.face_mesh import FaceLandmarker

        face = create_detector("blazeface_short").detect(image)[0]
        landmarks = FaceLandmarker(num_threads=1).landmarks(image, face)
        templates = load_templates(templates_dir, ["surgical_blue"])
        for state in MASK_STATES:
            drawn = draw_mask(image, landmarks, state, templates, np.random.default_rng(0), recolour_p=0.0)
            images[f"astronaut_{state}"] = drawn.image
    (out / "faces").mkdir(parents=True, exist_ok=True)
    (out / "visits").mkdir(parents=True, exist_ok=True)
    nobody = np.full_like(image, 90)
    frame = 0
    for name, rgb in images.items():
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out / "faces" / f"{name}.png"), bgr)
        for picture in [bgr] * FRAMES_PER_VISIT + [nobody] * GAP:
            cv2.imwrite(str(out / "visits" / f"f{frame:05d}.png"), picture)
            frame += 1
    print(f"{len(images)} test faces in {out}/faces, {frame} frames of door visits in {out}/visits")
    return 0


def classify(argv: list[str]) -> int:
    folder = Path(argv[0])
    overrides = {"classifier.models_dir": argv[1]} if len(argv) > 1 else {}
    runtime = load_runtime()
    t0 = time.perf_counter()
    # the detector and the cascade as `masknet run` loads them, with the default config
    detector, cascade = load_models(load_config(overrides=overrides))
    load_s = time.perf_counter() - t0
    faces = []
    with FolderSource(folder) as source:
        while (frame := source.read()) is not None:
            found = detector.detect(frame.image)
            for face in found:
                verdict, _ = cascade.classify(frame.crop_image, face.box, face.keypoints)
                faces.append(
                    {
                        "image": frame.name,
                        "box": [round(float(v)) for v in face.box],
                        "class": verdict.class_id,
                        "score": round(float(verdict.score), 3),
                        "sub_type": verdict.sub_type,
                    }
                )
            if not found:
                faces.append({"image": frame.name, "class": None})
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "runtime": f"{runtime.name} {runtime.version}",
                "load_s": round(load_s, 2),
                "faces": faces,
            }
        )
    )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "faces":
        return write_faces(Path(argv[1]), Path(argv[2]) if len(argv) > 2 else None)
    if len(argv) >= 2 and argv[0] == "classify":
        return classify(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
