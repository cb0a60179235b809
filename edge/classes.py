"""Class ids, used verbatim in folders, manifests and events."""

from __future__ import annotations

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
