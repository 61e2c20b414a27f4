"""Model inputs from radiographs: a chain run as training saw it (8-bit, then the final letterbox)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from thoracic.io.radiograph import Radiograph, ReadOptions
from thoracic.preprocess.chain import Chain, Prepared
from thoracic.preprocess.geometry import letterbox

__all__ = ["model_pixels", "prepare_8bit", "prepare_8bit_many"]


def prepare_8bit(chain: Chain, src: Any, read: ReadOptions | None = None, *, image_id: str | None = None) -> Prepared:
    """Run ``chain`` as training saw it: steps up to the final letterbox, 8-bit, then letterbox.

    The training export writes 8-bit PNGs through the chain and ultralytics letterboxes those
    8-bit images (``cv2.INTER_LINEAR``, grey 114); doing the same here makes the model's input
    identical to what ultralytics' predictor would feed it.
    """
    steps = chain.steps
    last = steps[-1] if steps and steps[-1].name == "letterbox" else None
    base = Chain(chain.name, steps[:-1], chain.normalize, chain.description) if last else chain
    prepared = base.run(src) if isinstance(src, Radiograph) else base.load(src, read, image_id=image_id)
    u8 = prepared.to_uint8()
    transform = prepared.transform
    if last is not None:
        params = dict(last.params)
        u8, t = letterbox(u8, int(params["size"]), pad_value=114, interpolation=params.get("interpolation", "linear"))
        transform = transform.then(t)
    pixels = u8.astype(np.float32) / np.float32(255.0)
    return Prepared(pixels=pixels, transform=transform, radiograph=prepared.radiograph)


def prepare_8bit_many(chains: Iterable[Chain], radiographs: Mapping[str, Radiograph], *,
                      levels: bool = False) -> dict[Chain, Prepared]:
    """:func:`prepare_8bit` of several chains on one image, each shared part run once.

    Chains that differ only in their final letterbox (the shipped detector at 512 and classifier
    at 320 both resize to 512 and apply CLAHE first) share the 8-bit image before it. Each result
    equals ``prepare_8bit(chain, radiographs[chain.normalize])``; with ``levels`` its pixels are
    the 8-bit levels themselves (``uint8``, a quarter of the bytes to send between processes),
    which :class:`OnnxDetector` and the classifier read as ``level / 255``, exactly the floats.
    """
    bases: dict[tuple[str, tuple[Any, ...]], tuple[np.ndarray, Any, Radiograph]] = {}
    out: dict[Chain, Prepared] = {}
    for chain in chains:
        if chain in out:
            continue
        steps = chain.steps
        last = steps[-1] if steps and steps[-1].name == "letterbox" else None
        key = (chain.normalize, steps[:-1] if last else steps)
        if key not in bases:
            prepared = Chain(chain.name, key[1], chain.normalize, chain.description).run(radiographs[chain.normalize])
            bases[key] = (prepared.to_uint8(), prepared.transform, prepared.radiograph)
        u8, transform, rg = bases[key]
        if last is not None:
            params = dict(last.params)
            u8, t = letterbox(u8, int(params["size"]), pad_value=114, interpolation=params.get("interpolation", "linear"))
            transform = transform.then(t)
        out[chain] = Prepared(pixels=u8 if levels else u8.astype(np.float32) / np.float32(255.0), transform=transform,
                              radiograph=rg)
    return out


#: ``level / 255`` in float32 for every 8-bit level: what ``u8.astype(np.float32) / 255`` gives.
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


def model_pixels(pixels: np.ndarray) -> np.ndarray:
    """A prepared image as the models' float32 ``0..1``: 8-bit levels (``uint8``) become ``level / 255``."""
    return _LEVELS[pixels] if pixels.dtype == np.uint8 else pixels
