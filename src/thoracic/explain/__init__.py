"""Heatmaps for interpretability, computed without torch.

:func:`eigencam` turns a detector's intermediate feature map (which every exported thoracic
detector outputs beside its predictions) into a saliency map: the projection of each location's
activation vector on the first principal component of all locations (Eigen-CAM, Muhammad &
Yeasin 2020). :func:`to_original` maps it onto the original image through the transform the
preprocessing recorded, so it lines up with the boxes. :func:`class_activation_maps` gives a
multi-label classifier's map per label from its last feature map and head weights (both outputs
of its ONNX file), and :func:`finding_map` one of them on the original image. :func:`colorize` and :func:`blend` make
pictures of it.
"""

from __future__ import annotations

from thoracic.explain.cam import blend, class_activation_maps, colorize, eigencam, finding_map, to_original

__all__ = ["blend", "class_activation_maps", "colorize", "eigencam", "finding_map", "to_original"]
