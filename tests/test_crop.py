"""The shared face crop: exact geometry on synthetic images, border handling, roll alignment."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge.crop import CROP_MARGIN, crop_face, crop_matrix, pad_image, to_model_input


@pytest.fixture
def coords() -> np.ndarray:
    """200x200 image whose pixel (y, x) holds (x, y, 7): any crop pixel says where it came from."""
    ys, xs = np.mgrid[0:200, 0:200]
    return np.dstack([xs, ys, np.full_like(xs, 7)]).astype(np.uint8)


def test_box_maps_onto_whole_pixels(coords):
    crop = crop_face(coords, (30, 40, 50, 60), size=20, margin=0.0)
    np.testing.assert_array_equal(crop, coords[40:60, 30:50])


def test_margin_widens_around_the_centre(coords):
    # side = 20 * (1 + 1.0) = 40 around the centre (40, 50)
    crop = crop_face(coords, (30, 40, 50, 60), size=40, margin=1.0)
    np.testing.assert_array_equal(crop, coords[30:70, 20:60])


def test_square_on_the_long_side(coords):
    # 20 wide, 40 tall: a 40x40 square around (40, 60)
    crop = crop_face(coords, (30, 40, 50, 80), size=40, margin=0.0)
    np.testing.assert_array_equal(crop, coords[40:80, 20:60])


def test_output_size_scales(coords):
    crop = crop_face(coords, (30, 40, 50, 60), size=40, margin=0.0)
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    # 2x upscale: crop pixel 2i samples image x = 29.75 + i (bilinear), crop pixel 2i+1 x = 30.25 + i
    np.testing.assert_allclose(crop[0, ::2, 0], np.arange(30, 50) - 0.25, atol=0.5)
    np.testing.assert_allclose(crop[0, 1::2, 0], np.arange(30, 50) + 0.25, atol=0.5)


def test_outside_the_image_repeats_the_border(coords):
    # side 40 around (10, 10): 10 pixels of crop lie above and left of the image
    crop = crop_face(coords, (0, 0, 20, 20), size=40, margin=1.0)
    np.testing.assert_array_equal(crop[10:, 10:], coords[0:30, 0:30])
    np.testing.assert_array_equal(crop[:10, 10:], np.broadcast_to(coords[0, 0:30], (10, 30, 3)))
    np.testing.assert_array_equal(crop[:10, :10], np.broadcast_to(coords[0, 0], (10, 10, 3)))


def test_default_margin_and_size(coords):
    crop = crop_face(coords, (50, 50, 150, 150))
    assert crop.shape == (224, 224, 3)
    side = 100 * (1 + CROP_MARGIN)
    # the crop's corner pixel comes from the square's corner
    assert abs(int(crop[0, 0, 0]) - (100 - side / 2)) <= 1


def _dot_centre(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    mask = np.all(np.abs(image.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(mask)
    assert len(xs), f"no {colour} pixels"
    return np.array([xs.mean(), ys.mean()])


def _tilted_eyes() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((160, 160, 3), 200, np.uint8)
    right_eye, left_eye = (50.0, 60.0), (110.0, 90.0)  # eye line 26.6 degrees down to the right
    cv2.circle(image, (50, 60), 6, (255, 0, 0), -1)
    cv2.circle(image, (110, 90), 6, (0, 0, 255), -1)
    return image, np.array([right_eye, left_eye, (80, 100), (80, 120), (30, 70), (130, 100)], np.float32)


def test_alignment_levels_the_eyes():
    image, kps = _tilted_eyes()
    box = (40, 40, 120, 130)
    plain = crop_face(image, box, size=128, margin=0.25)
    r, left = _dot_centre(plain, (255, 0, 0)), _dot_centre(plain, (0, 0, 255))
    assert left[1] - r[1] > 20  # still tilted without alignment
    aligned = crop_face(image, box, size=128, margin=0.25, keypoints=kps, align=True)
    r, left = _dot_centre(aligned, (255, 0, 0)), _dot_centre(aligned, (0, 0, 255))
    assert abs(left[1] - r[1]) < 1.0
    assert left[0] > r[0]  # rolled, not flipped
    # the eye distance is kept: 67 image pixels * 128 / (90 * 1.25)
    assert math.dist(r, left) == pytest.approx(math.hypot(60, 30) * 128 / (90 * 1.25), rel=0.03)


def test_alignment_does_not_flip_with_mirrored_eye_order():
    image, kps = _tilted_eyes()
    box = (40, 40, 120, 130)
    a = crop_face(image, box, size=96, keypoints=kps, align=True)
    b = crop_face(image, box, size=96, keypoints=kps[[1, 0]], align=True)
    np.testing.assert_array_equal(a, b)


def test_alignment_needs_keypoints(coords):
    with pytest.raises(ValueError, match="keypoints"):
        crop_face(coords, (0, 0, 10, 10), align=True)


def test_large_downscale_does_not_alias():
    # uniform noise has std 74; an honest 8x8 average leaves ~9, a bilinear pick leaves ~37+
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)
    crop = crop_face(noise, (0, 0, 800, 800), size=100, margin=0.0)
    assert crop.std() < 15
    assert abs(crop.mean() - 127.5) < 3


def test_crop_matrix_maps_the_box_centre_to_the_crop_centre():
    m = crop_matrix((30, 40, 50, 60), size=64, margin=0.5, roll=0.3)
    # continuous centre (40, 50) is pixel index (39.5, 49.5); crop centre index is 31.5
    np.testing.assert_allclose(m @ [39.5, 49.5, 1.0], [31.5, 31.5])
    with pytest.raises(ValueError, match="empty"):
        crop_matrix((5, 5, 5, 5), size=64)


def test_to_model_input():
    crop = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    small = to_model_input(crop, 96)
    assert small.shape == (96, 96, 3) and small.dtype == np.uint8
    assert to_model_input(crop, (128, 160)).shape == (128, 160, 3)
    np.testing.assert_array_equal(to_model_input(crop, 224), crop)
    flat = np.full((224, 224, 3), 77, np.uint8)
    np.testing.assert_array_equal(to_model_input(flat, 112), np.full((112, 112, 3), 77))


def test_pad_image_places_the_original_at_the_offset(coords):
    tight = coords[:100, :80]
    padded, (dx, dy) = pad_image(tight, 0.5)
    assert (dx, dy) == (50, 50)
    assert padded.shape == (200, 180, 3)
    np.testing.assert_array_equal(padded[dy : dy + 100, dx : dx + 80], tight)
    assert padded[:dy].max() == 0 and padded[:, :dx].max() == 0
    same, offset = pad_image(tight, 0.0)
    assert same is tight and offset == (0, 0)


def test_crop_spec_cuts_with_its_own_parameters_and_round_trips_as_json():
    from edge.crop import CROP_MARGIN, CROP_SIZE, CropSpec

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box, kps = (40.0, 30.0, 100.0, 96.0), np.array([[55.0, 50.0], [85.0, 58.0]])
    spec = CropSpec(size=64, margin=0.6, align=True)
    np.testing.assert_array_equal(spec.cut(image, box, kps), crop_face(image, box, 64, 0.6, keypoints=kps, align=True))
    assert CropSpec.from_json(spec.to_json()) == spec
    # extra keys (dataset.json adds jpeg_quality, function) are other records' business
    assert CropSpec.from_json({**spec.to_json(), "jpeg_quality": 95}) == spec
    assert CropSpec() == CropSpec(CROP_SIZE, CROP_MARGIN, False)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"size": 10, "margin": 0.25, "align": False}, "crop size"),
        ({"size": 224, "margin": -0.1, "align": False}, "crop margin"),
        ({"size": 224, "margin": 0.25, "align": "yes"}, "crop align"),
        ({"size": 224, "margin": 0.25}, "size, margin and align"),
    ],
)
def test_crop_spec_refuses_a_bad_record(record, message):
    from edge.crop import CropSpec

    with pytest.raises(ValueError, match=message):
        CropSpec.from_json(record)
