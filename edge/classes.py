"""Class ids, used verbatim in folders, manifests and events, and the verdict built from them."""

from __future__ import annotations

from dataclasses import dataclass, replace

MASK = "mask"
MASK_INCORRECT = "mask_incorrect"
NO_MASK = "no_mask"
MASK_OVER_CHIN = "mask_over_chin"
MASK_OVER_MOUTH_CHIN = "mask_over_mouth_chin"
MASK_OVER_NOSE_MOUTH = "mask_over_nose_mouth"

MASKNET_CLASSES: tuple[str, ...] = (MASK, MASK_INCORRECT, NO_MASK)
SUBTYPES: tuple[str, ...] = (MASK_OVER_CHIN, MASK_OVER_MOUTH_CHIN, MASK_OVER_NOSE_MOUTH)
FIVE_CLASSES: tuple[str, ...] = (MASK, NO_MASK, *SUBTYPES)
ALL_CLASSES: tuple[str, ...] = (MASK, MASK_INCORRECT, NO_MASK, *SUBTYPES)

# several people at once: the lights show the worst of them
SEVERITY: dict[str, int] = {MASK: 0, MASK_INCORRECT: 1, NO_MASK: 2}

# What the person at the door is told.
ADVICE: dict[str, str] = {
    MASK: "Thank you, your mask is worn correctly",
    MASK_INCORRECT: "Please adjust your mask to cover your nose, mouth and chin",
    NO_MASK: "Please put on a mask",
    MASK_OVER_CHIN: "Pull the mask up over your mouth and nose",
    MASK_OVER_MOUTH_CHIN: "Pull the mask up over your nose",
    MASK_OVER_NOSE_MOUTH: "Pull the mask down over your chin",
}


def masknet_label(class_id: str) -> str:
    """The Mask-net (3-class) label of any class id: every sub-type counts as mask_incorrect."""
    if class_id in SUBTYPES:
        return MASK_INCORRECT
    if class_id in MASKNET_CLASSES:
        return class_id
    raise ValueError(f"unknown class id {class_id!r}; expected one of {', '.join(ALL_CLASSES)}")


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
