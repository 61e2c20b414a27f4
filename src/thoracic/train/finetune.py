"""End-to-end fine-tuning of an image classifier on 8-bit inputs (the ``train`` extra).

:func:`fit` trains any module whose forward gives one logit per label (such as
:func:`thoracic.train.effnet.build_classifier`'s) on ``N x S x S`` ``uint8`` images and ``N x L``
0/1 targets: binary cross-entropy per label with optional label smoothing, AdamW, a cosine
learning-rate schedule over all steps, and per-image augmentation (:mod:`thoracic.train.augment`)
seeded by ``(seed, epoch, image)``. :func:`predict` gives the sigmoid probabilities. With the
same seed, data and thread count, a run on the CPU gives the same weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from thoracic.errors import ConfigError
from thoracic.train.augment import AugmentConfig, augment, rng_for

__all__ = ["FinetuneConfig", "FitSettings", "fit", "predict", "to_input"]


@dataclass(frozen=True)
class FitSettings:
    """The optimisation settings of a fine-tuning, shared by :class:`FinetuneConfig` and the
    classifier's :class:`~thoracic.train.classifier.ClassifierTrainConfig`.

    Attributes
    ----------
    epochs, batch:
        Passes over the images and images per step (a last batch of one image is dropped:
        batch norm needs two).
    lr, weight_decay:
        AdamW's peak learning rate (cosine decay to 0 over all steps) and decoupled weight decay.
    label_smoothing:
        Targets become ``y (1 - s) + s / 2``: for NIH's report-mined, noisy labels.
    seed:
        Batch order, augmentation, dropout.
    device:
        ``cpu``, ``cuda`` or ``cuda:N``.
    """

    epochs: int = 12
    batch: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-2
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "cpu"

    def fit_settings(self) -> dict[str, Any]:
        """These settings alone, by name (for a :class:`FinetuneConfig`)."""
        return {f.name: getattr(self, f.name) for f in fields(FitSettings)}

    def check_fit_settings(self) -> None:
        """Raise ``ConfigError`` for settings no fine-tuning can use."""
        if self.epochs < 1 or self.batch < 2:
            raise ConfigError(f"fine-tuning needs epochs >= 1 and batch >= 2, got {self.epochs} and {self.batch}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError("the learning rate must be > 0 and the weight decay >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must lie in [0, 1), got {self.label_smoothing}")
        name = self.device.strip().lower()
        if name != "cpu" and name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
            raise ConfigError.unknown("training device", self.device, ("cpu", "cuda", "cuda:N"))


@dataclass(frozen=True)
class FinetuneConfig(FitSettings):
    """Settings of one fine-tuning run: :class:`FitSettings` and the augmentation.

    Attributes
    ----------
    augment:
        The augmentation (:meth:`AugmentConfig.off` for none).
    """

    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        self.check_fit_settings()


def to_input(images: np.ndarray) -> Any:
    """``N x S x S`` ``uint8`` images as the models' ``N x 3 x S x S`` float32 ``0..1`` tensor."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def _check(images: np.ndarray, targets: np.ndarray | None = None) -> None:
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1] != images.shape[2]:
        raise ConfigError(f"fine-tuning takes N x S x S uint8 images, got {images.dtype} {images.shape}")
    if targets is not None and (targets.ndim != 2 or targets.shape[0] != images.shape[0]):
        raise ConfigError(f"targets must be N x L with N = {images.shape[0]}, got {targets.shape}")


def fit(model: Any, images: np.ndarray, targets: np.ndarray, config: FinetuneConfig, *,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns one row per epoch (``epoch``, ``loss``, ``seconds``, ``lr``).

    The head's bias (``model.head``) starts at the log-odds of each label's frequency.
    """
    import torch

    _check(images, targets)
    cfg = config
    n = images.shape[0]
    if n < 2:
        raise ConfigError("fine-tuning needs at least two images")
    device = torch.device(cfg.device)
    model.to(device)
    y_all = torch.from_numpy(np.asarray(targets, np.float32))
    with torch.no_grad():
        prior = y_all.mean(0).clamp(0.01, 0.99)
        model.head.bias.copy_(torch.log(prior / (1 - prior)).to(device))
    steps = n // cfg.batch + (1 if n % cfg.batch > 1 else 0)
    total = max(1, steps * cfg.epochs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    history = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        order = np.random.default_rng([int(cfg.seed), epoch]).permutation(n)
        losses, lr = [], float(sched.get_last_lr()[0])
        for s in range(steps):
            idx = order[s * cfg.batch:(s + 1) * cfg.batch]
            batch = np.stack([augment(images[i], rng_for(cfg.seed, epoch, int(i)), cfg.augment) for i in idx])
            x = to_input(batch).to(device)
            y = y_all[idx].to(device) * (1.0 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lr, "images": int(min(n, steps * cfg.batch)),
               "seconds": round(time.perf_counter() - t0, 3)}
        history.append(row)
        if on_epoch:
            on_epoch(row)
    model.eval()
    return history


def predict(model: Any, images: np.ndarray, *, batch: int = 32, device: str = "cpu") -> np.ndarray:
    """``N x L`` sigmoid probabilities of ``model`` (eval mode, no augmentation)."""
    import torch

    _check(images)
    model.eval()
    model.to(torch.device(device))
    out = []
    with torch.no_grad():
        for s in range(0, images.shape[0], max(1, batch)):
            out.append(torch.sigmoid(model(to_input(images[s:s + batch]).to(device))).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
