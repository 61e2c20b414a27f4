"""Intensity augmentation of detector training: the strength, the transform, and a 1-epoch run with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_yolo_set

from thoracic.errors import ConfigError
from thoracic.train.augment import AugmentConfig
from thoracic.train.detector_aug import IntensityAugment, intensity_config


def _radiograph_like(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.tile(np.linspace(30, 220, 96, dtype=np.float32), (80, 1)) + rng.normal(0, 5, (80, 96))
    g = np.clip(g, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)  # ultralytics' images are BGR, three equal channels here


def test_strength_scales_the_ranges():
    assert intensity_config(0) == AugmentConfig.off()
    one, half, two = intensity_config(1), intensity_config(0.5), intensity_config(2)
    assert one.p_geometry == half.p_geometry == 0.0  # ultralytics does the geometry
    assert one.gamma == pytest.approx(AugmentConfig().gamma) and one.window == AugmentConfig().window
    assert half.gamma[0] > one.gamma[0] > two.gamma[0] and half.gamma[1] < one.gamma[1] < two.gamma[1]
    assert half.noise_sd[1] < one.noise_sd[1] < two.noise_sd[1]
    assert half.jpeg_quality[0] > one.jpeg_quality[0] >= two.jpeg_quality[0]
    for bad in (-0.1, 2.5):
        with pytest.raises(ConfigError, match="strength"):
            intensity_config(bad)
    with pytest.raises(ConfigError, match="p_geometry"):
        IntensityAugment(AugmentConfig())


def test_transform_is_deterministic_per_seed_and_keeps_the_boxes():
    step = IntensityAugment(intensity_config(1.0), seed=3)
    boxes = object()
    outs = [step({"img": _radiograph_like(k), "instances": boxes})["img"] for k in range(12)]
    again = [step({"img": _radiograph_like(k), "instances": boxes})["img"] for k in range(12)]
    assert all(np.array_equal(a, b) for a, b in zip(outs, again, strict=True))
    other = [IntensityAugment(intensity_config(1.0), seed=4)({"img": _radiograph_like(k)})["img"] for k in range(12)]
    assert any(not np.array_equal(a, b) for a, b in zip(outs, other, strict=True))
    for out in outs:
        assert out.shape == (80, 96, 3) and out.dtype == np.uint8
        assert np.array_equal(out[..., 0], out[..., 2])  # still grey
    # some images changed (each step has its probability), the geometry did not (the gradient keeps its direction)
    changed = [not np.array_equal(o, _radiograph_like(k)) for k, o in enumerate(outs)]
    assert sum(changed) >= 6
    assert all(o[..., 0].astype(int)[:, -8:].mean() > o[..., 0].astype(int)[:, :8].mean() for o in outs)
    labels = step({"img": _radiograph_like(0), "instances": boxes})
    assert labels["instances"] is boxes


def test_detector_config_checks_the_flags(tmp_path):
    from thoracic.train.detector import DetectorTrainConfig

    data = tmp_path / "d.yaml"
    data.write_text("nc: 14\n")
    with pytest.raises(ConfigError, match="strength"):
        DetectorTrainConfig(data=str(data), intensity_aug=3.0)
    with pytest.raises(ConfigError, match="degrees"):
        DetectorTrainConfig(data=str(data), degrees=90.0)


def test_one_epoch_with_intensity_augmentation(tmp_path, require):
    """A 1-epoch run at 64 px with --intensity-aug 1 --degrees 5: the step is in ultralytics' pipeline
    (after its close_mosaic rebuild too), and the run records the settings."""
    require("torch")
    require("ultralytics")
    from thoracic.train.detector import DetectorTrainConfig, train_detector

    data = tiny_yolo_set(tmp_path / "set")
    cfg = DetectorTrainConfig(data=str(data), out=str(tmp_path / "runs"), name="aug", epochs=1, imgsz=64, batch=4, nbs=4,
                              close_mosaic=1, warmup_epochs=0.0, threads=1, intensity_aug=1.0, degrees=5.0)
    summary = train_detector(cfg)
    assert summary["intensity_aug"] == 1.0 and summary["intensity_aug_in_pipeline"] is True
    resolved = json.loads((cfg.run_dir / "thoracic_train.json").read_text())
    assert resolved["config"]["intensity_aug"] == 1.0 and resolved["ultralytics_args"]["degrees"] == 5.0
    assert (cfg.run_dir / "weights" / "best.pt").is_file()
