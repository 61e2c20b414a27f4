"""The one read decision: which reads and model inputs a predictor needs for an image.

:func:`read_plan` makes it for a :class:`~thoracic.inference.predictor.Predictor` (whose
``read``, ``prepare`` and ``predict`` follow it, decoding in full) and for the batch predictor
(which may decode JPEG 2000 at a reduced resolution).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thoracic.io.radiograph import Normalize, Radiograph, ReadConfig
from thoracic.io.read import Source, read
from thoracic.preprocess.chain import Chain, Prepared
from thoracic.preprocess.model_input import prepare_8bit_many

if TYPE_CHECKING:
    from thoracic.inference.predictor import Predictor

__all__ = ["ReadPlan", "read_plan"]


@dataclass(frozen=True)
class ReadPlan:
    """What a reader does for one image: one read per normalization the models need, then the
    preprocessing of every model input it can make without a model (``chains``)."""

    options: tuple[tuple[str, ReadConfig], ...]
    chains: tuple[Chain, ...] = ()
    complete: bool = False  # ``chains`` cover every model: predicting needs no pixels beyond them

    def read(self, src: Source, image_id: str | None = None) -> dict[str, Radiograph]:
        """Read ``src`` once per normalization: ``{normalize: Radiograph}`` (for ``predict_read``)."""
        return {norm: read(src, opts, image_id=image_id) for norm, opts in self.options}

    def prepare(self, radiographs: Mapping[str, Radiograph], *, levels: bool = False) -> dict[Chain, Prepared]:
        """The model inputs of ``chains`` from what :meth:`read` returned, each shared step once
        (:func:`~thoracic.preprocess.model_input.prepare_8bit_many`; a chain whose normalization
        was not read takes the first radiograph)."""
        any_rg = next(iter(radiographs.values()))
        mapped: dict[str, Radiograph] = {c.normalize: radiographs.get(c.normalize) or any_rg for c in self.chains}
        return prepare_8bit_many(self.chains, mapped, levels=levels)

    def load(self, src: Source, image_id: str | None = None, *, detach: bool = False,
             ) -> tuple[dict[str, Radiograph], dict[Chain, Prepared]]:
        """Read and preprocess: the arguments of :meth:`Predictor.predict_read` (``radiographs, prepared=``).

        ``detach``: keep the model inputs as their 8-bit levels (``uint8``, which the models read
        exactly as the floats), and when they are all there (``complete``), drop the decoded
        pixels and the DICOM header from the radiographs, so that a prefetched image holds (and
        a reader process sends back) only the small model inputs and the image's metadata.
        """
        radiographs = self.read(src, image_id)
        prepared = self.prepare(radiographs, levels=detach)
        if not (detach and self.complete):
            return radiographs, prepared
        light = {id(rg): dataclasses.replace(rg, pixels=np.zeros((0, 0), np.float32), dataset=None)
                 for rg in radiographs.values()}
        return ({k: light[id(rg)] for k, rg in radiographs.items()},
                {c: Prepared(p.pixels, p.transform, light[id(p.radiograph)]) for c, p in prepared.items()})


def read_plan(predictor: Predictor, base: ReadConfig | None = None, *, reduced_decode: bool = True) -> ReadPlan:
    """The reads :meth:`Predictor.predict` needs, with reduced JPEG 2000 decoding where it is exact enough.

    A normalization is decoded at a reduced resolution only when ``reduced_decode`` is set, every
    chain reading it starts with a resize to a fixed size (:meth:`Chain.decode_size
    <thoracic.preprocess.Chain.decode_size>`) and no lung crop is involved; the target is the
    largest of those sizes. The reader prepares the inputs of every model not on the predictor's
    lung crop (``lung_roi``); a model whose chain crops is prepared by its chain like any other
    (its ``lung_roi`` step does the one crop, and its chain never starts with a resize, so it
    is decoded in full).
    """
    base = base or ReadConfig()
    models: list[tuple[Chain, bool]] = [(d.chain, predictor.config.lung_roi) for d in predictor.detectors]
    if predictor.classifier is not None:
        models.append((predictor.classifier.meta.chain, False))
    sizes: dict[Normalize, list[int | None]] = {}
    for chain, crop in models:
        sizes.setdefault(chain.normalize, []).append(None if crop else chain.decode_size())
    options = []
    for norm, wanted in sizes.items():
        target = max(wanted) if reduced_decode and all(s is not None for s in wanted) else None  # type: ignore[type-var]
        options.append((norm, ReadConfig(normalize=norm, percentiles=base.percentiles, target_size=target,
                                          allow_non_chest=base.allow_non_chest, max_pixels=base.max_pixels,
                                          check_content=base.check_content)))
    return ReadPlan(tuple(options), tuple(chain for chain, crop in models if not crop),
                    complete=not any(crop for _, crop in models))
