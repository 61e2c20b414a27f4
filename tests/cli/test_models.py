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
    presets = lines[lines.index(next(x for x in lines if x.startswith("presets "))) + 1:]
    assert [line.split(":")[0].strip() for line in presets] == ["fast"]


def test_models_refuses_bf16_on_onnxruntime(capsys):
    assert main(["models", "--backend", "onnxruntime", "--precision", "bf16"]) != 0
    assert "needs the OpenVINO back-end" in capsys.readouterr().err


def test_models_shows_the_backend_auto_picks(require, capsys):
    """``--backend auto`` and ``--precision auto`` (the defaults) on the CPU: OpenVINO where it is
    installed, in bf16 for a file whose check accepted it on a CPU with bf16, else float32."""
    require("openvino")
    from thoracic.models import file_sha256, model_path
    from thoracic.models.runtime import resolve_precision

    assert main(["models", "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert [r[0] for r in rows] == ["detector", "classifier", "lungs"]
    want = [f"openvino-{resolve_precision('openvino', 'auto', sha256=file_sha256(model_path(k)))}"
            for k in ("detector", "classifier", "lungs")]
    assert [r[3] for r in rows] == want
    assert main(["models", "--device", "cpu", "--precision", "f32"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert [r[3] for r in rows] == ["openvino-f32"] * 3
