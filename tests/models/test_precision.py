"""Reduced precision only where its accuracy check passed: ``precision.json`` and ``--precision auto``."""

from __future__ import annotations

import json

import pytest

from thoracic.models import file_sha256, model_path, runtime
from thoracic.models.runtime import (
    PRECISION_CHECKS,
    accepted_precisions,
    onnx_backend,
    onnx_device,
    precision_check,
    resolve_precision,
)

#: The issue's limits (issue 18): the largest fall of each metric a reduced precision may cause.
LIMITS = {"map": 0.005, "auc": 0.005, "dice": 0.002}
#: What decides each kind's verdict.
CRITERIA = {"detector": {"map", "auc"}, "classifier": {"auc"}, "lungs": {"dice"}}


class _Core:
    """Stands in for ``openvino.Core`` where only the CPU's capabilities are asked."""

    def __init__(self, *capabilities: str) -> None:
        self.capabilities = list(capabilities)

    def get_property(self, device: str, name: str) -> list[str]:
        assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
        return self.capabilities


@pytest.fixture
def checks(tmp_path, monkeypatch):
    """A precision.json with one model whose bf16 check passed and one whose check failed."""
    path = tmp_path / "precision.json"
    path.write_text(json.dumps({"models": {
        "accepted": {"kind": "classifier", "bf16": {"passed": True}, "int8": {"passed": False, "shipped": False}},
        "rejected": {"kind": "detector", "bf16": {"passed": False}},
    }}))
    monkeypatch.setattr(runtime, "PRECISION_CHECKS", path)
    return path


def test_auto_uses_bf16_only_for_a_model_whose_check_passed(checks):
    bf16, plain = _Core("FP32", "BF16", "INT8"), _Core("FP32", "INT8")
    assert resolve_precision("openvino", "auto", sha256="accepted", core=bf16) == "bf16"
    for sha in ("rejected", "never-checked", ""):  # failed, or not measured: float32
        assert resolve_precision("openvino", "auto", sha256=sha, core=bf16) == "f32", sha
    assert resolve_precision("openvino", "auto", sha256="accepted", core=plain) == "f32"  # a CPU without bf16
    assert resolve_precision("onnxruntime", "auto", sha256="accepted") == "f32"  # ONNX Runtime runs float32
    assert resolve_precision("openvino", "f32", sha256="accepted", core=bf16) == "f32"  # f32 asked: f32
    # bf16 asked explicitly is the user's choice, check or not
    assert resolve_precision("openvino", "bf16", sha256="rejected", core=bf16) == "bf16"
    assert accepted_precisions("accepted") == ("bf16",) and accepted_precisions("rejected") == ()
    assert precision_check("accepted", "bf16") and not precision_check("accepted", "int8")


@pytest.mark.parametrize("text", ["not json", "[]", '{"models": []}', '{"models": {"accepted": "bf16"}}'])
def test_a_broken_checks_file_accepts_nothing(checks, text):
    checks.write_text(text)
    assert accepted_precisions("accepted") == ()
    assert resolve_precision("openvino", "auto", sha256="accepted", core=_Core("BF16")) == "f32"


def test_precision_json_names_only_shipped_model_ids_and_its_verdicts_follow_the_rule():
    doc = json.loads(PRECISION_CHECKS.read_text(encoding="utf-8"))
    assert doc["limits"] == LIMITS
    assert doc["models"], "no model checked"
    for sha, entry in doc["models"].items():
        kind = entry["kind"]
        assert sha == file_sha256(model_path(kind)), f"{sha[:12]} is not the shipped {kind} (rerun bench/precision_check.py)"
        checked = {k: v for k, v in entry.items() if isinstance(v, dict) and k in ("bf16", "int8")}
        assert checked, kind
        for precision, v in checked.items():
            runs = v["backends"].values() if precision == "int8" else [v]
            for run in runs:
                assert set(run["difference"]) == CRITERIA[kind]
                within = all(run["difference"][m] >= -LIMITS[m] for m in CRITERIA[kind])
                assert run["within_limits"] is within, (kind, precision)
            if precision == "int8":  # a quantized file that is not shipped: never used
                assert v["passed"] is False and v["shipped"] is False
            else:  # the shipped file at bf16: used exactly when the rule held
                assert v["backend"] == "openvino" and v["passed"] is v["within_limits"]
        assert set(accepted_precisions(sha)) <= {"bf16"}


def test_the_loader_runs_bf16_under_auto_exactly_where_the_check_passed(require):
    """Every shipped model on OpenVINO with ``--precision auto``: bf16 if and only if its check
    passed and this CPU has bf16; the chosen precision is in the model's ``backend``."""
    require("openvino")
    from thoracic.models import load_model

    cpu_bf16 = runtime._cpu_has_bf16(runtime._ov_core())
    for kind in ("detector", "classifier", "lungs"):
        with onnx_device("cpu"), onnx_backend("openvino", "auto"):
            m = load_model(kind=kind, threads=1)
        want = "bf16" if cpu_bf16 and precision_check(m.sha256, "bf16") else "f32"
        assert m.backend == f"openvino-{want}", kind
        assert m.session.precision == want


def test_the_predictions_settings_file_names_the_precision_auto_chose(require):
    """``<out>.settings.json``'s ``backends``: each model's back-end and precision, as auto chose them."""
    require("openvino")
    from thoracic.batch.predictions import prediction_backends
    from thoracic.inference.predictor import Predictor

    with onnx_device("cpu"), onnx_backend("openvino", "auto"):
        predictor = Predictor.load(threads=1)
    cpu_bf16 = runtime._cpu_has_bf16(runtime._ov_core())
    want = []
    for kind in ("detector", "classifier"):
        precision = "bf16" if cpu_bf16 and precision_check(file_sha256(model_path(kind)), "bf16") else "f32"
        want.append(f"{kind} {kind}.onnx openvino-{precision}")
    assert prediction_backends(predictor) == {"backends": want}
