"""``thoracic models``: the shipped models, the back-end each loads on and its accepted reduced precisions."""

from __future__ import annotations

from thoracic.cli.main import main
from thoracic.models import file_sha256, model_path
from thoracic.models.runtime import accepted_precisions


def test_models_lists_each_shipped_model_with_its_backend_and_accepted_precisions(capsys):
    assert main(["models", "--backend", "onnxruntime", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["role", "file", "sha256", "backend", "accepted"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    for kind in ("detector", "classifier", "lungs"):
        sha = file_sha256(model_path(kind))
        accepted = ",".join(accepted_precisions(sha)) or "-"
        assert rows[kind][1:] == [f"{kind}.onnx", sha[:12], "onnxruntime-cpu", accepted]
    assert any(line.startswith("(accepted: ") for line in lines[4:])


def test_models_refuses_bf16_on_onnxruntime(capsys):
    assert main(["models", "--backend", "onnxruntime", "--precision", "bf16"]) != 0
    assert "needs the OpenVINO back-end" in capsys.readouterr().err


def test_models_shows_the_backend_auto_picks(require, capsys):
    """``--backend auto`` (the default) on the CPU: OpenVINO where it is installed, in float32
    unless the file's bf16 accuracy check passed (``--precision auto``)."""
    require("openvino")
    assert main(["models", "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert [r[0] for r in rows] == ["detector", "classifier", "lungs"]
    for _, _, _, backend, accepted in rows:
        assert backend in (("openvino-f32", "openvino-bf16") if "bf16" in accepted.split(",") else ("openvino-f32",))
