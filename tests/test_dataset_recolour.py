"""The paper's recolouring on a synthetic blue-mask picture: the blue goes, the shading stays,
and nothing outside the lower face changes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from convert.dataset.recolour import (
    blue_pixels,
    lower_face_region,
    recolour_face,
    recolour_template,
)
from edge.detector import Face

STYLES = ("dark", "light", "random", "pattern")


def blue_mask_picture() -> tuple[np.ndarray, Face, np.ndarray]:
    """A 240x240 'face': skin oval, a light-blue mask with pleats over its lower half, and a
    light-blue sky patch above the head that must survive."""
    img = np.full((240, 240, 3), (120, 130, 90), np.uint8)  # olive background
    cv2.ellipse(img, (120, 125), (60, 80), 0, 0, 360, (225, 180, 150), -1)  # skin
    mask = np.zeros((240, 240), np.uint8)
    cv2.ellipse(mask, (120, 150), (62, 50), 0, 0, 360, 1, -1)
    mask[:125] = 0
    img[mask.astype(bool)] = (150, 200, 235)  # surgical light blue
    for y in range(132, 200, 14):  # pleats: darker bands
        band = mask.astype(bool).copy()
        band[:y] = False
        band[y + 4 :] = False
        img[band] = (img[band] * 0.75).astype(np.uint8)
    img[5:30, 10:230] = (150, 200, 235)  # sky
    # BlazeFace-like box (brows to below the lips) and keypoints: eyes, nose, mouth, ears
    box = np.array([70, 75, 170, 175], np.float32)
    kps = np.array([[100, 100], [140, 100], [120, 130], [120, 155], [62, 115], [178, 115]], np.float32)
    return img, Face(box, 0.9, kps), mask.astype(bool)


@pytest.mark.parametrize("style", STYLES)
def test_recolouring_replaces_the_blue_and_only_in_the_lower_face(style):
    textures = [np.tile(np.array([[[200, 40, 40], [250, 250, 250]]], np.uint8), (8, 8, 1))]
    img, face, mask = blue_mask_picture()
    out = recolour_face(img, face, np.random.default_rng(0), styles=(style,), textures=textures)
    assert out is not None
    new, used = out
    assert used == style
    region = lower_face_region(img.shape, face)
    before = blue_pixels(img)[mask].mean()
    after = blue_pixels(new)[mask].mean()
    assert before > 0.95 and after < 0.1, (before, after)
    # outside the lower face: byte-identical (the sky patch is blue too and must stay)
    assert np.array_equal(new[~region], img[~region])
    assert blue_pixels(new[5:30, 10:230]).all()
    # the mask's hue (or, for dark/light, its colour) moved away from light blue
    hsv_old = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[mask].astype(int)
    hsv_new = cv2.cvtColor(new, cv2.COLOR_RGB2HSV)[mask].astype(int)
    moved = (np.abs(hsv_new[:, 0] - hsv_old[:, 0]) > 10) | (np.abs(hsv_new[:, 2] - hsv_old[:, 2]) > 40) | (hsv_new[:, 1] < 20)
    assert moved.mean() > 0.9


@pytest.mark.parametrize("style", STYLES)
def test_recolouring_keeps_the_pleats(style):
    img, face, mask = blue_mask_picture()
    textures = [np.full((16, 16, 3), (90, 160, 60), np.uint8)]
    new, _ = recolour_face(img, face, np.random.default_rng(3), styles=(style,), textures=textures)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    # pleats are 25% darker than the flat mask; away from the edges (soft rim) they must stay so
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    pleat = inner & (grey < grey[inner].max() * 0.9)
    flat = inner & ~pleat
    lum = cv2.cvtColor(new, cv2.COLOR_RGB2GRAY).astype(float)
    ratio = lum[pleat].mean() / max(lum[flat].mean(), 1e-6)
    assert 0.65 < ratio < 0.85, ratio


def test_a_face_without_a_blue_mask_is_left_alone():
    img, face, mask = blue_mask_picture()
    img[mask] = (40, 40, 40)  # black mask: not the paper's light-blue case
    assert recolour_face(img, face, np.random.default_rng(0)) is None


def test_blue_shirt_below_a_bare_face_is_not_a_mask():
    img, face, mask = blue_mask_picture()
    img[mask] = (225, 180, 150)  # no mask at all
    img[200:240] = (150, 200, 235)  # a light-blue shirt at the bottom of the lower-face region
    assert recolour_face(img, face, np.random.default_rng(0)) is None


def test_template_recolouring_keeps_alpha_and_shading():
    rgba = np.zeros((50, 80, 4), np.uint8)
    rgba[10:40, 10:70] = (235, 235, 235, 255)
    rgba[20:24, 10:70, :3] = 180  # a fold
    out, style = recolour_template(rgba, np.random.default_rng(1), ("random",), [])
    assert style == "random"
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.array_equal(out[:10], rgba[:10])  # transparent part untouched
    fold, flat = out[21, 40, :3].astype(int).sum(), out[30, 40, :3].astype(int).sum()
    assert fold < flat
