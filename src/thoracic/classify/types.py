"""What a classifier says about one image: :class:`Classification`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from thoracic.errors import ConfigError
from thoracic.labels import FINDINGS
from thoracic.transform import Affine

__all__ = ["Classification"]


@dataclass(frozen=True)
class Classification:
    """A classifier's probabilities for one image.

    Attributes
    ----------
    p_abnormal:
        P(abnormal): the 2-class filter's input.
    probabilities:
        Every output of the model by label name: ``normal`` and ``abnormal`` for a 2-class
        (softmax) model; ``abnormal`` and VinDr findings for a multi-label (sigmoid) one, each an
        independent probability.
    image_size:
        ``(width, height)`` of the original image.
    feature:
        The last feature map (``C x h x w``), when asked for and the model outputs one.
    cam_weights:
        The head's ``L x C`` weights (one row per label of ``probabilities``), with ``feature``.
    feature_transform:
        Maps model-input pixels (``feature_input`` square) to the original image; with ``feature``.
    feature_input:
        Side of the model input in pixels (0 without a feature map).
    """

    p_abnormal: float
    probabilities: Mapping[str, float] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)
    feature: np.ndarray | None = field(default=None, repr=False)
    cam_weights: np.ndarray | None = field(default=None, repr=False)
    feature_transform: Affine | None = field(default=None, repr=False)
    feature_input: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "probabilities", MappingProxyType({str(k): float(v) for k, v in self.probabilities.items()}))

    def __reduce__(self) -> tuple[type[Classification], tuple[object, ...]]:
        # a mappingproxy does not pickle: rebuild from a plain dict (results cross processes, e.g. on Ray)
        return (type(self), (self.p_abnormal, dict(self.probabilities), self.image_size, self.feature, self.cam_weights,
                             self.feature_transform, self.feature_input))

    @property
    def findings(self) -> dict[str, float]:
        """The probability of each VinDr finding the model has an output for (empty for a 2-class model)."""
        return {k: v for k, v in self.probabilities.items() if k in FINDINGS}

    @property
    def has_maps(self) -> bool:
        """A class activation map per label can be made (:meth:`finding_map`)."""
        return self.feature is not None and self.cam_weights is not None and self.feature_transform is not None

    def finding_map(self, label: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """The class activation map of ``label`` on the original image (``height x width``, ``[0, 1]``).

        ``size`` ``(width, height)`` gives the map at that size instead (the original image
        scaled to it, e.g. a display image), computed there directly rather than resized.

        Raises
        ------
        ConfigError
            No feature map was kept (classify with ``features=True`` a model that has one), or
            the model has no output ``label``.
        """
        f, w, t = self.feature, self.cam_weights, self.feature_transform
        if f is None or w is None or t is None:
            raise ConfigError("no class activation maps: classify with features=True, with a multi-label "
                              "classifier that outputs its feature map and head weights")
        names = list(self.probabilities)
        if label not in names:
            raise ConfigError.unknown("classifier label", label, names)
        from thoracic.explain import finding_map

        if size is None or tuple(size) == tuple(self.image_size):
            return finding_map(f, w, names.index(label), self.feature_input, t, self.image_size)
        (ow, oh), (sw, sh) = self.image_size, (int(size[0]), int(size[1]))
        if min(ow, oh, sw, sh) < 1:
            raise ConfigError(f"cannot scale a {ow}x{oh} image's map to {sw}x{sh}")
        return finding_map(f, w, names.index(label), self.feature_input, t.then(Affine(sw / ow, sh / oh)), (sw, sh))
