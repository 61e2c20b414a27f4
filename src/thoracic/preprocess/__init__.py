"""Preprocessing: composable array steps, geometric transforms with inverses, named chains."""

from thoracic.io.voi import (
    minmax,
    percentile_bounds,
    percentile_window,
    truncate_8bit,
    window,
)
from thoracic.preprocess.chain import (
    CHAINS,
    STEPS,
    Chain,
    Prepared,
    Step,
    get_chain,
    list_chains,
    register_chain,
    register_step,
)
from thoracic.preprocess.geometry import (
    Affine,
    crop,
    hflip,
    letterbox,
    resize,
    resize_longest,
)
from thoracic.preprocess.intensity import (
    clahe,
    denoise_bilateral,
    denoise_median,
    denoise_nlm,
    equalize,
    to_uint8,
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
    "register_chain",
    "register_step",
    "resize",
    "resize_longest",
    "to_uint8",
    "truncate_8bit",
    "window",
    "zscore",
]
