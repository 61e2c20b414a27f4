"""``thoracic models``: the shipped models and the back-end each loads on."""

from __future__ import annotations

from thoracic.cli.main import main
from thoracic.models import file_sha256, model_path


def test_models_lists_each_shipped_model_with_its_backend(capsys):
    assert main(["models", "--backend", "onnxruntime", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["role", "file", "sha256", "backend"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    for kind in ("detector", "classifier", "lungs"):
        assert rows[kind][1:] == [f"{kind}.onnx", file_sha256(model_path(kind))[:12], "onnxruntime-cpu"]


def test_models_refuses_bf16_on_onnxruntime(capsys):
    assert main(["models", "--backend", "onnxruntime", "--precision", "bf16"]) != 0
    assert "needs the OpenVINO back-end" in capsys.readouterr().err
