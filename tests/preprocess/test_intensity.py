import numpy as np
import pytest

from thoracic.errors import ConfigError, ConstantImageError
from thoracic.preprocess import (
    clahe,
    denoise_bilateral,
    denoise_median,
    denoise_nlm,
    equalize,
    minmax,
    percentile_window,
    to_uint8,
    window,
    zscore,
)


@pytest.fixture(scope="module")
def gradient():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 1, 128, dtype=np.float32)[None, :].repeat(96, axis=0)
    return np.clip(base + rng.normal(0, 0.02, base.shape).astype(np.float32), 0, 1)


def test_window_linear_follows_the_standard():
    # PS3.3 C.11.2.1.2.1: c=2048, w=4096 -> x <= 0 gives 0, x > 4095 gives 1, linear between
    x = np.array([-10, 0, 1023.5, 2047.5, 4095, 5000], dtype=np.float32)
    y = window(x, 2048, 4096)
    expected = np.clip((x - 2047.5) / 4095 + 0.5, 0, 1)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert y.dtype == np.float32


def test_window_functions_and_width_one():
    x = np.array([0, 99.5, 100, 200], dtype=np.float32)
    np.testing.assert_array_equal(window(x, 100, 1), [0, 0, 1, 1])
    np.testing.assert_allclose(window(x, 100, 200, "LINEAR_EXACT"), np.clip((x - 100) / 200 + 0.5, 0, 1), atol=1e-6)
    sig = window(x, 100, 50, "SIGMOID")
    assert sig[2] == pytest.approx(0.5) and sig[0] < 0.01 and sig[3] > 0.99
    with pytest.raises(ConfigError, match="did you mean"):
        window(x, 100, 50, "SIGMOIDAL")
    with pytest.raises(ConfigError):
        window(x, 100, 0.5)


def test_normalizations(gradient):
    scaled = gradient * 3000 - 200
    assert minmax(scaled).min() == 0 and minmax(scaled).max() == 1
    p = percentile_window(scaled, 5, 95)
    assert (p == 0).mean() == pytest.approx(0.05, abs=0.01) and (p == 1).mean() == pytest.approx(0.05, abs=0.01)
    z = zscore(scaled)
    assert abs(float(z.mean())) < 1e-4 and float(z.std()) == pytest.approx(1, abs=1e-4)
    for fn in (minmax, percentile_window, zscore, equalize):
        with pytest.raises(ConstantImageError):
            fn(np.full((8, 8), 3, np.float32))


def test_contrast_enhancement_raises_local_contrast(gradient):
    low = 0.4 + 0.2 * gradient  # a dull image
    for fn in (clahe, equalize):
        out = fn(low)
        assert out.dtype == np.float32 and out.shape == low.shape
        assert 0 <= out.min() and out.max() <= 1
        assert out.std() > low.std() * 1.5


def test_denoisers_reduce_noise(gradient):
    rng = np.random.default_rng(1)
    clean = np.linspace(0, 1, 96 * 128, dtype=np.float32).reshape(96, 128)
    noisy = np.clip(clean + rng.normal(0, 0.08, clean.shape).astype(np.float32), 0, 1)
    salt = noisy.copy()
    salt[rng.random(salt.shape) < 0.02] = 1.0
    assert np.abs(denoise_median(salt) - clean).mean() < np.abs(salt - clean).mean()
    assert np.abs(denoise_bilateral(noisy, 5, 0.3, 3) - clean).mean() < np.abs(noisy - clean).mean()
    assert np.abs(denoise_nlm(noisy, 15) - clean).mean() < np.abs(noisy - clean).mean()
    with pytest.raises(ConfigError):
        denoise_median(noisy, 4)


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-1, 0, 0.5 / 255, 0.499 / 255, 1, 2], np.float32)), [0, 0, 1, 0, 255, 255])
