"""The display images (``thoracic.serve.render``)."""

from __future__ import annotations

import numpy as np
from serve_helpers import png_pixels

from thoracic.serve.render import display_size, gray_png, heatmap_png, lungs_png, png_size


def test_display_images_share_one_size_and_overlays_are_transparent():
    assert display_size(4000, 2000) == (1024, 512) and display_size(300, 200) == (300, 200)
    pixels = np.tile(np.linspace(0, 1, 1500, dtype=np.float32), (900, 1))
    image = gray_png(pixels)
    size = png_size(image)
    assert size == (1024, 614) and png_pixels(image).shape == (614, 1024)
    heat = np.zeros((900, 1500), np.float32)
    heat[:, 750:] = 1.0
    rgba = png_pixels(heatmap_png(heat, size))
    assert rgba.shape == (614, 1024, 4)
    assert rgba[:, :400, 3].max() == 0 and rgba[:, 600:, 3].min() > 200  # alpha follows the heat
    mask = np.zeros((900, 1500), np.uint8)
    mask[300:600, 300:600] = 255
    lungs = png_pixels(lungs_png(mask, size))
    assert lungs[0, 0, 3] == 0 and lungs[300, 300, 3] > 0
