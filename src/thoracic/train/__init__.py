"""Training (the ``train`` extra: torch, ultralytics); nothing here is imported by inference.

- :mod:`.detector`: YOLOv5u detectors with ultralytics, offline; :mod:`.export`: their ONNX
  export with thoracic's metadata; :mod:`.yolov5_import`: original-YOLOv5 checkpoints;
- :mod:`.weights`: the starting weights thoracic knows (source, sha256, licence; no torch needed);
- :mod:`.classifier`: the normal/abnormal classifier (the linear probe, or an EfficientNet-Lite
  fine-tuned with :mod:`.effnet`, :mod:`.finetune` and :mod:`.augment`);
- :mod:`.lungs` and :mod:`.unet`: the lung segmentation UNet.
"""
