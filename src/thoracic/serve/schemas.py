"""The JSON the API answers, as pydantic models for the OpenAPI description.

Responses are built as dicts (see :mod:`thoracic.serve.routes`); these models only describe
them, with the error responses every /v1 route may give and the upload body of ``/v1/analyze``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AnalyzeResponse",
    "ClassifierFindings",
    "ERRORS",
    "ErrorDetail",
    "ErrorResponse",
    "FindingModel",
    "HealthResponse",
    "ModelCard",
    "ModelInfoModel",
    "ModelsResponse",
    "UPLOAD_BODY",
]


class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable tag, e.g. too_large, busy, not_chest_radiograph")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FindingModel(BaseModel):
    label: str
    class_id: int
    score: float
    box: list[float] = Field(description="x0, y0, x1, y1 in pixels of the original image")


class ModelInfoModel(BaseModel):
    role: str
    name: str
    file: str
    sha256: str
    backend: str = Field("", description="where the model runs: openvino-f32, openvino-bf16, onnxruntime-cpu or "
                                         "onnxruntime-cuda")


class ClassifierFindings(BaseModel):
    findings: dict[str, float] = Field(description="image-level probability of each VinDr finding of a multi-label "
                                                   "classifier's head, in its label order")
    thresholds: dict[str, float] = Field(description="the operating threshold of each finding stored with the model")
    maps: list[str] = Field(description="labels whose class activation map heatmap.png?finding=LABEL serves "
                                        "(abnormal first; empty when no heatmap was made)")


class AnalyzeResponse(BaseModel):
    id: str = Field(description="random result id for the download routes")
    image_id: str
    width: int
    height: int
    format: str
    findings: list[FindingModel] = Field(description="the clinical findings: each above its operating point, "
                                                     "overlapping boxes of one finding merged")
    operating_points: dict[str, Any] = Field(description="which findings are shown: source (model, default or "
                                                         "min_score), scores per finding or min_score, merge_iou")
    p_abnormal: float | None
    classifier: ClassifierFindings | None = Field(
        None, description="a multi-label classifier's image-level findings; absent with a 2-class classifier")
    no_finding_score: float
    filtered: bool
    lung_roi: dict[str, Any] | None
    heatmap: bool
    flags: list[str]
    models: list[ModelInfoModel]
    thoracic_version: str
    seconds: float
    dicom: bool = Field(description="the upload was a DICOM: SR, GSPS and SEG can be downloaded")
    display: dict[str, int] = Field(description="size of image.png, heatmap.png and lungs.png")
    links: dict[str, str]


class ModelCard(ModelInfoModel):
    classes: list[str]
    outputs: list[str]
    card: str = Field(description="the model card (Markdown)")


class ModelsResponse(BaseModel):
    models: list[ModelCard]
    thoracic_version: str


class HealthResponse(BaseModel):
    status: str
    version: str
    models: list[ModelInfoModel]
    in_flight: int
    running: int
    capacity: int
    results: int


#: The error statuses of the /v1 routes, each with the body :class:`ErrorResponse`.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse}
    for s in (400, 401, 404, 408, 413, 415, 422, 429)
}
#: ``/v1/analyze`` reads its body itself; this describes it (a multipart ``file`` or the raw file).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image: a multipart form with the field `file`, or the raw file as the body",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("application/dicom", "image/png", "image/jpeg", "image/tiff", "application/octet-stream")
            },
        },
    }
}
