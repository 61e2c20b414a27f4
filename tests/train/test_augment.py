"""Augmentation for other hospitals and devices: deterministic per seed, shape and type kept."""

from __future__ import annotations

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.train.augment import PAD, AugmentConfig, augment, rng_for


def _image(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (128 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).clip(0, 255).astype(np.uint8)


def test_the_same_seed_gives_the_same_image_and_others_differ():
    img = _image()
    a = augment(img, rng_for(3, 1, 7))
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, augment(img, rng_for(3, 1, 7)))
    others = [augment(img, rng_for(s, e, i)) for s, e, i in ((4, 1, 7), (3, 2, 7), (3, 1, 8))]
    assert all(not np.array_equal(a, b) for b in others)


def test_off_changes_nothing_and_each_step_alone_changes_the_image():
    img = _image()
    np.testing.assert_array_equal(augment(img, rng_for(0, 0, 0), AugmentConfig.off()), img)
    off = AugmentConfig.off()
    for step in ("p_geometry", "p_intensity", "p_clahe", "p_blur", "p_noise", "p_jpeg"):
        cfg = AugmentConfig(**{**{k: getattr(off, k) for k in ("p_geometry", "p_intensity", "p_clahe", "p_blur",
                                                                 "p_noise", "p_jpeg")}, step: 1.0})
        changed = [not np.array_equal(augment(img, rng_for(0, 0, i), cfg), img) for i in range(5)]
        assert any(changed), step


def test_a_rotation_brings_in_the_letterbox_grey_at_the_corners():
    img = np.zeros((64, 64), np.uint8)
    cfg = AugmentConfig(**{**AugmentConfig.off().to_dict(), "p_geometry": 1.0, "rotate": 20.0, "scale": 0.0,
                           "gamma": (0.7, 1.4), "clahe_clip": (1.0, 3.0), "blur_sigma": (0.3, 1.2),
                           "noise_sd": (0.005, 0.03), "jpeg_quality": (40, 95)})
    out = augment(img, rng_for(0, 0, 1), cfg)
    assert out[0, 0] == PAD or out[0, -1] == PAD or out[-1, 0] == PAD or out[-1, -1] == PAD


def test_bad_settings_and_images_are_refused():
    with pytest.raises(ConfigError, match="p_blur"):
        AugmentConfig(p_blur=1.5)
    with pytest.raises(ConfigError, match="gamma"):
        AugmentConfig(gamma=(1.5, 1.0))
    with pytest.raises(ConfigError, match="uint8"):
        augment(np.zeros((8, 8), np.float32), rng_for(0, 0, 0))
