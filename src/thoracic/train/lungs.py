"""Training of the lung UNet (needs the ``train`` extra: torch).

The data set is read once through the model's own contract (:meth:`LungsMeta.prepare`, the
function inference calls) and kept in memory at the input size; augmentation runs on those
arrays. Training writes a checkpoint after every epoch and resumes from it.

Only pairs of ``split=train`` are used by :func:`train_lungs`; ``eval_nc`` (CC BY-NC-SA) is for
measurement only and never reaches a model that ships.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from thoracic.anatomy.postprocess import postprocess
from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.io.radiograph import ReadConfig
from thoracic.io.read import read
from thoracic.models.meta import LungsMeta
from thoracic.models.runtime import write_meta
from thoracic.preprocess.intensity import to_uint8

__all__ = [
    "AUGMENTATIONS",
    "LungPair",
    "LungsTrainConfig",
    "architecture",
    "augment",
    "dice_iou",
    "export_onnx",
    "load_arrays",
    "load_pairs",
    "train_lungs",
    "train_model",
]

log = logging.getLogger("thoracic.train")


def _torch():
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError.for_feature("training the lung model", "torch", "train") from err
    return torch


#: ``--augment`` choices: ``standard`` (the shipped model's) and ``strong`` (see :func:`augment`).
AUGMENTATIONS: tuple[str, ...] = ("standard", "strong")


@dataclass(frozen=True)
class LungsTrainConfig:
    """Settings of one training run (written to ``config.json`` next to the model).

    ``encoder_lr`` is the peak learning rate of an EfficientNet encoder's weights (``None``: ``lr``,
    as the decoder's); ``augment`` names the augmentation (:data:`AUGMENTATIONS`).
    """

    data: str
    out: str
    split: str = "train"
    size: int = 192
    encoder: str = "unet"  # or an EfficientNet-Lite (ImageNet-pretrained), thoracic.train.effunet.ENCODERS
    base: int = 16
    depth: int = 4
    epochs: int = 60
    batch: int = 4
    lr: float = 1e-3
    encoder_lr: float | None = None
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    hflip: bool = False
    rotate: float = 10.0
    scale: float = 0.15
    shift: float = 0.06
    augment: str = "standard"
    seed: int = 0
    threads: int = 2
    folds: int = 0
    fold: int = -1
    export: bool = True
    threshold: float = 0.5  # post-processing, chosen by cross-validation; stored in the model's contract

    def __post_init__(self) -> None:
        from thoracic.train.effunet import ENCODERS

        if self.encoder != "unet" and self.encoder not in ENCODERS:
            raise ConfigError.unknown("lung encoder", self.encoder, ("unet", *ENCODERS))
        if self.encoder != "unet" and self.size % 32:
            raise ConfigError(f"--size must be a multiple of 32 for --encoder {self.encoder}, got {self.size}")
        if self.size % (2**self.depth):
            raise ConfigError(f"--size must be a multiple of {2**self.depth}, got {self.size}")
        if self.encoder_lr is not None:
            if self.encoder == "unet":
                raise ConfigError("--encoder-lr needs a pretrained encoder (--encoder efficientnet-liteN)")
            if not self.encoder_lr >= 0:
                raise ConfigError(f"--encoder-lr must be >= 0, got {self.encoder_lr}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError.unknown("augmentation", self.augment, AUGMENTATIONS)
        if self.epochs < 1 or self.batch < 1:
            raise ConfigError("epochs and batch must be positive")
        if self.folds and not 0 <= self.fold < self.folds:
            raise ConfigError(f"--fold must lie in 0..{self.folds - 1}")


@dataclass(frozen=True)
class LungPair:
    image: str
    mask: str
    image_id: str
    split: str
    license: str
    source_url: str


def load_pairs(data: str | os.PathLike[str], split: str | None = "train") -> list[LungPair]:
    """The rows of ``pairs.csv`` of a lung data set (``images/``, ``masks/``), sorted by image id."""
    root = Path(data)
    table = root / "pairs.csv"
    if not table.is_file():
        raise ConfigError(f"{root}: no pairs.csv; point --data at the lung data set (images/, masks/, pairs.csv)")
    rows = []
    with table.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if split is not None and r["split"] != split:
                continue
            rows.append(
                LungPair(
                    image=str(root / "images" / r["image"]),
                    mask=str(root / "masks" / r["mask"]),
                    image_id=Path(r["image"]).stem,
                    split=r["split"],
                    license=r.get("license", r.get("licence", "")),
                    source_url=r.get("source_url", ""),
                )
            )
    if not rows:
        raise ConfigError(f"{table}: no pairs with split={split!r}")
    return sorted(rows, key=lambda p: p.image_id)


def read_mask(path: str) -> np.ndarray:
    m = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ConfigError(f"{path}: cannot read the mask")
    return m > 127


def load_arrays(pairs: Sequence[LungPair], contract: LungsMeta) -> tuple[np.ndarray, np.ndarray]:
    """Images (``[0, 1]``, the chain's output) and soft masks at the input size, as ``(N, H, W)``."""
    w, h = contract.input_size
    images, masks = [], []
    for p in pairs:
        rg = read(p.image, contract.chain.read_options(ReadConfig(check_content=False)))  # training films, as given
        images.append(contract.prepare(rg).pixels)
        m = read_mask(p.mask).astype(np.float32)
        if m.shape != rg.pixels.shape:
            raise ConfigError(f"{p.mask}: mask size {m.shape} differs from the image's {rg.pixels.shape}")
        masks.append(cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA))
    return np.stack(images).astype(np.float32), np.stack(masks).astype(np.float32)


def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: LungsTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Random affine (rotation, scale, shift), optional mirror, and intensity changes (gamma, contrast).

    ``cfg.augment == "strong"`` adds, to the same draws, a change of aspect (the width stretched and
    the height shrunk by the same factor, up to ``e^±0.1``: the chain resizes without keeping the
    aspect, so films of other shapes reach the model squeezed differently) and then the
    classifier's augmentation for other sites on the 8-bit image (:func:`thoracic.train.augment.augment`
    without its geometry: window, gamma, contrast, CLAHE, blur, noise, JPEG).
    """
    h, w = img.shape
    strong = cfg.augment == "strong"
    if rng.random() < 0.85:
        angle = rng.uniform(-cfg.rotate, cfg.rotate)
        scale = math.exp(rng.uniform(-cfg.scale, cfg.scale))
        mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        mat[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
        if strong:
            a = math.exp(rng.uniform(-0.1, 0.1))
            stretch = np.array([[a, 0, (1 - a) * w / 2], [0, 1 / a, (1 - 1 / a) * h / 2], [0, 0, 1]])
            mat = mat @ stretch
        img = cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = cv2.warpAffine(mask, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if cfg.hflip and rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    img = np.clip(img, 0.0, 1.0) ** np.float32(math.exp(rng.uniform(-0.4, 0.4)))
    img = (img - 0.5) * np.float32(rng.uniform(0.75, 1.3)) + 0.5 + np.float32(rng.uniform(-0.1, 0.1))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        img = img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape).astype(np.float32)
    if strong:
        from thoracic.train.augment import AugmentConfig
        from thoracic.train.augment import augment as site_augment

        img = site_augment(to_uint8(img), rng, AugmentConfig(p_geometry=0.0)).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32), np.ascontiguousarray(mask, dtype=np.float32)


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks (1.0 for two empty masks)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    inter = float(np.logical_and(p, t).sum())
    ps, ts = float(p.sum()), float(t.sum())
    union = ps + ts - inter
    if ps + ts == 0:
        return 1.0, 1.0
    return 2 * inter / (ps + ts), inter / union


#: Settings that do not change the trained weights (a run may resume with other values).
_RUNTIME_ONLY = ("threads", "export", "threshold")


def _training_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RUNTIME_ONLY}


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config`` with the defaults of settings added since it was written (an older checkpoint)."""
    defaults = {f.name: f.default for f in fields(LungsTrainConfig) if f.default is not MISSING}
    return {**defaults, **config}


def _param_groups(model: Any, cfg: LungsTrainConfig) -> list[dict[str, Any]]:
    """The optimizer's groups: everything at ``cfg.lr`` (first), an encoder at ``cfg.encoder_lr`` when given."""
    if cfg.encoder_lr is None:
        return [{"params": list(model.parameters()), "lr": cfg.lr}]
    encoder = {id(p) for p in model.encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder]
    return [{"params": rest, "lr": cfg.lr}, {"params": list(model.encoder.parameters()), "lr": cfg.encoder_lr}]


def _build(cfg: LungsTrainConfig, *, pretrained: bool = True):
    if cfg.encoder != "unet":
        from thoracic.train.effunet import build_effnet_unet

        return build_effnet_unet(cfg.encoder, cfg.size, pretrained=pretrained)
    from thoracic.train.unet import build_unet

    return build_unet(base=cfg.base, depth=cfg.depth)


def architecture(cfg: LungsTrainConfig) -> str:
    """The ``architecture`` line of the model's metadata."""
    if cfg.encoder == "unet":
        return f"UNet base={cfg.base} depth={cfg.depth}"
    from thoracic.train.effunet import DEFAULT_DECODER

    return (f"UNet with an {cfg.encoder} encoder (ImageNet-pretrained, fine-tuned end to end), decoder "
            f"{'-'.join(map(str, DEFAULT_DECODER))}")


def _loss(logits, target):
    torch = _torch()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    dice = (2 * inter + 1.0) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1.0)
    return bce + (1 - dice).mean()


def predict_small(model, images: np.ndarray, contract: LungsMeta, batch: int = 8) -> np.ndarray:
    """Probabilities at the input size for ``(N, H, W)`` chain outputs (torch, eval mode)."""
    torch = _torch()
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = np.concatenate([contract.to_input(im) for im in images[i : i + batch]])
            out.append(torch.sigmoid(model(torch.from_numpy(x))).numpy()[:, 0])
    return np.concatenate(out)


def evaluate_full(prob_small: np.ndarray, pair: LungPair, contract: LungsMeta) -> tuple[float, float, np.ndarray]:
    """Dice and IoU at the original size after the contract's post-processing, and the mask."""
    truth = read_mask(pair.mask)
    h, w = truth.shape
    prob = cv2.resize(prob_small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    mask = postprocess(prob, contract.threshold, contract.keep_components, contract.fill_holes)
    d, j = dice_iou(mask > 0, truth)
    return d, j, mask


def train_model(
    cfg: LungsTrainConfig,
    images: np.ndarray,
    masks: np.ndarray,
    out: Path,
    contract: LungsMeta,
    *,
    val: tuple[np.ndarray, list[LungPair]] | None = None,
    val_every: int = 5,
    progress: Callable[[dict[str, Any]], None] | None = None,
):
    """Train a UNet on in-memory arrays; checkpoint every epoch in ``out`` and resume from it."""
    torch = _torch()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    model = _build(cfg).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(images) / cfg.batch)
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))) * 0.99 + 0.01

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ckpt = out / "checkpoint.pt"
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if _training_settings(_with_defaults(state["config"])) != _training_settings(asdict(cfg)):
            raise ConfigError(f"{ckpt}: a checkpoint of other settings; use another --out or delete it")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["epoch"]
        log.info("resuming after epoch %d", start)
    logfile = out / "log.csv"
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(len(images))
        losses = []
        for i in range(0, len(order), cfg.batch):
            idx = order[i : i + cfg.batch]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            pairs = [augment(images[k], masks[k], rng, cfg) for k in idx]
            x = np.stack([contract.to_input(p[0])[0] for p in pairs])
            y = np.stack([p[1] for p in pairs])[:, None]
            xt = torch.from_numpy(x).to(memory_format=torch.channels_last)
            loss = _loss(model(xt), torch.from_numpy(y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"],
                               "seconds": round(time.time() - t0, 1)}
        if val is not None and ((epoch + 1) % val_every == 0 or epoch + 1 == cfg.epochs):
            probs = predict_small(model, val[0], contract)
            scores = [evaluate_full(p, pair, contract)[0] for p, pair in zip(probs, val[1])]
            row["val_dice"] = float(np.mean(scores))
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch + 1, "config": asdict(cfg)}, str(ckpt) + ".tmp")
        os.replace(str(ckpt) + ".tmp", ckpt)
        new = not logfile.is_file()
        with logfile.open("a") as fh:
            fh.write(("epoch,loss,lr,seconds,val_dice\n" if new else "")
                     + f"{row['epoch']},{row['loss']:.5f},{row['lr']:.6g},{row['seconds']},{row.get('val_dice', '')}\n")
        if progress:
            progress(row)
    model.eval()
    return model


def export_onnx(model, contract: LungsMeta, path: str | os.PathLike[str], *, check: np.ndarray | None = None) -> float:
    """Write the model as ONNX (opset 17, dynamic batch) with the contract in its metadata.

    Returns the largest absolute difference between ONNX Runtime's and torch's logits on
    ``check`` (a ``(N, 1, H, W)`` input; a random one if ``None``).
    """
    torch = _torch()
    import onnx
    import onnxruntime as ort

    w, h = contract.input_size
    model = model.to(memory_format=torch.contiguous_format).eval()
    dummy = torch.zeros(1, 1, h, w)
    path = str(path)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of torch.export (which needs onnxscript);
        # it still writes the plain opset-17 graph this model needs
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), path, opset_version=17, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    proto = onnx.load(path)
    write_meta(proto, contract)
    proto.producer_name = "thoracic"
    proto.doc_string = "thoracic lung segmentation UNet; input contract in metadata_props['thoracic.contract']"
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    x = check if check is not None else np.random.default_rng(0).normal(size=(2, 1, h, w)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x})[0]
    return float(np.abs(got - ref).max())


def _fold_split(n: int, folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    val = np.sort(order[fold::folds])
    return np.setdiff1d(np.arange(n), val), val


def train_lungs(cfg: LungsTrainConfig, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train the lung model as shipped (or one cross-validation fold), export ONNX, write a summary."""
    torch = _torch()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(cfg.data, cfg.split)
    licences = sorted({p.license for p in pairs})
    contract = LungsMeta.default(
        cfg.size,
        threshold=cfg.threshold,
        training_data=f"lungseg split={cfg.split} ({len(pairs)} pairs): covid-chestxray-dataset images "
        "(Cohen et al.), v7labs lung masks (CC BY 4.0)",
        training_licences=licences,
        architecture=architecture(cfg),
    )
    if (out / "config.json").is_file():  # a resumed run: keep the first settings next to the log
        (out / "config.resumed.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True))
    else:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True))
    t0 = time.time()
    images, masks = load_arrays(pairs, contract)
    val = None
    train_idx = np.arange(len(pairs))
    if cfg.folds:
        train_idx, val_idx = _fold_split(len(pairs), cfg.folds, cfg.fold, cfg.seed)
        val = (images[val_idx], [pairs[i] for i in val_idx])
    log.info("data: %d pairs loaded in %.1fs", len(pairs), time.time() - t0)
    model = train_model(cfg, images[train_idx], masks[train_idx], out, contract, val=val, progress=progress)
    summary: dict[str, Any] = {"config": asdict(cfg), "pairs": len(pairs), "licences": licences,
                               "parameters": int(sum(p.numel() for p in model.parameters()))}
    if getattr(model, "pretrained", None) is not None:
        summary["pretrained"] = model.pretrained.to_dict()
    if val is not None:
        probs = predict_small(model, val[0], contract)
        rows = []
        for p, pair in zip(probs, val[1]):
            d, j, _ = evaluate_full(p, pair, contract)
            rows.append({"image_id": pair.image_id, "license": pair.license, "dice": d, "iou": j})
            np.save(out / f"oof_{pair.image_id}.npy", p.astype(np.float16))
        with (out / "fold_scores.csv").open("w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=["image_id", "license", "dice", "iou"])
            wr.writeheader()
            wr.writerows(rows)
        summary["val_dice_mean"] = float(np.mean([r["dice"] for r in rows]))
    torch.save(model.state_dict(), out / "model.pt")
    if cfg.export:
        sample = np.concatenate([contract.to_input(im) for im in images[:2]])
        summary["onnx_max_abs_diff"] = export_onnx(model, contract, out / "lungs.onnx", check=sample)
        summary["onnx_bytes"] = (out / "lungs.onnx").stat().st_size
    (out / "contract.json").write_text(json.dumps(contract.to_dict(), indent=2, sort_keys=True))
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary
