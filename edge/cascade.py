"""The classifier cascade: Mask-net on every face, I-Mask-net only when it says mask_incorrect.

With a version-2 manifest I-Mask-net reads Mask-net's features (both share one frozen trunk), so
a wrongly worn mask costs Mask-net plus I-Mask-net's last layers, not two whole networks.

Or, when the manifest's classifiers are "fiveclass", one 5-class model whose sub-type answers
are folded back into Mask-net's three classes. Each classifier sees exactly the crop it was
trained on: ``to_model_input(manifest.crop.cut(frame, box, keypoints), spec.input_size)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.classes import MASK_INCORRECT, SUBTYPES, Verdict, masknet_label
from edge.crop import to_model_input
from edge.errors import ModelError
from edge.litert import TFLiteModel
from edge.manifest import Manifest, ModelSpec
from edge.timing import CROP, IMASKNET_INVOKE, MASKNET_INVOKE, NULL_TIMER, StageTimer


def _probabilities(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    # the exported models end in softmax; a model exported with logits is tolerated
    if y.min() < -1e-3 or abs(float(y.sum()) - 1.0) > 0.05:
        e = np.exp(y - y.max())
        return e / e.sum()
    return y


class Classifier:
    """One manifest model, its interpreter built once.

    Its input is the face crop or, when the manifest says ``input.features_of``, the features
    another classifier exposed on its last call (the shared trunk's activation at the cut).
    """

    def __init__(self, spec: ModelSpec, num_threads: int | None, manifest_path: Path) -> None:
        self.spec = spec
        self.model = TFLiteModel(spec.path, num_threads=num_threads, remedy="re-run `masknet export` or restore the models/ folder")
        shape = self.model.input_shape
        if spec.input_features is not None:
            want: tuple[int, ...] = (1, *spec.input_features.shape)
            setting = f"models.{spec.name}.input.shape {list(spec.input_features.shape)}"
        else:
            want = (1, spec.input_size, spec.input_size, 3)
            setting = f"models.{spec.name}.input.size {spec.input_size}"
        if shape != want:
            raise ModelError(
                f"{spec.path}: input shape {shape} does not match {manifest_path} ({setting}); re-run `masknet export`"
            )
        shapes = [tuple(int(d) for d in o["shape"]) for o in self.model.output_details]
        # converters may list outputs in any order: find each by its shape
        probs = [i for i, s in enumerate(shapes) if s == (1, len(spec.classes))]
        wanted = 1
        self._features: int | None = None
        if spec.features is not None:
            wanted = 2
            feats = [i for i, s in enumerate(shapes) if s == (1, *spec.features.shape)]
            if len(feats) != 1:
                raise ModelError(
                    f"{spec.path}: no output of shape {list(spec.features.shape)} for the features "
                    f"{manifest_path} names (models.{spec.name}.features); outputs are {shapes}; re-run `masknet export`"
                )
            self._features = feats[0]
        if len(probs) != 1 or len(shapes) != wanted:
            raise ModelError(
                f"{spec.path}: outputs {shapes} do not match the {len(spec.classes)} classes "
                f"{list(spec.classes)} in {manifest_path} (models.{spec.name}); re-run `masknet export`"
            )
        self._probs = probs[0]
        self.classes = spec.classes
        # the manifest's prior shift (models.<name>.class_bias), as a factor on the probabilities
        self._prior: np.ndarray | None = None
        if any(spec.class_bias.values()):
            self._prior = np.exp([spec.class_bias.get(c, 0.0) for c in spec.classes]).astype(np.float32)

    @property
    def takes_features(self) -> bool:
        return self.spec.features_of is not None

    def __call__(self, x: np.ndarray) -> tuple[str, float, np.ndarray]:
        """(class id, its probability, all probabilities), after the manifest's class_bias:
        p * e^bias renormalized is the model's posterior under the shifted prior, so the score
        stays a probability that the tracker's commit_score can read the same way."""
        self.model.invoke(x)
        p = _probabilities(self.model.fetch(self._probs)[0])
        if self._prior is not None:
            p = p * self._prior
            p = p / p.sum()
        i = int(np.argmax(p))
        return self.classes[i], float(p[i]), p

    def features(self, raw: bool = False) -> np.ndarray:
        """The features of the last call (float32, or raw in the output tensor's own dtype)."""
        if self._features is None:
            raise ModelError(f"{self.spec.path}: models.{self.spec.name} exposes no features")
        return self.model.fetch(self._features, raw=raw)

    def reads_raw(self, provider: Classifier) -> bool:
        """Whether ``provider``'s raw features can go straight into this model's input.

        Both sides were calibrated on the same images, so their quantization agrees to float
        rounding; when it does not (other calibration sets), the features go through float and
        are requantized with this model's own scale and zero point.
        """
        if provider._features is None:
            return False
        out = provider.model.output_details[provider._features]
        inp = self.model.input_details[0]
        if np.dtype(out["dtype"]) != np.dtype(inp["dtype"]):
            return False
        (s_out, z_out), (s_in, z_in) = out["quantization"], inp["quantization"]
        if not s_out and not s_in:
            return True  # float features into a float input
        return bool(s_out and s_in and z_out == z_in and abs(s_out / s_in - 1.0) < 1e-4)


class Cascade:
    """Crop a face as the manifest says and classify it with the models it names.

    ``align`` is the run config's ``classifier.align``: "auto" takes the manifest's crop, a
    boolean must agree with it (ConfigError otherwise, see ``Manifest.crop_for``).
    ``imasknet_on_every_face`` is ``masknet bench``'s worst case: Mask-net still runs (and is
    timed) on every face, but every face is taken as mask_incorrect, so I-Mask-net runs too.
    """

    def __init__(
        self,
        manifest: Manifest,
        num_threads: int | None = None,
        align: bool | str = "auto",
        timer: StageTimer = NULL_TIMER,
        imasknet_on_every_face: bool = False,
    ) -> None:
        self.manifest = manifest
        self.imasknet_on_every_face = imasknet_on_every_face
        self.crop_spec = manifest.crop_for(align)
        self.timer = timer
        self.classifiers = manifest.classifiers
        self.imasknet: Classifier | None = None
        if manifest.classifiers == "fiveclass":
            self.first = Classifier(manifest.model("fiveclass"), num_threads, manifest.path)
            self._five_subtype_idx = np.array(
                [i for i, c in enumerate(self.first.classes) if c in SUBTYPES], dtype=np.intp
            )
        else:
            self.first = Classifier(manifest.model("masknet"), num_threads, manifest.path)
            self.imasknet = Classifier(manifest.model("imasknet"), num_threads, manifest.path)
            if self.imasknet.takes_features and self.imasknet.spec.features_of != self.first.spec.name:
                raise ModelError(
                    f"{manifest.path}: models.imasknet reads the features of models."
                    f"{self.imasknet.spec.features_of}, but the cascade runs it after models.masknet"
                )
        self._raw_features = self.imasknet is not None and self.imasknet.reads_raw(self.first)

    def crop(self, image: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """The training crop of one face (``crop_spec.size`` square, RGB uint8)."""
        return self.crop_spec.cut(image, box, keypoints)

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
        if label != MASK_INCORRECT and not self.imasknet_on_every_face:
            return Verdict(label, score)
        if self.imasknet.takes_features:
            # the trunk already ran inside Mask-net: I-Mask-net is only the layers after the cut
            x = self.first.features(raw=self._raw_features)
        elif self.imasknet.spec.input_size != self.first.spec.input_size:
            x = to_model_input(crop, self.imasknet.spec.input_size)
        sub, sub_score, _ = self.imasknet(x)
        timer.stop(IMASKNET_INVOKE, t)
        return Verdict(MASK_INCORRECT, score, sub, sub_score)
