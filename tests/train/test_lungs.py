"""ONNX export parity (needs the train extra: torch and onnx; skipped locally without them, fails in CI)."""

import dataclasses

import numpy as np
import pytest
from helpers import tiny_lung_set


def test_onnx_runtime_matches_torch(tmp_path, require, segmenter, sample_radiographs):
    require("torch")
    require("onnx")
    import torch

    from thoracic.anatomy import LungSegmenter
    from thoracic.train.lungs import export_onnx
    from thoracic.train.unet import build_unet, count_parameters

    torch.manual_seed(0)
    model = build_unet(base=16, depth=4)
    assert count_parameters(model) <= 5_000_000
    # the shipped file has the same architecture: same number of weights
    model.eval()
    contract = segmenter.contract
    x = np.concatenate([contract.to_input(contract.prepare(rg).pixels) for rg in list(sample_radiographs.values())[:2]])
    diff = export_onnx(model, contract, tmp_path / "m.onnx", check=x)
    assert diff < 1e-4
    exported = LungSegmenter.load(tmp_path / "m.onnx")
    assert exported.contract == contract
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(x))).numpy()[:, 0]
    assert np.abs(exported.predict_small(x) - ref).max() < 1e-4


def _one_epoch(tmp_path):
    """One epoch of a tiny UNet on four random 32 x 32 films in ``tmp_path``: its settings and data."""
    from thoracic.models.meta import LungsMeta
    from thoracic.train.lungs import LungsTrainConfig, train_model

    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32)).astype(np.float32)
    masks = (images > 0.5).astype(np.float32)
    cfg = LungsTrainConfig(data="unused", out=str(tmp_path), size=32, base=4, depth=2, epochs=1, batch=2, threads=1)
    train_model(cfg, images, masks, tmp_path, LungsMeta.default(32))
    return cfg, images, masks


def test_one_training_epoch_runs(tmp_path, require):
    require("torch")
    from thoracic.models.meta import LungsMeta
    from thoracic.train.lungs import train_model

    cfg, images, masks = _one_epoch(tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "log.csv").is_file()
    # resuming a finished run does no more epochs
    train_model(cfg, images, masks, tmp_path, LungsMeta.default(32))
    assert (tmp_path / "log.csv").read_text().count("\n") == 2


def test_train_lungs_command_end_to_end(tmp_path, require, capsys):
    require("torch")
    require("onnx")
    import argparse

    from thoracic.anatomy import LungSegmenter
    from thoracic.cli import train as train_cli
    from thoracic.errors import ConfigError

    data = tmp_path / "data"
    tiny_lung_set(data)
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "run"
    argv = ["train", "lungs", "--data", str(data), "--out", str(out), "--epochs", "1", "--size", "32",
            "--base", "4", "--batch", "2", "--threads", "1", "--threshold", "0.6"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    seg = LungSegmenter.load(out / "lungs.onnx")
    assert seg.contract.input_size == (32, 32) and seg.contract.threshold == 0.6
    assert seg.contract.info["training_licences"] == ["CC BY 4.0"]  # the eval_nc row is never used
    assert "onnx_max_abs_diff" in capsys.readouterr().out
    (tmp_path / "nowhere").mkdir()  # a folder without pairs.csv (a missing one stops at parsing)
    bad = parser.parse_args(["train", "lungs", "--data", str(tmp_path / "nowhere"), "--out", str(out)])
    with pytest.raises(ConfigError, match="pairs.csv"):
        bad.func(bad)


def _film():
    """A 64 x 64 film: two dark lung fields on a bright body, and their mask."""
    img = np.full((64, 64), 0.8, np.float32)
    mask = np.zeros((64, 64), np.float32)
    mask[12:52, 8:28] = mask[12:52, 36:56] = 1.0
    img[mask > 0] = 0.2
    return img, mask


def test_strong_augmentation_keeps_image_and_mask_aligned():
    from thoracic.errors import ConfigError
    from thoracic.train.lungs import LungsTrainConfig, augment

    img, mask = _film()
    strong = LungsTrainConfig(data="d", out="o", augment="strong")
    standard = LungsTrainConfig(data="d", out="o")
    differs = 0
    for seed in range(20):
        a, m = augment(img, mask, np.random.default_rng(seed), strong)
        a2, m2 = augment(img, mask, np.random.default_rng(seed), strong)
        assert np.array_equal(a, a2) and np.array_equal(m, m2)  # fixed by the generator
        assert a.dtype == m.dtype == np.float32 and a.shape == m.shape == (64, 64)
        assert 0.0 <= a.min() and a.max() <= 1.0
        # the lungs stay where the mask says: darker inside than in the body around them
        inside, body = a[m > 0.9], a[(m < 0.1) & (a > 0)]
        assert inside.mean() < body.mean()
        s, _ = augment(img, mask, np.random.default_rng(seed), standard)
        differs += not np.array_equal(a, s)
    assert differs == 20
    with pytest.raises(ConfigError, match="augmentation"):
        LungsTrainConfig(data="d", out="o", augment="heavy")


def test_strong_augmentation_changes_the_aspect():
    from thoracic.train.lungs import LungsTrainConfig, augment

    _, mask = _film()
    cfg = LungsTrainConfig(data="d", out="o", augment="strong", rotate=0.0, scale=0.0, shift=0.0)
    ratios = set()
    for seed in range(30):
        _, m = augment(mask, mask, np.random.default_rng(seed), cfg)
        ys, xs = np.nonzero(m > 0.5)
        if len(xs):
            ratios.add(round(float((xs.max() - xs.min()) / (ys.max() - ys.min())), 2))
    assert len(ratios) > 3  # width / height of the lung box varies without rotation, zoom or shift


def test_a_checkpoint_from_before_the_new_settings_still_resumes(tmp_path, require):
    require("torch")
    import torch

    from thoracic.errors import ConfigError
    from thoracic.models.meta import LungsMeta
    from thoracic.train.lungs import train_model

    cfg, images, masks = _one_epoch(tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    for key in ("encoder_lr", "augment"):  # settings a checkpoint of an older thoracic does not record
        del state["config"][key]
    torch.save(state, tmp_path / "checkpoint.pt")
    train_model(cfg, images, masks, tmp_path, LungsMeta.default(32))  # their defaults: the same run
    assert (tmp_path / "log.csv").read_text().count("\n") == 2
    with pytest.raises(ConfigError, match="other settings"):  # a missing setting is not a wildcard
        train_model(dataclasses.replace(cfg, augment="strong"), images, masks, tmp_path,
                    LungsMeta.default(32))
