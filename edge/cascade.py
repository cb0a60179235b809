"""The classifier cascade: Mask-net on every face, I-Mask-net only when it says mask_incorrect.

Or, when the manifest's pipeline is "fiveclass", one 5-class model whose sub-type answers are
folded back into Mask-net's three classes. Each classifier sees exactly the crop it was trained
on: ``to_model_input(crop_face(frame, box, 224, CROP_MARGIN, ...), spec.input_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.classes import ADVICE, MASK_INCORRECT, SUBTYPES, masknet_label
from edge.crop import CROP_MARGIN, crop_face, to_model_input
from edge.errors import ModelError
from edge.litert import TFLiteModel
from edge.manifest import Manifest, ModelSpec, load_manifest
from edge.timing import CROP, IMASKNET_INVOKE, MASKNET_INVOKE, NULL_TIMER, StageTimer

# Side of the square face crop before it is resized to a model's input: the training crop.
CROP_SIZE = 224


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the classifiers say about one face."""

    class_id: str  # Mask-net class: mask / mask_incorrect / no_mask
    score: float  # probability of class_id
    sub_type: str | None = None  # I-Mask-net class, only for mask_incorrect
    sub_score: float | None = None  # probability of sub_type

    @property
    def label(self) -> str:
        """The most specific class id: the sub-type when there is one."""
        return self.sub_type or self.class_id

    @property
    def advice(self) -> str:
        return ADVICE[self.label]

    def with_summary(self, score: float, sub_type: str | None) -> Verdict:
        return replace(
            self,
            score=float(score),
            sub_type=sub_type,
            sub_score=self.sub_score if sub_type == self.sub_type else None,
        )


def _probabilities(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    # the exported models end in softmax; a model exported with logits is tolerated
    if y.min() < -1e-3 or abs(float(y.sum()) - 1.0) > 0.05:
        e = np.exp(y - y.max())
        return e / e.sum()
    return y


class Classifier:
    """One manifest model, its interpreter built once."""

    def __init__(self, spec: ModelSpec, num_threads: int | None, manifest_path: Path) -> None:
        self.spec = spec
        self.model = TFLiteModel(spec.path, num_threads=num_threads, remedy="re-run `masknet export` or restore the models/ folder")
        shape = self.model.input_shape
        want = (1, spec.input_size, spec.input_size, 3)
        if shape != want:
            raise ModelError(
                f"{spec.path}: input shape {shape} does not match {manifest_path} "
                f"(models.{spec.name}.input.size {spec.input_size}); re-run `masknet export`"
            )
        outputs = self.model.output_details
        n_out = int(np.prod(outputs[0]["shape"])) if outputs else 0
        if len(outputs) != 1 or n_out != len(spec.classes):
            raise ModelError(
                f"{spec.path}: {n_out} output values do not match the {len(spec.classes)} classes "
                f"{list(spec.classes)} in {manifest_path} (models.{spec.name}); re-run `masknet export`"
            )
        self.classes = spec.classes

    def __call__(self, x: np.ndarray) -> tuple[str, float, np.ndarray]:
        p = _probabilities(self.model.run(x)[0])
        i = int(np.argmax(p))
        return self.classes[i], float(p[i]), p


class Cascade:
    """Crop a face and classify it with the models the manifest names."""

    def __init__(
        self,
        manifest: Manifest,
        num_threads: int | None = None,
        align: bool = False,
        timer: StageTimer = NULL_TIMER,
    ) -> None:
        self.manifest = manifest
        self.align = align
        self.timer = timer
        self.pipeline = manifest.pipeline
        self.imasknet: Classifier | None = None
        if manifest.pipeline == "fiveclass":
            self.first = Classifier(manifest.model("fiveclass"), num_threads, manifest.path)
            self._five_subtype_idx = np.array(
                [i for i, c in enumerate(self.first.classes) if c in SUBTYPES], dtype=np.intp
            )
        else:
            self.first = Classifier(manifest.model("masknet"), num_threads, manifest.path)
            self.imasknet = Classifier(manifest.model("imasknet"), num_threads, manifest.path)

    @classmethod
    def from_dir(
        cls,
        models_dir: Path | str,
        num_threads: int | None = None,
        align: bool = False,
        timer: StageTimer = NULL_TIMER,
    ) -> Cascade:
        return cls(load_manifest(models_dir, verify=True), num_threads, align, timer)

    def crop(self, image: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """The training crop of one face (CROP_SIZE square, RGB uint8)."""
        return crop_face(image, box, CROP_SIZE, CROP_MARGIN, keypoints=keypoints, align=self.align)

    def classify_crop(self, crop: np.ndarray) -> Verdict:
        """Verdict for a face crop as ``crop`` makes it."""
        return self._run(crop, self.timer.start())

    def classify(
        self, image: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None = None
    ) -> tuple[Verdict, np.ndarray]:
        """Verdict for the face at ``box`` in ``image``, and the crop it was made from."""
        t = self.timer.start()
        crop = self.crop(image, box, keypoints)
        return self._run(crop, t), crop

    def _run(self, crop: np.ndarray, t: int) -> Verdict:
        """Classify ``crop``; ``t`` is when the CROP stage began (it ends with the model input)."""
        timer = self.timer
        x = to_model_input(crop, self.first.spec.input_size)
        t = timer.stop(CROP, t)
        label, score, p = self.first(x)
        t = timer.stop(MASKNET_INVOKE, t)
        if self.imasknet is None:
            class_id = masknet_label(label)
            if label in SUBTYPES:
                # Mask-net level score: all the ways of wearing it wrong together
                return Verdict(class_id, float(p[self._five_subtype_idx].sum()), label, score)
            return Verdict(class_id, score)
        if label != MASK_INCORRECT:
            return Verdict(label, score)
        if self.imasknet.spec.input_size != self.first.spec.input_size:
            x = to_model_input(crop, self.imasknet.spec.input_size)
        sub, sub_score, _ = self.imasknet(x)
        timer.stop(IMASKNET_INVOKE, t)
        return Verdict(MASK_INCORRECT, score, sub, sub_score)
