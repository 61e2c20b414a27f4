"""The pipelined batch predictor (``thoracic.inference.batch``) and its reading plan."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, SAMPLES

from thoracic.errors import ConfigError, CorruptFileError, UnsupportedFormatError
from thoracic.inference.batch import BatchPredictor, PipelineConfig
from thoracic.inference.plan import ReadPlan, read_plan
from thoracic.inference.predictor import PredictConfig, Predictor

DICOM = FIXTURES / "nih_dx_implicit_le.dcm"
JLS = FIXTURES / "RG1_JLSN.dcm"
J2K = SAMPLES / "RG1_J2KI.dcm"


@pytest.fixture(scope="module")
def predictor(detector_onnx, classifier_onnx) -> Predictor:
    return Predictor.load([detector_onnx], classifier_onnx, PredictConfig(conf=0.001), threads=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, chest_png, chest_crop_png) -> list[tuple[str, str]]:
    bad = tmp_path_factory.mktemp("bad") / "broken.png"
    bad.write_bytes(b"not an image")
    files = [chest_png, DICOM, bad, JLS, chest_crop_png]
    return [(str(f), f.stem) for f in files]


def _same(a, b) -> None:
    assert a.image_id == b.image_id
    np.testing.assert_array_equal(a.detections.boxes, b.detections.boxes)
    np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
    np.testing.assert_array_equal(a.detections.class_ids, b.detections.class_ids)
    assert a.p_abnormal == b.p_abnormal and a.filtered == b.filtered


@pytest.mark.parametrize("config", [
    PipelineConfig(readers=2, workers=2, prefetch=1),
    PipelineConfig(readers=1, workers=1, ordered=False),
    PipelineConfig(readers=2, workers=2, processes=True, ordered=False),
], ids=["threads-ordered", "sequential-unordered", "processes-unordered"])
def test_batch_equals_predictor_and_isolates_errors(predictor, inputs, config):
    results = list(BatchPredictor(predictor, config).run(inputs))
    assert sorted(r.index for r in results) == list(range(len(inputs)))
    if config.ordered:
        assert [r.index for r in results] == list(range(len(inputs)))
    for r in results:
        src, iid = inputs[r.index]
        assert (r.image_id, r.source) == (iid, src)
        if iid == "broken":
            assert not r.ok and r.prediction is None and isinstance(r.error, UnsupportedFormatError)
            assert r.describe_error().startswith("UnsupportedFormatError: ")
            continue
        assert r.ok, r.describe_error()
        _same(r.prediction, predictor.predict(src, image_id=iid))  # no JPEG 2000 here: identical


def test_inference_errors_stay_per_image(predictor, inputs, monkeypatch):
    real = predictor.predict_read

    def flaky(radiographs, **kw):
        if next(iter(radiographs.values())).image_id == DICOM.stem:
            raise RuntimeError("model blew up")
        return real(radiographs, **kw)

    monkeypatch.setattr(predictor, "predict_read", flaky)
    results = list(BatchPredictor(predictor, PipelineConfig(readers=2, workers=2)).run(inputs))
    failed = {r.image_id: r.describe_error() for r in results if not r.ok}
    assert failed.keys() == {DICOM.stem, "broken"}
    # an unexpected error's text may quote header values: its type only
    assert failed[DICOM.stem] == "internal error RuntimeError (message withheld: it may quote header values)"


def test_items_are_consumed_lazily_with_bounded_prefetch(predictor, chest_png):
    pulled = []

    def items():
        for i in range(50):
            pulled.append(i)
            yield str(chest_png), f"img{i}"

    config = PipelineConfig(readers=2, workers=2, prefetch=3)
    run = BatchPredictor(predictor, config).run(items())
    first = next(run)
    assert first.ok and first.index == 0
    assert len(pulled) <= config.prefetch + config.n_workers + 1  # never the whole input list
    run.close()  # stops early: the rest is never read
    assert len(pulled) < 50


class _CrashOn(ReadPlan):
    """A reader that dies like a segfaulting decoder on one file (module level: picklable)."""

    def read(self, src, image_id=None):
        if Path(src).name == "crash.png":
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().read(src, image_id)


def test_a_crashing_decoder_process_fails_only_its_image(predictor, inputs, tmp_path):
    crash = tmp_path / "crash.png"
    crash.write_bytes(Path(inputs[0][0]).read_bytes())
    items = [*inputs[:2], (str(crash), "crash"), *inputs[3:]]
    batch = BatchPredictor(predictor, PipelineConfig(readers=2, workers=1, processes=True))
    batch.plan = _CrashOn(batch.plan.options, batch.plan.chains)
    results = list(batch.run(items))
    assert [r.index for r in results] == list(range(len(items)))
    status = {r.image_id: type(r.error).__name__ if r.error else "ok" for r in results}
    assert status == {inputs[0][1]: "ok", DICOM.stem: "ok", "crash": "CorruptFileError",
                      JLS.stem: "ok", inputs[4][1]: "ok"}
    crashed = next(r for r in results if r.image_id == "crash")
    assert isinstance(crashed.error, CorruptFileError) and "crashed" in str(crashed.error)


def test_a_started_batch_keeps_its_reader_processes_across_runs_and_after_a_crash(predictor, inputs, tmp_path):
    crash = tmp_path / "crash.png"
    crash.write_bytes(Path(inputs[0][0]).read_bytes())
    with BatchPredictor(predictor, PipelineConfig(readers=2, workers=2, processes=True)) as batch:
        pool = batch._pool
        assert pool is not None
        first = list(batch.run(inputs))
        second = list(batch.run(inputs))
        assert batch._pool is pool  # the same (warm) reader processes served both runs
        for a, b in zip(first, second, strict=True):
            assert (a.index, a.image_id, a.ok) == (b.index, b.image_id, b.ok)
            if a.ok:
                _same(a.prediction, b.prediction)
        # a reader process that dies is replaced, and the replacement is kept for the next run
        plan = batch.plan
        batch.plan = _CrashOn(plan.options, plan.chains)
        crashed = {r.image_id: r.ok for r in batch.run([*inputs[:2], (str(crash), "crash")])}
        assert crashed == {inputs[0][1]: True, inputs[1][1]: True, "crash": False}
        assert batch._pool is not None and batch._pool is not pool
        batch.plan = plan
        assert [r.ok for r in batch.run(inputs[:2])] == [True, True]
    assert batch._pool is None  # closed with the context


def test_read_plan_decodes_jpeg2000_reduced_only_when_exact_enough(predictor, detector_onnx):
    sizes = {d.chain.decode_size() for d in predictor.detectors} | {predictor.classifier.meta.chain.decode_size()}
    plan = read_plan(predictor)
    (norm, opts), = plan.options  # one normalization shared by detector and classifier
    assert norm == predictor.detectors[0].chain.normalize
    assert opts.target_size == (max(sizes) if None not in sizes else None)
    assert read_plan(predictor, reduced_decode=False).options[0][1].target_size is None
    roi = Predictor.load([detector_onnx], config=PredictConfig(lung_roi=True), use_classifier=False, threads=1)
    assert read_plan(roi).options[0][1].target_size is None  # the lungs model segments the full image


def test_reduced_jpeg2000_decode_changes_little(predictor):
    if read_plan(predictor).options[0][1].target_size is None:
        pytest.skip("these models do not start with a fixed-size resize")
    full = predictor.predict(J2K)
    reduced = BatchPredictor(predictor, PipelineConfig()).predict_one(str(J2K), J2K.stem)
    assert reduced.detections.image_size == full.detections.image_size == (1841, 1955)
    assert abs(reduced.p_abnormal - full.p_abnormal) < 0.02
    from thoracic.boxes import box_iou

    # the best boxes are found again, a little shifted (ranks near ties may swap)
    a, b = full.detections.top(3), reduced.detections.top(10)
    assert len(a) == 3
    iou = box_iou(a.boxes, b.boxes) * (a.class_ids[:, None] == b.class_ids[None, :])
    assert (iou.max(axis=1) > 0.9).all()


def test_pipeline_config_validates():
    with pytest.raises(ConfigError, match="prefetch"):
        PipelineConfig(prefetch=-1)
    with pytest.raises(ConfigError, match="readers and workers"):
        PipelineConfig(workers=-1)
    assert PipelineConfig().n_workers == PipelineConfig().n_readers >= 1


def test_prefetch_defaults_to_a_deep_queue_only_when_prepared_images_are_small(predictor, detector_onnx):
    assert PipelineConfig().n_prefetch(light=True) == 16 and PipelineConfig().n_prefetch(light=False) == 4
    assert PipelineConfig(prefetch=3).n_prefetch(light=True) == 3
    assert BatchPredictor(predictor).plan.complete  # the default models: model inputs only
    roi = Predictor.load([detector_onnx], config=PredictConfig(lung_roi=True), use_classifier=False, threads=1)
    assert not BatchPredictor(roi).plan.complete  # the decoded image waits for the lungs model


def test_a_prefetched_image_is_its_model_inputs_as_8bit_levels(predictor):
    plan = BatchPredictor(predictor).plan
    radiographs, prepared = plan.load(str(DICOM), DICOM.stem, detach=True)
    full, floats = plan.load(str(DICOM), DICOM.stem)
    assert all(rg.pixels.size == 0 and rg.dataset is None for rg in radiographs.values())
    assert [rg.original_size for rg in radiographs.values()] == [rg.original_size for rg in full.values()]
    for chain, p in prepared.items():
        assert p.pixels.dtype == np.uint8 and floats[chain].pixels.dtype == np.float32
        np.testing.assert_array_equal(p.pixels.astype(np.float32) / np.float32(255.0), floats[chain].pixels)
        assert p.transform == floats[chain].transform


def test_models_read_8bit_levels_exactly_as_the_floats(predictor, detector_onnx):
    from thoracic.detect.onnx import DetectorConfig
    from thoracic.preprocess.chain import Prepared
    from thoracic.preprocess.model_input import model_pixels

    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    floats = levels.astype(np.float32) / np.float32(255.0)
    assert model_pixels(levels).dtype == np.float32
    np.testing.assert_array_equal(model_pixels(levels).view(np.uint32), floats.view(np.uint32))  # bit for bit
    assert model_pixels(floats) is floats
    det, clf = predictor.detectors[0], predictor.classifier
    size = det.meta.imgsz
    u8 = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    np.testing.assert_array_equal(det._tensor(u8), det._tensor(u8.astype(np.float32) / np.float32(255.0)))
    radiographs, prepared = BatchPredictor(predictor).plan.load(str(DICOM), DICOM.stem, detach=True)
    as_float = {c: Prepared(p.pixels.astype(np.float32) / np.float32(255.0), p.transform, p.radiograph)
                for c, p in prepared.items()}
    assert clf.p_abnormal(prepared[clf.meta.chain]) == clf.p_abnormal(as_float[clf.meta.chain])
    tta = DetectorConfig(conf=0.001, tta=True)  # the mirrored pass too
    a, b = det.predict(prepared[det.chain], tta), det.predict(as_float[det.chain], tta)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    _same(predictor.predict_read(radiographs, prepared=prepared), predictor.predict(DICOM))


def test_shared_preprocessing_equals_each_chain_alone(predictor):
    from thoracic.io import read
    from thoracic.preprocess import get_chain
    from thoracic.preprocess.model_input import prepare_8bit, prepare_8bit_many

    chains = [d.chain for d in predictor.detectors] + [predictor.classifier.meta.chain, get_chain("display")]
    rg = read(DICOM, chains[0].read_options())
    many = prepare_8bit_many(chains, {chains[0].normalize: rg})
    assert list(many) == list(dict.fromkeys(chains))
    for chain in chains:
        alone = prepare_8bit(chain, rg)
        np.testing.assert_array_equal(many[chain].pixels, alone.pixels)
        assert many[chain].transform == alone.transform and many[chain].radiograph is rg
    # and the predictor's own split (prepare, then predict_read) is its predict
    radiographs = predictor.read(str(DICOM))
    _same(predictor.predict_read(radiographs, prepared=predictor.prepare(radiographs)), predictor.predict(DICOM))


def test_an_exported_png_fails_alone_with_its_typed_error(predictor, chest_png, tmp_path):
    from thoracic.batch.runner import write_png
    from thoracic.errors import PreprocessedImageError
    from thoracic.io.raster import CHAIN_TEXT_KEY, chain_text
    from thoracic.preprocess import get_chain

    chain = get_chain("yolo-512-clahe")
    png = tmp_path / "exported.png"
    write_png(png, chain.load(chest_png).to_uint8(), None, {CHAIN_TEXT_KEY: chain_text(chain.name, chain.spec())})
    for config in (PipelineConfig(readers=1, workers=1), PipelineConfig(readers=1, workers=1, processes=True)):
        results = sorted(BatchPredictor(predictor, config).run([(str(png), "exported"), (str(chest_png), "chest")]),
                         key=lambda r: r.index)
        assert isinstance(results[0].error, PreprocessedImageError) and results[1].ok
        assert "predict the original images" in results[0].describe_error()
