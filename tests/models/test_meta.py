"""The one metadata contract: every kind round-trips, the shipped files read and re-serialize exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.labels import FINDINGS
from thoracic.models import LUNGS_META_KEY, META_KEY, LungsMeta, ModelMeta, model_path
from thoracic.preprocess import get_chain
from thoracic.train.export import with_letterbox


def _detector() -> ModelMeta:
    return ModelMeta(kind="detector", names=FINDINGS, trained_classes=FINDINGS[:3],
                     chain=with_letterbox(get_chain("yolo-512-clahe"), 512), imgsz=512, feature_output="features",
                     feature_layer=17, thoracic_version="9.9", training_data="t", architecture="a", extra={"x": 1})


def _classifier() -> ModelMeta:
    return ModelMeta(kind="classifier", names=("normal", "abnormal"), trained_classes=("normal", "abnormal"),
                     chain=with_letterbox(get_chain("display"), 64), imgsz=64, extra={"low": 0.25})


def _lungs() -> LungsMeta:
    return LungsMeta.default(96, threshold=0.4, training_data="d", training_licences=["CC BY 4.0"], architecture="u")


@pytest.mark.parametrize("make", [_detector, _classifier, _lungs], ids=["detector", "classifier", "lungs"])
def test_every_kind_round_trips(make):
    meta = make()
    assert ModelMeta.from_metadata(meta.to_metadata()) == meta
    assert type(meta).from_json(meta.to_json()) == meta
    assert type(meta).from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


def test_each_kind_is_stored_under_its_key():
    assert list(_detector().to_metadata()) == [META_KEY, "names"]
    assert json.loads(_detector().to_metadata()["names"])["13"] == FINDINGS[13]
    assert list(_classifier().to_metadata()) == [META_KEY]
    assert list(_lungs().to_metadata()) == [LUNGS_META_KEY]


def test_the_lungs_form_keeps_its_stored_layout():
    d = _lungs().to_dict()
    assert sorted(d) == ["chain", "fill_holes", "info", "keep_components", "label", "name", "normalization",
                         "output", "threshold"]
    assert d["label"] == "lung" and d["threshold"] == 0.4
    assert d["info"] == {"architecture": "u", "thoracic_version": d["info"]["thoracic_version"], "training_data": "d",
                         "training_licences": ["CC BY 4.0"]}
    back = LungsMeta.from_dict(d)
    assert (back.training_data, back.architecture, back.extra) == ("d", "u", {"training_licences": ["CC BY 4.0"]})


@pytest.mark.parametrize("name", ["detector", "classifier", "lungs"])
def test_the_shipped_metadata_reads_and_writes_back_exactly(name, require):
    onnx = require("onnx")
    stored = {p.key: p.value for p in onnx.load(str(model_path(name)), load_external_data=False).metadata_props}
    meta = ModelMeta.from_metadata(stored)
    assert meta.kind == name and isinstance(meta, LungsMeta) == (name == "lungs")
    assert meta.to_metadata() == stored  # byte for byte: the files are never rewritten


def test_the_shipped_kinds_describe_their_inputs(require):
    require("onnx")
    from thoracic.models import load_model

    det, clf, lungs = (load_model(kind=k, threads=1).meta for k in ("detector", "classifier", "lungs"))
    assert det.input_size == (512, 512) and det.names == FINDINGS and len(det.trained_classes) == 7
    assert clf.input_size == (320, 320) and clf.names == ("normal", "abnormal") and 0 < clf.extra["low"] < 1
    assert lungs.input_size == (192, 192) and lungs.label == "lung" and lungs.thoracic_version == "0.1.0"
    assert det.thoracic_version == clf.thoracic_version == "0.1.0"


def test_bad_metadata_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'detector'"):
        ModelMeta(kind="detect", names=("a",), trained_classes=(), chain=get_chain("display"), imgsz=32)
    with pytest.raises(ConfigError, match="model kind"):
        ModelMeta(kind="lungs", names=("lung",), trained_classes=(), chain=get_chain("display"), imgsz=32)
    with pytest.raises(ConfigError, match="one output channel"):
        LungsMeta(name="x", names=("a", "b"), chain=_lungs().chain)
    with pytest.raises(ConfigError, match="not thoracic model metadata"):
        ModelMeta.from_json("[1, 2]")
    with pytest.raises(ConfigError, match="not thoracic model metadata"):
        LungsMeta.from_json('"lungs"')
    with pytest.raises(ConfigError, match="not thoracic model metadata"):
        ModelMeta.from_dict({"kind": "detector", "names": ["a"], "chain": get_chain("display").to_dict()})  # no imgsz
    with pytest.raises(ConfigError, match="not a thoracic model"):
        ModelMeta.from_metadata({"names": "{}"}, path="x.onnx")


def test_kind_checks_name_both_kinds():
    with pytest.raises(ConfigError, match="expected a lungs model, got a detector"):
        _detector().require("lungs")
    with pytest.raises(ConfigError, match="^m.onnx: expected a detector, got a classifier$"):
        _classifier().require("detector", "m.onnx")
    _lungs().require("lungs")


def test_model_meta_round_trip():
    from thoracic.labels import FINDINGS
    from thoracic.models.meta import ModelMeta
    from thoracic.preprocess import get_chain

    meta = ModelMeta(kind="detector", names=FINDINGS, trained_classes=FINDINGS[:2],
                     chain=get_chain("lung-roi-512-clahe"), imgsz=512, extra={"a": 1})
    again = ModelMeta.from_json(meta.to_json())
    assert again == meta and again.class_ids == tuple(range(14)) and again.lung_crop
    with pytest.raises(ConfigError):
        ModelMeta(kind="segmenter", names=(), trained_classes=(), chain=get_chain("display"), imgsz=32)
    with pytest.raises(ConfigError):
        ModelMeta(kind="detector", names=("a",), trained_classes=("b",), chain=get_chain("display"), imgsz=32)


def test_contract_round_trips_through_json():
    c = LungsMeta.default(320, training_data="x")
    back = LungsMeta.from_json(c.to_json())
    assert back == c and back.input_size == (320, 320)
    assert back.info["training_data"] == "x"


def test_bad_contracts_are_config_errors():
    c = LungsMeta.default(64)
    with pytest.raises(ConfigError, match="did you mean"):
        LungsMeta(name="x", chain=c.chain, normalization="zscor")
    with pytest.raises(ConfigError):
        LungsMeta(name="x", chain=c.chain, threshold=1.5)
    with pytest.raises(ConfigError):
        LungsMeta.from_json("{not json")
    with pytest.raises(ConfigError):
        LungsMeta.from_json('{"name": "x"}')


def test_normalization_is_zscore_and_safe_on_flat_input():
    c = LungsMeta.default(64)
    x = c.to_input(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    assert x.shape == (1, 1, 64, 64) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    assert not c.to_input(np.full((64, 64), 0.5, np.float32)).any()


# --- whether a model crops: its chain says ----------------------------------------------------------
def _stored(chain_name: str, **entries) -> dict:
    meta = ModelMeta(kind="detector", names=FINDINGS, trained_classes=FINDINGS,
                     chain=with_letterbox(get_chain(chain_name), 512), imgsz=512)
    return {**meta.to_dict(), **entries}


def test_lung_crop_is_derived_from_the_chain_and_written_as_it_says():
    crops = ModelMeta.from_dict(_stored("lung-roi-512-clahe"))
    plain = ModelMeta.from_dict(_stored("yolo-512-clahe"))
    assert crops.lung_crop and crops.to_dict()["lung_crop"] is True
    assert not plain.lung_crop and plain.to_dict()["lung_crop"] is False
    # the file of the researcher: a lung-roi-512 chain exported with "lung_crop": false; and one that
    # followed the old docs (--lung-crop): both crop once, by their chain, and are written back consistently
    for flag in (False, True):
        m = ModelMeta.from_dict(_stored("lung-roi-512", lung_crop=flag))
        assert m.lung_crop and m.chain.spec() == "lung_roi(margin=0.05,size=512)|letterbox(interpolation=linear,size=512)"
        assert m.to_dict()["lung_crop"] is True
    with pytest.raises(TypeError):
        ModelMeta(kind="detector", names=FINDINGS, trained_classes=FINDINGS, chain=get_chain("display"), imgsz=32,
                  lung_crop=True)  # type: ignore[call-arg]


def test_an_old_file_that_only_set_the_flag_gets_the_crop_in_its_chain():
    from thoracic.models.meta import legacy_crop_chain

    old = _stored("yolo-512-clahe", lung_crop=True)
    m = ModelMeta.from_dict(old)
    assert m.lung_crop and m.chain == legacy_crop_chain(with_letterbox(get_chain("yolo-512-clahe"), 512))
    assert m.chain.spec() == ("lung_roi(margin=0.05,size=0)|resize_longest(interpolation=area,size=512)|"
                              "clahe(clip_limit=2.0,tile_grid=8)|letterbox(interpolation=linear,size=512)")
    again = ModelMeta.from_json(m.to_json())  # written with the crop in the chain: read back the same
    assert again == m and again.to_dict()["lung_crop"] is True


def test_a_stored_chain_that_crops_twice_is_not_model_metadata():
    bad = _stored("lung-roi-512")
    bad["chain"]["steps"] = [{"name": "lung_roi", "params": {}}, *bad["chain"]["steps"]]
    with pytest.raises(ConfigError, match="more than once"):
        ModelMeta.from_dict(bad)
