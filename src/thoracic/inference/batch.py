"""Pipelined batch prediction: images are decoded ahead of inference, models never wait for files.

:class:`BatchPredictor` wraps a :class:`~thoracic.inference.predictor.Predictor` for many images.
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
:meth:`Predictor.predict <thoracic.inference.predictor.Predictor.predict>` reads it. Lung-ROI
prediction always decodes in full (the lungs model segments the full image).

Examples
--------
>>> from thoracic.inference.predictor import Predictor
>>> bp = BatchPredictor(Predictor.load(threads=1), PipelineConfig(readers=2, workers=2))  # doctest: +SKIP
>>> for r in bp.run([("a.dcm", "a"), ("b.png", "b")]):                                   # doctest: +SKIP
...     print(r.image_id, r.ok, r.prediction.p_abnormal if r.ok else r.error)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from thoracic._pool import process_pool, run_alone
from thoracic.errors import (
    ConfigError,
    CorruptFileError,
    ThoracicError,
    internal_error_message,
)
from thoracic.inference.plan import ReadPlan, read_plan
from thoracic.inference.predictor import ImagePrediction, Predictor
from thoracic.io.radiograph import Radiograph, ReadConfig
from thoracic.io.read import Source
from thoracic.preprocess.chain import Chain, Prepared

__all__ = ["BatchPredictor", "BatchResult", "PipelineConfig", "default_workers"]


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


def _read_task(plan: ReadPlan, src: Source, image_id: str) -> tuple[dict[str, Radiograph], dict[Chain, Prepared]] | BaseException:
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

    def __init__(self, predictor: Predictor, config: PipelineConfig | None = None, read: ReadConfig | None = None) -> None:
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
            self._pool = process_pool(self.config.n_readers, forkserver=True)
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

    def predict_one(self, src: Source, image_id: str) -> ImagePrediction:
        """Read and predict one image in this thread, exactly as the batch does."""
        radiographs, prepared = self.plan.load(src, image_id, detach=True)
        return self.predictor.predict_read(radiographs, prepared=prepared, heatmap=self.config.heatmap)

    def run(self, items: Iterable[tuple[Source, str]]) -> Iterator[BatchResult]:
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
            readers = process_pool(cfg.n_readers, forkserver=True)
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
            redo.set_result(run_alone(_read_task, (self.plan, entry.src, entry.image_id), _crashed, forkserver=True))
            entry.read = redo
            if entry.result is not None and inference is not None:
                entry.result.cancel()
                entry.result = inference.submit(self._infer, entry)
        return process_pool(self.config.n_readers, forkserver=True)


def _crashed(task: tuple) -> CorruptFileError:
    """The read of ``(plan, src, image_id)`` that took its reader process down with it."""
    return CorruptFileError("a reader process crashed while decoding this image; the file is probably damaged",
                            path=_name(task[1]))


@dataclass
class _Entry:
    """One image in flight: its read and (with inference workers) its prediction."""

    index: int
    src: Source
    image_id: str
    read: Future
    result: Future | None = None


def _name(src: Source) -> str:
    if isinstance(src, str | os.PathLike):
        return os.fspath(src)
    return "<bytes>"
