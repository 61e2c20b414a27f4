"""The compact UNet of the shipped lung model (torch; for training and ONNX export only).

Inference never imports torch: it runs the exported ONNX file with ONNX Runtime. torch is
imported when a model is built, so this module imports without the ``train`` extra.
"""

from __future__ import annotations

from typing import Any

from thoracic.errors import MissingDependencyError

__all__ = ["build_unet", "count_parameters"]


def build_unet(base: int = 16, depth: int = 4, in_channels: int = 1) -> Any:
    """A UNet (Ronneberger et al. 2015) with BatchNorm: ``depth`` poolings, ``base`` channels at full size.

    Input ``(N, in_channels, H, W)`` with ``H`` and ``W`` multiples of ``2**depth``; output
    ``(N, 1, H, W)`` logits of "lung". Up-sampling by transposed convolutions, skip connections by
    concatenation.
    """
    try:
        import torch
        from torch import nn
    except ImportError as err:
        raise MissingDependencyError.for_feature("building the lung UNet", "torch", "train") from err

    def double_conv(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [base * 2**i for i in range(depth + 1)]
            self.down = nn.ModuleList([double_conv(in_channels, chans[0])])
            self.down.extend(double_conv(chans[i], chans[i + 1]) for i in range(depth))
            self.pool = nn.MaxPool2d(2)
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
            )
            self.merge = nn.ModuleList(double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth)))
            self.head = nn.Conv2d(chans[0], 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else self.pool(x))
                skips.append(x)
            x = skips.pop()
            for up, merge in zip(self.up, self.merge):
                x = merge(torch.cat([up(x), skips.pop()], dim=1))
            return self.head(x)

    return UNet()


def count_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))
