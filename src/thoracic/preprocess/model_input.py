"""Model inputs from radiographs: a chain run as training saw it (8-bit, then the final letterbox)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from thoracic.errors import PreprocessedImageError
from thoracic.io.radiograph import Radiograph, ReadConfig
from thoracic.io.read import Source
from thoracic.io.read import read as read_file
from thoracic.preprocess.chain import Chain, Prepared, Step
from thoracic.preprocess.geometry import letterbox
from thoracic.transform import Affine

__all__ = ["ModelSource", "model_pixels", "prepare_8bit", "prepare_8bit_many", "refuse_preprocessed"]

#: What a model's ``prepare`` (and so its ``predict``) takes: a file, bytes or a stream, a read
#: radiograph, or an input already prepared for it.
ModelSource = Source | Radiograph | Prepared


def _split(chain: Chain) -> tuple[Chain, Step | None]:
    """``chain`` without its final letterbox (what runs before the 8-bit image), and that letterbox."""
    steps = chain.steps
    if steps and steps[-1].name == "letterbox":
        return Chain(chain.name, steps[:-1], chain.normalize, chain.description), steps[-1]
    return chain, None


def refuse_preprocessed(radiograph: Radiograph, what: str) -> None:
    """Refuse an image ``thoracic dataset export`` wrote through a chain with steps, which ``what``
    (a model's chain, a lung crop) would apply again.

    Raises
    ------
    PreprocessedImageError
        ``radiograph.export_chain`` names a chain with steps (a PNG of the export).
    """
    if radiograph.export_chain is None or not radiograph.export_chain[1]:
        return
    name, spec = radiograph.export_chain
    raise PreprocessedImageError(
        f"this image was written by `dataset export` through chain {name} ({spec}), and {what} would apply "
        f"preprocessing to it again (a second crop, a second CLAHE, ...): predict the original images",
        path=radiograph.source, chain=f"{name} ({spec})",
    )


def prepare_8bit(chain: Chain, src: Source | Radiograph, read: ReadConfig | None = None, *,
                 image_id: str | None = None) -> Prepared:
    """Run ``chain`` as training saw it: steps up to the final letterbox, 8-bit, then letterbox.

    The training export writes 8-bit PNGs through the chain and ultralytics letterboxes those
    8-bit images (``cv2.INTER_LINEAR``, grey 114); doing the same here makes the model's input
    identical to what ultralytics' predictor would feed it. ``src`` is a radiograph read with
    the chain's normalization, or a file (a path, bytes or a binary file) read here with the
    options of the steps before the letterbox on top of ``read``.
    """
    if not isinstance(src, Radiograph):
        src = read_file(src, _split(chain)[0].read_options(read), image_id=image_id)
    return prepare_8bit_many((chain,), {chain.normalize: src})[chain]


def prepare_8bit_many(chains: Iterable[Chain], radiographs: Mapping[str, Radiograph], *,
                      levels: bool = False) -> dict[Chain, Prepared]:
    """:func:`prepare_8bit` of several chains on one image, each shared part run once.

    Chains that differ only in their final letterbox (the shipped detector at 512 and classifier
    at 320 both resize to 512 and apply CLAHE first) share the 8-bit image before it. Each result
    equals ``prepare_8bit(chain, radiographs[chain.normalize])``; with ``levels`` its pixels are
    the 8-bit levels themselves (``uint8``, a quarter of the bytes to send between processes),
    which :class:`OnnxDetector` and the classifier read as ``level / 255``, exactly the floats.

    An image ``dataset export`` wrote through a chain with steps is refused
    (:func:`refuse_preprocessed`) by every chain with steps before its final letterbox.
    """
    bases: dict[tuple[str, tuple[Step, ...]], tuple[np.ndarray, Affine, Radiograph]] = {}
    out: dict[Chain, Prepared] = {}
    for chain in chains:
        if chain in out:
            continue
        base, last = _split(chain)
        if base.steps:
            refuse_preprocessed(radiographs[chain.normalize], f"the model's chain {chain.describe()}")
        key = (base.normalize, base.steps)
        if key not in bases:
            prepared = base.run(radiographs[chain.normalize])
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
