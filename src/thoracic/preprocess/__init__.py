"""Preprocessing: composable array steps, geometric transforms with inverses, named chains."""

from .chain import CHAINS, STEPS, Chain, Prepared, Step, get_chain, list_chains
from .geometry import Affine, crop, hflip, letterbox, resize, resize_longest
from .intensity import (
    clahe,
    denoise_bilateral,
    denoise_median,
    denoise_nlm,
    equalize,
    minmax,
    percentile_bounds,
    percentile_window,
    to_uint8,
    truncate_8bit,
    window,
    zscore,
)

__all__ = [
    "Affine",
    "CHAINS",
    "Chain",
    "Prepared",
    "STEPS",
    "Step",
    "clahe",
    "crop",
    "denoise_bilateral",
    "denoise_median",
    "denoise_nlm",
    "equalize",
    "get_chain",
    "hflip",
    "letterbox",
    "list_chains",
    "minmax",
    "percentile_bounds",
    "percentile_window",
    "resize",
    "resize_longest",
    "to_uint8",
    "truncate_8bit",
    "window",
    "zscore",
]
