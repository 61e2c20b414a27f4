"""Batch prediction on a Ray cluster with Ray Data (``thoracic predict ... --ray [ADDRESS]``).

:func:`predict_ray` spreads a list of ``(source, image_id)`` over model replicas (Ray actors,
one CPU each, ``map_batches`` with a callable class) and streams :class:`BatchResult` objects
back to the caller, which writes the same CSV and sidecar as the local path (so ``--resume``
works the same way after a failure: the driver writes every result as it arrives).

The model files travel with the job (their bytes are shipped to every replica), so the nodes
need thoracic installed but not the model files; the *inputs* are read by the replicas, so every
node must see them at the same path (a shared file system or a mounted bucket).

Ray is imported only when used: without it, :func:`predict_ray` raises
:class:`~thoracic.errors.MissingDependencyError` (``pip install 'thoracic[ray]'``).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.inference.batch import BatchResult
from thoracic.inference.predictor import Predictor
from thoracic.io.radiograph import ReadConfig

__all__ = ["predict_ray", "require_ray"]


def require_ray() -> Any:
    """Import ``ray`` (with Ray Data), or raise :class:`MissingDependencyError`."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError as err:
        raise MissingDependencyError.for_feature("predict --ray", "ray", "ray") from err
    return ray


def _model_bundle(predictor: Predictor) -> dict[str, Any]:
    """What a replica needs to rebuild ``predictor``: model bytes (by file name) and settings."""
    def blob(i: int, path: str) -> tuple[str, bytes]:
        return f"{i}-{Path(path).name}", Path(path).read_bytes()

    if any(not d.path for d in predictor.detectors) or (predictor.classifier is not None and not predictor.classifier.path):
        raise ConfigError("--ray needs models loaded from files")
    return {
        "detectors": [blob(i, d.path) for i, d in enumerate(predictor.detectors)],
        "classifier": blob(len(predictor.detectors), predictor.classifier.path) if predictor.classifier else None,
        "config": predictor.config,
        "model_ids": predictor.model_ids,
    }


class _Replica:
    """A Ray actor holding one copy of the models (Ray Data calls it with batches of rows)."""

    def __init__(self, bundle: dict[str, Any], read: ReadConfig, reduced_decode: bool) -> None:
        from thoracic.inference.batch import BatchPredictor, PipelineConfig

        self._dir = tempfile.TemporaryDirectory(prefix="thoracic-ray-")
        paths = []
        for name, data in bundle["detectors"] + ([bundle["classifier"]] if bundle["classifier"] else []):
            path = Path(self._dir.name) / name
            path.write_bytes(data)
            paths.append(path)
        n = len(bundle["detectors"])
        predictor = Predictor.load(paths[:n], paths[n] if bundle["classifier"] else None, bundle["config"],
                                   use_classifier=bundle["classifier"] is not None, threads=1)
        if predictor.model_ids != bundle["model_ids"]:  # pragma: no cover - bytes were copied verbatim
            raise ConfigError("the models on the Ray worker differ from the driver's")
        self._batch = BatchPredictor(predictor, PipelineConfig(readers=1, workers=1, reduced_decode=reduced_decode), read)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        payloads = []
        for src, iid in zip(batch["source"], batch["image_id"], strict=True):
            src, iid = str(src), str(iid)
            try:
                outcome: tuple[Any, BaseException | None] = (self._batch.predict_one(src, iid), None)
            except Exception as err:  # noqa: BLE001 - reported per image, like the local path
                outcome = (None, err)
            try:
                data = pickle.dumps(outcome)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                data = pickle.dumps((None, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}")))
            payloads.append(data)
        return {"index": np.asarray(batch["index"]), "payload": np.asarray(payloads, dtype=object)}


def predict_ray(
    predictor: Predictor,
    items: Sequence[tuple[str, str]],
    *,
    address: str | None = None,
    read: ReadConfig | None = None,
    reduced_decode: bool = True,
    workers: int = 0,
) -> Iterator[BatchResult]:
    """Predict ``items`` (``(path, image_id)``) with Ray Data; yield results as they finish.

    Parameters
    ----------
    predictor:
        The driver's models; their files are shipped to the replicas.
    items:
        Paths every node can read, with their image ids.
    address:
        A running cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``); ``None`` starts
        a local one (shut down again at the end). When this process is already connected
        (``ray.init`` was called), that connection is used and kept.
    read:
        Base reading options.
    reduced_decode:
        As :class:`~thoracic.inference.batch.PipelineConfig`.
    workers:
        Model replicas (one CPU each); 0: one per CPU of the cluster.

    Yields
    ------
    BatchResult
        One per item, in completion order (``index`` is the position in ``items``).
    """
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reporting from a clinical tool
    started = False
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
        started = True
    try:
        if not items:
            return
        # Ray Data logs every run at INFO on the console: keep it to errors unless -v asked for INFO
        quiet = not logging.getLogger().isEnabledFor(logging.INFO)
        logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.DEBUG)
        with warnings.catch_warnings():  # ray 2.60's own DataContext() warns about its own defaults
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        replicas = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        replicas = min(replicas, len(items))
        # absolute paths: a replica's working folder is not the driver's
        rows = [{"index": i, "source": os.path.abspath(src), "image_id": iid} for i, (src, iid) in enumerate(items)]
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), replicas * 4))
        ds = ds.map_batches(_Replica, batch_size=1, concurrency=replicas, num_cpus=1,
                            fn_constructor_kwargs={"bundle": _model_bundle(predictor), "read": read or ReadConfig(),
                                                   "reduced_decode": reduced_decode})
        for row in ds.iter_rows():
            index = int(row["index"])
            src, iid = items[index]
            prediction, error = pickle.loads(row["payload"])
            yield BatchResult(index, iid, str(src), prediction=prediction, error=error)
    finally:
        if started:
            ray.shutdown()
