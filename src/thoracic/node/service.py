"""The DICOM node as one service: the C-STORE SCP and the workers, stopped cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from thoracic.errors import ConfigError
from thoracic.node.config import NodeConfig
from thoracic.node.queue import JobQueue
from thoracic.node.scp import start_scp
from thoracic.node.worker import Worker

__all__ = ["DicomNode"]

log = logging.getLogger("thoracic.node")


class DicomNode:
    """A running node: queue, SCP and worker threads.

    Parameters
    ----------
    config:
        The settings.
    analyzer:
        A loaded :class:`thoracic.inference.analyzer.Analyzer` (its ``models`` give the idempotency key).
    build:
        Optional replacement of :func:`thoracic.dicom.build_results`.

    Use :meth:`start` / :meth:`stop`, or :meth:`serve` to run until SIGTERM or SIGINT.
    """

    def __init__(self, config: NodeConfig, analyzer: Any, build: Callable[[Any], Any] | None = None) -> None:
        self.config = config
        self.analyzer = analyzer
        self.build = build
        self.queue: JobQueue | None = None
        self.server: Any = None
        self.workers: list[Worker] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    @property
    def model_sha256s(self) -> tuple[str, ...]:
        return tuple(m.sha256 for m in self.analyzer.models)

    def start(self) -> None:
        """Open the queue, recover from a crash, start the workers and then the SCP."""
        cfg = self.config
        self.queue = JobQueue(cfg.spool, cfg.queue_size)
        back = self.queue.recover(keep_done=cfg.keep_files)
        counts = self.queue.counts()
        log.info(
            "queue %s: %d received, %d sending, %d done, %d failed%s",
            cfg.spool,
            counts["received"],
            counts["sending"],
            counts["done"],
            counts["failed"],
            f" ({back} interrupted analyses resumed)" if back else "",
        )
        for i in range(cfg.workers):
            worker = Worker(cfg, self.queue, self.analyzer, self.build)
            thread = threading.Thread(target=worker.run, name=f"thoracic-worker-{i}", daemon=True)
            self.workers.append(worker)
            self._threads.append(thread)
            thread.start()
        try:
            self.server = start_scp(cfg, self.queue, self.model_sha256s)
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {cfg.host}:{cfg.port} ({err.strerror or type(err).__name__}); "
                "choose another --port/--host or stop the service that uses it"
            ) from err
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        tls = ""
        if cfg.tls:
            tls = " over TLS, client certificates required (mutual TLS)" if cfg.tls_ca else " over TLS"
        log.info(
            "listening on %s:%d as AE %s%s; results to %s",
            host,
            self.server.server_address[1],
            cfg.ae_title,
            tls,
            ", ".join(d.name + (" over TLS" if getattr(d, "tls", False) else "") for d in cfg.destinations),
        )
        for dest in cfg.destinations:
            if getattr(dest, "verify", True) is False:
                log.warning("%s: the server's HTTPS certificate is NOT verified (verify=False)", dest.name)

    @property
    def port(self) -> int:
        """The port the SCP listens on (useful with ``port=0``)."""
        return int(self.server.server_address[1])

    def stop(self, timeout: float = 30.0, associations_timeout: float = 10.0) -> None:
        """Stop accepting images, let the workers finish the job in hand (up to ``timeout``), close.

        An association in progress gets up to ``associations_timeout`` seconds to end, so that an
        image being received is answered; then it is aborted, as is at once a connection that
        has not asked for an association (the modality sends again what was not answered with
        success, and an image spooled already is not queued twice).
        """
        for worker in self.workers:
            worker.stopping.set()
        if self.queue is not None:
            self.queue.changed.set()
        if self.server is not None:
            server, self.server = self.server, None
            server.shutdown()  # no new association
            deadline = time.monotonic() + associations_timeout
            for assoc in server.active_associations:
                if assoc.is_established:
                    assoc.join(max(0.0, deadline - time.monotonic()))
            busy = server.active_associations
            if any(a.is_established for a in busy):
                log.warning("%d association(s) still open after %.0f s; aborted",
                            sum(a.is_established for a in busy), associations_timeout)
            for assoc in busy:
                assoc.abort()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s still busy after %.0f s; its job resumes at the next start", thread.name, timeout)
        if self.queue is not None and not any(t.is_alive() for t in self._threads):
            self.queue.close()
        self._stop.set()
        log.info("DICOM node stopped")

    def serve(self) -> None:
        """Start, then block until SIGTERM or SIGINT (call from the main thread), then stop."""
        got = threading.Event()

        def handler(signum: int, frame: Any) -> None:
            log.info("%s received; stopping", signal.Signals(signum).name)
            got.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not got.wait(1.0):
                pass
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self.stop()
