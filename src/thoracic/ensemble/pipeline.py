"""Pipelined batch prediction: images are decoded ahead of inference, models never wait for files.

:class:`BatchPredictor` wraps a :class:`~thoracic.ensemble.predict.Predictor` for many images.
A pool of readers (threads, or processes with ``processes=True``) reads and preprocesses the
next images (file I/O, DICOM parsing, decompression, VOI/window, every model's input chain with
shared steps run once) while inference workers run the models on the current ones; at most
``prefetch`` prepared images wait in memory, so a folder of any size runs in bounded memory. A
prepared image keeps only its model inputs (8-bit levels) and metadata when the readers can make
every model's input (the default models; not with a lung crop).
Results come back in input order (``ordered=True``, the default) or as they finish, each with its
input index and image id, and a bad image is a :class:`BatchResult` with an ``error``: it never
stops the batch.

With ``reduced_decode`` (the default) a JPEG 2000 file is decoded at the coarsest resolution
level that is still at least as large as the models' first resize (512 px for the shipped
detector), as ``thoracic convert --size`` does; every other format reads exactly as
:meth:`Predictor.predict <thoracic.ensemble.predict.Predictor.predict>` reads it. Lung-ROI
prediction always decodes in full (the lungs model segments the full image).

Examples
--------
>>> from thoracic.ensemble.predict import Predictor
>>> bp = BatchPredictor(Predictor.load(threads=1), PipelineConfig(readers=2, workers=2))  # doctest: +SKIP
>>> for r in bp.run([("a.dcm", "a"), ("b.png", "b")]):                                   # doctest: +SKIP
...     print(r.image_id, r.ok, r.prediction.p_abnormal if r.ok else r.error)
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..detect.onnx import prepare_8bit_many
from ..errors import ConfigError, CorruptFileError, ThoracicError, internal_error_message
from ..io.radiograph import Radiograph, ReadOptions
from ..preprocess.chain import Chain, Prepared
from .predict import ImagePrediction, Predictor

__all__ = ["BatchPredictor", "BatchResult", "PipelineConfig", "ReadPlan", "default_workers", "read_plan"]


def default_workers() -> int:
    """The CPU cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class PipelineConfig:
    """How a batch is spread over the CPU.

    Attributes
    ----------
    readers:
        Reader workers decoding images ahead of inference (0: one per core).
    workers:
        Inference workers running the models on decoded images at the same time (0: one per
        core). With several, load the models with ``threads=1`` each: ONNX Runtime's sessions
        are shared and thread-safe.
    processes:
        Read in worker processes instead of threads: a decoder that crashes (a native segfault)
        then fails only its image, and Python-heavy parsing runs outside this process's GIL;
        decoded pixels are copied back through a pipe.
    prefetch:
        Images read (or being read) ahead of the inference workers, at most: at most
        ``prefetch + workers`` images are in memory at once. 0: 16 when a prepared image is
        only its model inputs (:attr:`ReadPlan.complete`: about 0.4 MB each for the default
        models), else 4 (the decoded images wait: lung crop). A deep queue keeps both cores
        busy while one reader decodes a slow file (JPEG-LS, JPEG 2000).
    reduced_decode:
        Decode JPEG 2000 at the coarsest resolution the models' chains still need.
    ordered:
        Yield results in input order (else as they finish; each carries its input index).
    heatmap:
        Also compute each image's heatmap (``ImagePrediction.heatmap``, original size).
    """

    readers: int = 0
    workers: int = 0
    processes: bool = False
    prefetch: int = 0
    reduced_decode: bool = True
    ordered: bool = True
    heatmap: bool = False

    def __post_init__(self) -> None:
        if self.readers < 0 or self.workers < 0:
            raise ConfigError(f"readers and workers must be >= 0 (0: one per core), got {self.readers}, {self.workers}")
        if self.prefetch < 0:
            raise ConfigError(f"prefetch must be >= 0 (0: by what a prepared image holds), got {self.prefetch}")

    @property
    def n_readers(self) -> int:
        return self.readers or default_workers()

    @property
    def n_workers(self) -> int:
        return self.workers or default_workers()

    def n_prefetch(self, light: bool) -> int:
        """``prefetch``, or with 0 its default: 16 when prepared images are ``light`` (model inputs only), else 4."""
        return self.prefetch or (16 if light else 4)


@dataclass(frozen=True)
class ReadPlan:
    """What a reader does for one image: one read per normalization the models need, then the
    preprocessing of every model input it can make without a model (``chains``)."""

    options: tuple[tuple[str, ReadOptions], ...]
    chains: tuple[Chain, ...] = ()
    complete: bool = False  # ``chains`` cover every model: predicting needs no pixels beyond them

    def read(self, src: Any, image_id: str | None = None) -> dict[str, Radiograph]:
        """Read ``src`` once per normalization: ``{normalize: Radiograph}`` (for ``predict_read``)."""
        from ..io.read import read

        return {norm: read(src, opts, image_id=image_id) for norm, opts in self.options}

    def load(self, src: Any, image_id: str | None = None, *, detach: bool = False,
             ) -> tuple[dict[str, Radiograph], dict[Chain, Prepared]]:
        """Read and preprocess: the arguments of :meth:`Predictor.predict_read` (``radiographs, prepared=``).

        ``detach``: keep the model inputs as their 8-bit levels (``uint8``, which the models read
        exactly as the floats), and when they are all there (``complete``), drop the decoded
        pixels and the DICOM header from the radiographs, so that a prefetched image holds (and
        a reader process sends back) only the small model inputs and the image's metadata.
        """
        radiographs = self.read(src, image_id)
        any_rg = next(iter(radiographs.values()))
        mapped = {c.normalize: radiographs.get(c.normalize) or any_rg for c in self.chains}
        prepared = prepare_8bit_many(self.chains, mapped, levels=detach)
        if not (detach and self.complete):
            return radiographs, prepared
        light = {id(rg): dataclasses.replace(rg, pixels=np.zeros((0, 0), np.float32), dataset=None)
                 for rg in radiographs.values()}
        return ({k: light[id(rg)] for k, rg in radiographs.items()},
                {c: Prepared(p.pixels, p.transform, light[id(p.radiograph)]) for c, p in prepared.items()})


def read_plan(predictor: Predictor, base: ReadOptions | None = None, *, reduced_decode: bool = True) -> ReadPlan:
    """The reads :meth:`Predictor.predict` needs, with reduced JPEG 2000 decoding where it is exact enough.

    A normalization is decoded at a reduced resolution only when every chain reading it starts
    with a resize to a fixed size (:meth:`Chain.decode_size <thoracic.preprocess.Chain.decode_size>`)
    and no lung crop is involved; the target is the largest of those sizes.
    """
    base = base or ReadOptions()
    models: list[tuple[Any, bool]] = [(d.chain, predictor.config.lung_roi or d.meta.lung_crop) for d in predictor.detectors]
    if predictor.classifier is not None:
        models.append((predictor.classifier.meta.chain, False))
    sizes: dict[str, list[int | None]] = {}
    for chain, crop in models:
        sizes.setdefault(chain.normalize, []).append(None if crop else chain.decode_size())
    options = []
    for norm, wanted in sizes.items():
        target = max(wanted) if reduced_decode and all(s is not None for s in wanted) else None  # type: ignore[type-var]
        options.append((norm, ReadOptions(normalize=norm, percentiles=base.percentiles, target_size=target,
                                          allow_non_chest=base.allow_non_chest, max_pixels=base.max_pixels)))
    return ReadPlan(tuple(options), tuple(chain for chain, crop in models if not crop),
                    complete=not any(crop for _, crop in models))


@dataclass(frozen=True)
class BatchResult:
    """The outcome for one input: a prediction, or the error that stopped this image only.

    Attributes
    ----------
    index:
        Position of the input in the batch.
    image_id, source:
        The image's id and where it came from (a path, or ``"<bytes>"``).
    prediction:
        The prediction (``None`` when the image failed).
    error:
        The exception (``None`` when it succeeded): a :class:`~thoracic.errors.ThoracicError`
        for bad input, anything else for an internal error.
    """

    index: int
    image_id: str
    source: str
    prediction: ImagePrediction | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe_error(self) -> str:
        """``"<ErrorType>: message"`` for thoracic's errors (their messages name paths, never header
        values); for anything else its type only (:func:`~thoracic.errors.internal_error_message`:
        another library's message may quote patient data), as convert, segment and the node report it."""
        if self.error is None:
            return ""
        if isinstance(self.error, ThoracicError):
            return f"{type(self.error).__name__}: {self.error}"
        return internal_error_message(self.error)


def _read_task(plan: ReadPlan, src: Any, image_id: str) -> tuple[dict[str, Radiograph], dict[Chain, Prepared]] | BaseException:
    """Reader worker: the detached radiographs and model inputs (:meth:`ReadPlan.load`), or the
    exception (returned: a bad file must not look like a crash)."""
    try:
        return plan.load(src, image_id, detach=True)
    except Exception as err:  # noqa: BLE001 - reported per image
        return err


class BatchPredictor:
    """Predict many images with decoding overlapped with inference.

    Parameters
    ----------
    predictor:
        The loaded models (shared by every inference worker).
    config:
        Readers, inference workers and queue depth.
    read:
        Base reading options (``allow_non_chest``, ``max_pixels``, ...).
    """

    def __init__(self, predictor: Predictor, config: PipelineConfig | None = None, read: ReadOptions | None = None) -> None:
        self.predictor = predictor
        self.config = config or PipelineConfig()
        self.plan = read_plan(predictor, read, reduced_decode=self.config.reduced_decode)
        self._pool: Executor | None = None

    def start(self) -> BatchPredictor:
        """Start the reader processes now and keep them for every later :meth:`run` until :meth:`close`.

        Starting reader processes costs about 0.4 s on 2 cores (each imports thoracic): a service
        or a loop over many batches starts them once. Without it each run starts and stops its
        own. No effect with reader threads.
        """
        if self.config.processes and self._pool is None:
            self._pool = _process_pool(self.config.n_readers)
        return self

    def close(self) -> None:
        """Stop the reader processes :meth:`start` started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BatchPredictor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict_one(self, src: Any, image_id: str) -> ImagePrediction:
        """Read and predict one image in this thread, exactly as the batch does."""
        radiographs, prepared = self.plan.load(src, image_id, detach=True)
        return self.predictor.predict_read(radiographs, prepared=prepared, heatmap=self.config.heatmap)

    def run(self, items: Iterable[tuple[Any, str]]) -> Iterator[BatchResult]:
        """Yield one :class:`BatchResult` per ``(source, image_id)`` item.

        The items are consumed lazily (a generator of a million paths is fine): at most
        ``prefetch + workers`` are read ahead (:meth:`PipelineConfig.n_prefetch`). Closing the
        generator early cancels the reads not started yet.
        """
        cfg = self.config
        readers: Executor
        kept = cfg.processes and self._pool is not None  # started by start(): reused, left running
        if kept:
            readers = self._pool  # type: ignore[assignment]
        elif cfg.processes:
            readers = _process_pool(cfg.n_readers)
        else:
            readers = ThreadPoolExecutor(max_workers=cfg.n_readers, thread_name_prefix="thoracic-read")
        workers = cfg.n_workers
        inference = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thoracic-infer") if workers > 1 else None
        source = iter(enumerate(items))
        pending: deque[_Entry] = deque()
        ahead = cfg.n_prefetch(self.plan.complete) + workers
        try:
            while True:
                while len(pending) < ahead and (nxt := next(source, None)) is not None:
                    index, (src, iid) = nxt
                    entry = _Entry(index, src, iid, readers.submit(_read_task, self.plan, src, iid))
                    if inference is not None:  # FIFO: inference starts in input order as workers free up
                        entry.result = inference.submit(self._infer, entry)
                    pending.append(entry)
                if not pending:
                    return
                entry = self._next(pending)
                result = entry.result.result() if entry.result is not None else self._infer(entry)
                if isinstance(result.error, BrokenProcessPool):
                    readers = self._restart(readers, pending, inference)
                    continue
                pending.remove(entry)
                yield result
        finally:
            for entry in pending:
                entry.read.cancel()
                if entry.result is not None:
                    entry.result.cancel()
            if kept:
                self._pool = readers  # a crashed pool was replaced by _restart
            else:
                readers.shutdown(wait=True, cancel_futures=True)
            if inference is not None:
                inference.shutdown(wait=True, cancel_futures=True)

    def _next(self, pending: deque[_Entry]) -> _Entry:
        """The entry to finish next: the oldest (ordered), else the first whose work is done."""
        if self.config.ordered:
            return pending[0]
        futures = {(e.result if e.result is not None else e.read): e for e in pending}
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        return min((futures[f] for f in done), key=lambda e: e.index)

    def _infer(self, entry: _Entry) -> BatchResult:
        name = _name(entry.src)
        try:
            read = entry.read.result()
        except BrokenProcessPool as err:
            return BatchResult(entry.index, entry.image_id, name, error=err)
        if isinstance(read, BaseException):
            return BatchResult(entry.index, entry.image_id, name, error=read)
        try:
            radiographs, prepared = read
            prediction = self.predictor.predict_read(radiographs, prepared=prepared, heatmap=self.config.heatmap)
            return BatchResult(entry.index, entry.image_id, name, prediction=prediction)
        except Exception as err:  # noqa: BLE001 - one bad image never stops the batch
            return BatchResult(entry.index, entry.image_id, name, error=err)

    def _restart(self, readers: Executor, pending: deque[_Entry], inference: ThreadPoolExecutor | None) -> Executor:
        """A reader process died: read every image it took down again, alone, to find the culprit."""
        readers.shutdown(wait=False, cancel_futures=True)
        for entry in pending:
            fut = entry.read
            if fut.done() and not fut.cancelled() and not isinstance(fut.exception(), BrokenProcessPool):
                continue  # read before the crash
            redo: Future = Future()
            try:
                with _process_pool(1) as solo:
                    redo.set_result(solo.submit(_read_task, self.plan, entry.src, entry.image_id).result())
            except BrokenProcessPool:
                redo.set_result(CorruptFileError("a reader process crashed while decoding this image; "
                                              "the file is probably damaged", path=_name(entry.src)))
            entry.read = redo
            if entry.result is not None and inference is not None:
                entry.result.cancel()
                entry.result = inference.submit(self._infer, entry)
        return _process_pool(self.config.n_readers)


def _process_pool(n: int) -> ProcessPoolExecutor:
    # forkserver: forking this process while ONNX Runtime and reader threads run could copy a held lock
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method))


@dataclass
class _Entry:
    """One image in flight: its read and (with inference workers) its prediction."""

    index: int
    src: Any
    image_id: str
    read: Future
    result: Future | None = None


def _name(src: Any) -> str:
    if isinstance(src, str | os.PathLike):
        return os.fspath(src)
    return "<bytes>"
