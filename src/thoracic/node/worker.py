"""The node's workers: take a job, analyze it, save its results, send them, mark it done.

A job's steps, each committed to the queue before the next begins:

1. ``analyzing``: :meth:`Analyzer.analyze` on the received image, :func:`thoracic.dicom.build_results`,
   the SR/GSPS/SEG saved into the job's results folder (written whole, then renamed).
2. ``sending``: the saved files to every destination not yet served (each success recorded).
3. ``done``: the received image and the result files are deleted (unless ``keep_files``).

A crash in step 1 analyzes the image again (nothing was sent); in step 2 it resends the SAME
files, so the PACS sees the same SOP Instance UIDs and keeps one copy. Images that cannot be
analyzed (not a chest radiograph, undecodable, a header the DICOM results refuse) fail at once:
the same image would fail the same way. Failures of the machine (``OSError``: disk, network) and
of a destination are retried with an exponential backoff, up to ``max_attempts``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from thoracic.errors import NON_CHEST_HINT, InvalidRadiographError, NotChestRadiographError, ReadError, ThoracicError
from thoracic.io.radiograph import ReadConfig
from thoracic.node.config import NodeConfig
from thoracic.node.queue import Job, JobQueue, SpoolIOError
from thoracic.node.send import SendError, send_files

if TYPE_CHECKING:
    from thoracic.dicom.results import DicomResults
    from thoracic.inference.analyzer import Analysis, Analyzer

__all__ = ["Worker", "backoff_delay", "describe_error"]

log = logging.getLogger("thoracic.node.worker")

#: Errors that no retry can fix: the image itself is unsuitable.
_PERMANENT = (InvalidRadiographError, ReadError)
#: How the node reads: the DICOM header check and the pixel content check (no override).
_READ = ReadConfig(check_content=True)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry number ``attempt`` (1-based): ``base * 2**(attempt - 1)``, at most ``cap``.

    >>> [backoff_delay(n, 5, 60) for n in (1, 2, 3, 4, 5)]
    [5.0, 10.0, 20.0, 40.0, 60.0]
    """
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))


def describe_error(err: BaseException) -> str:
    """A log-safe description: thoracic's own messages (which never quote file contents), else the type."""
    if isinstance(err, NotChestRadiographError):  # the node has no --allow-non-chest: no hint to use it
        return f"{type(err).__name__}: {str(err).removesuffix(NON_CHEST_HINT)}"
    if isinstance(err, ThoracicError):
        return f"{type(err).__name__}: {err}"
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return type(err).__name__


def _default_build(analysis: Analysis) -> DicomResults:
    from thoracic.dicom import build_results

    return build_results(analysis)


class Worker:
    """Processes jobs of a :class:`JobQueue` until stopped (one thread per worker).

    Parameters
    ----------
    config:
        The node's settings (destinations, retries, ``keep_files``, our AE title).
    queue:
        The job queue.
    analyzer:
        An object with ``analyze(path)`` (a :class:`thoracic.inference.analyzer.Analyzer`).
    build:
        Turns an analysis into DICOM results with ``.save(folder)`` (default:
        :func:`thoracic.dicom.build_results`).
    """

    def __init__(
        self,
        config: NodeConfig,
        queue: JobQueue,
        analyzer: Analyzer,
        build: Callable[[Analysis], DicomResults] | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.analyzer = analyzer
        self.build = build or _default_build
        self.stopping = threading.Event()

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """Work until :attr:`stopping` is set (a job in hand is finished first).

        When the queue database refuses a write (a full disk, a lock held by another process),
        the job in hand keeps its last committed state; the worker waits with the backoff and
        writes it back (``retry``) before it takes another job, so nothing stays claimed.
        """
        unsettled: tuple[Job, str] | None = None
        failures = 0
        while not self.stopping.is_set():
            job: Job | None = None
            try:
                if unsettled is not None:
                    self.queue.retry(unsettled[0].id, unsettled[1], self.config.backoff)
                    log.info("%s: the queue takes writes again; the job is tried again", unsettled[0].tag)
                    unsettled = None
                self.queue.changed.clear()  # before claiming: a job added after the claim wakes us
                job = self.queue.claim()
                if job is None:
                    # sleep until a job is added or released, or a retry delay ends (1 s at most);
                    # a ready job that is not ours to claim is in another worker's hands
                    wait = self.queue.next_ready_in()
                    self.queue.changed.wait(min(wait, 1.0) if wait else 1.0)
                    failures = 0
                    continue
                try:
                    self.process(job)
                except SpoolIOError:
                    raise
                except Exception as err:  # noqa: BLE001 - one bad job never stops the node
                    log.error("%s: unexpected %s; retried later", job.tag, describe_error(err))
                    self.queue.retry(job.id, describe_error(err), self.config.max_backoff)
                failures = 0
            except SpoolIOError as err:
                failures += 1
                if job is not None and unsettled is None:
                    unsettled = (job, f"queue: {describe_error(err)}")
                delay = backoff_delay(failures, max(self.config.backoff, 0.1), self.config.max_backoff)
                log.error("%s; nothing committed is lost, trying again in %.1f s",
                          describe_error(err), delay)
                self.stopping.wait(delay)

    def process(self, job: Job) -> None:
        """Take one claimed job through its remaining steps."""
        if job.state == "analyzing":
            if not self._analyze(job):
                return
            job = self.queue.get(job.id) or job
        if job.state == "sending":
            self._send(job)

    # --- steps --------------------------------------------------------------------------------
    def _analyze(self, job: Job) -> bool:
        log.info("%s: analyzing (attempt %d)", job.tag, job.attempts)
        try:
            analysis = self.analyzer.analyze(job.input_path, read=_READ)
            results = self.build(analysis)
            outputs = self._save(job, results)
        except _PERMANENT as err:  # no results for it: a refused image gets no SR
            what = "refused, not a frontal chest radiograph" if isinstance(err, NotChestRadiographError) else \
                "failed, the image cannot be analyzed"
            log.warning("%s: %s: %s", job.tag, what, describe_error(err))
            self.queue.fail(job.id, describe_error(err))
            return False
        except (OSError, MemoryError) as err:  # the machine, not the image: worth another try
            self._retry(job, "analysis", err)
            return False
        except Exception as err:  # noqa: BLE001 - deterministic: the same image fails the same way
            log.error(
                "%s: failed, the analysis or the DICOM results raised %s (its message is withheld: it may "
                "quote the image's header); send the image again to retry",
                job.tag,
                describe_error(err),
            )
            self.queue.fail(job.id, f"analysis: {describe_error(err)}")
            return False
        self.queue.to_sending(job.id, outputs)
        log.info(
            "%s: analyzed in %.1f s; %s saved",
            job.tag,
            float(getattr(analysis, "seconds", 0.0)),
            "+".join(o["kind"].upper() for o in outputs),
        )
        return True

    def _save(self, job: Job, results: DicomResults) -> list[dict[str, str]]:
        """Save the results whole: into a temporary folder, fsynced, then renamed to the job's folder."""
        final = job.results_dir
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        paths = results.save(tmp)
        outputs = []
        for kind, path in sorted(paths.items()):
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            outputs.append({
                "kind": kind,
                "file": Path(path).name,
                "sop_class_uid": str(ds.SOPClassUID),
                "sop_instance_uid": str(ds.SOPInstanceUID),
            })
        shutil.rmtree(final, ignore_errors=True)  # an earlier analysis that was never sent
        os.replace(tmp, final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return outputs

    def _send(self, job: Job) -> None:
        files = [job.results_dir / o["file"] for o in job.outputs]
        missing = [f for f in files if not f.is_file()]
        if missing:
            # the results folder is gone (deleted by hand): analyze again, new objects, nothing sent twice
            log.warning("%s: %d result file(s) missing; analyzing again", job.tag, len(missing))
            self.queue.reanalyze(job.id, "result files missing")
            return
        sent = set(job.sent)
        for dest in self.config.destinations:
            if dest.name in sent:
                continue
            try:
                send_files(dest, files, calling_ae=self.config.ae_title)
            except (SendError, OSError, ValueError, RuntimeError) as err:
                self._retry(job, f"sending to {dest.name}", err)
                return
            self.queue.mark_sent(job.id, dest.name)
            log.info("%s: %d result(s) sent to %s", job.tag, len(files), dest.name)
        self.queue.done(job.id)
        log.info("%s: done", job.tag)
        if not self.config.keep_files:
            job.input_path.unlink(missing_ok=True)
            shutil.rmtree(job.results_dir, ignore_errors=True)

    def _retry(self, job: Job, step: str, err: BaseException) -> None:
        what = describe_error(err)
        if job.attempts >= self.config.max_attempts:
            log.error("%s: %s failed %d times (%s); job failed", job.tag, step, job.attempts, what)
            self.queue.fail(job.id, f"{step}: {what}")
            return
        delay = backoff_delay(job.attempts, self.config.backoff, self.config.max_backoff)
        log.warning("%s: %s failed (%s); attempt %d of %d, next in %.1f s", job.tag, step, what, job.attempts,
                    self.config.max_attempts, delay)
        self.queue.retry(job.id, f"{step}: {what}", delay)
