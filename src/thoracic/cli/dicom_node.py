"""``thoracic dicom-node``: a DICOM node that analyzes the radiographs sent to it.

Modalities (or a PACS routing rule) send CR/DX images by C-STORE; each is queued on disk,
analyzed, and its SR + GSPS + SEG go to the configured PACS by C-STORE and/or STOW-RS.
See docs/clinic/node.md.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
from typing import Any

from thoracic.cli._args import (
    FRACTION,
    NON_NEGATIVE,
    OUT_DIR,
    PEER_PORT,
    PORT,
    POSITIVE,
    POSITIVE_FLOAT,
    config_from_args,
)

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "add_parser", "build_config", "run"]

HELP = "run a DICOM node that sends back SR, GSPS and SEG for the CR/DX images it receives"
DESCRIPTION = f"""{HELP[0].upper()}{HELP[1:]}.

Modalities (or a PACS routing rule) send CR/DX images by C-STORE; each is queued on disk,
analyzed, and its SR + GSPS + SEG go to the configured PACS by C-STORE and/or STOW-RS.
See docs/clinic/node.md."""

log = logging.getLogger("thoracic.node")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dicom-node`` (also used by ``python -m thoracic.node``)."""
    from thoracic.detect.clinical import DEFAULT_MIN_SCORE

    g = p.add_argument_group("listening (C-STORE SCP)")
    g.add_argument("--ae-title", default="THORACIC", help="our AE title (default THORACIC)")
    g.add_argument("--host", default="0.0.0.0", help="address to listen on (default all: 0.0.0.0)")
    g.add_argument("--port", type=PORT, default=11112, help="DICOM port (default 11112)")
    g.add_argument("--allow-ae", action="append", default=[], metavar="AE",
                   help="a calling AE title allowed to send (repeat; default: any)")
    g.add_argument("--no-secondary-capture", action="store_true",
                   help="refuse Secondary Capture images (accepted by default when Modality is CR/DX)")
    g = p.add_argument_group("TLS of incoming associations (default: plaintext)")
    g.add_argument("--tls-cert", metavar="PEM", help="our certificate (chain): accept associations over TLS only")
    g.add_argument("--tls-key", metavar="PEM", help="its private key (unencrypted; readable by this service only)")
    g.add_argument("--tls-ca", metavar="PEM",
                   help="mutual TLS: clients must present a certificate signed by a CA in this file")
    g = p.add_argument_group("queue")
    g.add_argument("--spool", type=OUT_DIR, required=True, help="folder of the persistent queue (created; keep it between runs)")
    g.add_argument("--queue-size", type=POSITIVE, default=100,
                   help="images waiting or in work before C-STORE answers out of resources (default 100)")
    g.add_argument("--max-attempts", type=POSITIVE, default=20,
                   help="tries of a transient failure: a PACS down, refusing or too slow, a full disk (default 20)")
    g.add_argument("--backoff", type=NON_NEGATIVE, default=5.0,
                   help="seconds before the first retry, doubled each time (default 5)")
    g.add_argument("--max-backoff", type=NON_NEGATIVE, default=None,
                   help="the longest delay between two tries, in seconds (default 300, or --backoff if larger)")
    g.add_argument("--keep-files", action="store_true", help="keep images and results of finished jobs in the spool")
    what = g.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true",
                      help="print the queue (jobs in each state, retries waiting, failures) and exit; read-only, "
                           "also while the node runs")
    what.add_argument("--repair-spool", action="store_true",
                      help="with the node stopped: move a damaged queue database aside (kept) and rebuild the "
                           "queue from what it still holds and from the spooled files, then exit")
    g = p.add_argument_group("results destination (at least one)")
    g.add_argument("--dest-ae", help="AE title of the PACS receiving the results by C-STORE")
    g.add_argument("--dest-host", help="its host")
    g.add_argument("--dest-port", type=PEER_PORT, help="its DICOM port")
    g.add_argument("--dest-tls", action="store_true",
                   help="send by C-STORE over TLS (the PACS certificate verified, its host name included)")
    g.add_argument("--dest-tls-ca", metavar="PEM",
                   help="CA certificate(s) the PACS certificate is verified with (default: the system's)")
    g.add_argument("--dest-tls-cert", metavar="PEM", help="our client certificate, for a PACS that requires one")
    g.add_argument("--dest-tls-key", metavar="PEM", help="its private key")
    g.add_argument("--send-timeout", type=POSITIVE_FLOAT, default=60.0,
                   help="seconds to wait for the PACS (each answer); slower, the send is tried again (default 60)")
    g.add_argument("--stowrs", metavar="URL", help="DICOMweb root receiving the results by STOW-RS (POST URL/studies)")
    g.add_argument("--stowrs-token", help="bearer token for STOW-RS (or env THORACIC_STOWRS_TOKEN)")
    g.add_argument("--stowrs-user", help="user for STOW-RS basic auth (password in env THORACIC_STOWRS_PASSWORD)")
    g.add_argument("--stowrs-ca", metavar="PEM",
                   help="CA certificate(s) an https:// STOW-RS server is verified with (default: the system's)")
    g = p.add_argument_group("analysis")
    g.add_argument("--detector", action="append", default=[], metavar="ONNX",
                   help="detector model (repeat for an ensemble; default: the shipped one)")
    g.add_argument("--classifier", metavar="ONNX", help="normal/abnormal classifier (default: the shipped one)")
    g.add_argument("--preset", metavar="NAME|JSON", default=None,
                   help="a preset instead of --detector/--classifier: 'fast' (the shipped models) or a preset file, "
                        "such as the ensemble.json of 'thoracic train cv' (its detectors, TTA, WBF and classifier)")
    g.add_argument("--min-score", type=FRACTION, default=None,
                   help="the SR and GSPS carry every finding scoring at least this (default: each finding above "
                        f"the detector's operating point, or {DEFAULT_MIN_SCORE:g} for a model without them; "
                        "overlapping boxes of one finding merged)")
    g.add_argument("--workers", type=POSITIVE, default=1, help="images analyzed at the same time (default 1)")
    g.add_argument("--threads", type=POSITIVE, default=1, help="CPU threads per model (default 1)")
    p.add_argument("--log-level", default=None, type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level, in either case (default INFO); logs never contain patient data")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dicom-node`` subcommand to ``thoracic``'s subparsers."""
    p = subparsers.add_parser("dicom-node", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~thoracic.node.NodeConfig` of parsed arguments (raises ``ConfigError``)."""
    from thoracic.errors import ConfigError
    from thoracic.node.config import CStoreDestination, NodeConfig, StowRsDestination

    destinations: list[Any] = []
    cstore = (args.dest_ae, args.dest_host, args.dest_port)
    if any(v is not None for v in cstore):
        if not all(v is not None for v in cstore):
            raise ConfigError("a C-STORE destination needs all of --dest-ae, --dest-host and --dest-port")
        destinations.append(CStoreDestination(args.dest_ae, args.dest_host, args.dest_port, tls=args.dest_tls,
                                              tls_ca=args.dest_tls_ca, tls_cert=args.dest_tls_cert,
                                              tls_key=args.dest_tls_key, timeout=args.send_timeout))
    elif args.dest_tls or args.dest_tls_ca or args.dest_tls_cert or args.dest_tls_key:
        raise ConfigError("--dest-tls and its files need a C-STORE destination (--dest-ae/--dest-host/--dest-port)")
    if args.stowrs:
        token = args.stowrs_token or os.environ.get("THORACIC_STOWRS_TOKEN") or None
        password = os.environ.get("THORACIC_STOWRS_PASSWORD") if args.stowrs_user else None
        if args.stowrs_user and password is None:
            raise ConfigError("--stowrs-user needs the password in the environment variable THORACIC_STOWRS_PASSWORD")
        destinations.append(StowRsDestination(args.stowrs, token=token, username=args.stowrs_user, password=password,
                                              ca=args.stowrs_ca, timeout=args.send_timeout))
    elif args.stowrs_token or args.stowrs_user or args.stowrs_ca:
        raise ConfigError("--stowrs-token/--stowrs-user/--stowrs-ca need --stowrs URL")
    return config_from_args(
        NodeConfig, args,
        destinations=tuple(destinations),
        max_backoff=max(300.0, args.backoff) if args.max_backoff is None else args.max_backoff,
        accept_secondary_capture=not args.no_secondary_capture,
    )


def _setup_logging(level: str | None) -> None:
    """Timestamped lines on stderr, warnings included, identifiers redacted (:mod:`thoracic.node.logs`)."""
    from thoracic.node.logs import RedactIdentifiers

    root = logging.getLogger()
    if level is None and root.handlers and root.level < logging.INFO:
        level = logging.getLevelName(root.level)  # `thoracic -vv dicom-node`
    level = level or "INFO"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactIdentifiers())
    logging.captureWarnings(True)  # pydicom's warnings quote header values: through the filter too
    # libraries' per-object chatter only when debugging
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("highdicom", "pynetdicom"):
        logging.getLogger(name).setLevel(quiet)


def _print_status(spool: Any) -> int:
    """``--status``: the queue, read-only; no UIDs or patient data (jobs by number and key digest)."""
    from thoracic.errors import ConfigError
    from thoracic.node.spool import read_status

    try:
        status = read_status(spool)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    for state, n in status.counts.items():
        print(f"{state}\t{n}")
    running = {True: "running", False: "not running", None: "unknown"}[status.node_running]
    print(f"node\t{running}")
    if status.oldest_pending_s is not None:
        print(f"oldest pending\t{status.oldest_pending_s:.0f} s")
    for title, jobs in (("retrying", status.retrying), ("failed", status.failed)):
        if jobs:
            print(f"{title}:")
        for job in jobs[:_STATUS_LINES]:
            when = f"next try in {job.next_in:.0f} s" if job.next_in >= 1 else "next try now"
            if job.state == "failed":
                when = "send the image again to retry"
            print(f"  {job.tag}\t{job.state}\tattempts {job.attempts}\t{when}\t{job.error}")
        if len(jobs) > _STATUS_LINES:
            print(f"  ... and {len(jobs) - _STATUS_LINES} more")
    return 0


#: ``--status`` lists at most this many retrying and this many failed jobs.
_STATUS_LINES = 20


def _repair(spool: Any) -> int:
    """``--repair-spool``: rebuild a damaged queue; says what it did."""
    from thoracic.node.spool import repair_spool

    report = repair_spool(spool)
    if report.healthy:
        print(f"{spool}: the queue database is sound; nothing was changed")
        return 0
    print(f"{spool}: queue rebuilt")
    if report.moved_to is not None:
        print(f"  the damaged database and anything unreadable were moved to {report.moved_to} (kept)")
    print(f"  {report.salvaged} job(s) read back from the damaged database")
    print(f"  {report.rebuilt_sending} job(s) rebuilt from saved results: sent again (the same instances)")
    print(f"  {report.rebuilt_received} job(s) rebuilt from received images: analyzed")
    for name in report.set_aside:
        print(f"  unreadable, set aside: {name}")
    print("  now: " + ", ".join(f"{n} {state}" for state, n in report.counts.items()))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the node until SIGTERM/SIGINT (or print the queue with ``--status``, or ``--repair-spool``)."""
    from thoracic.errors import MissingDependencyError

    if args.status:
        return _print_status(args.spool)
    if args.repair_spool:
        return _repair(args.spool)
    _setup_logging(args.log_level)
    config = build_config(args)
    for module in ("pynetdicom", "highdicom", "httpx"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError.for_feature("thoracic dicom-node", module, "dicom")
    from thoracic.inference.analyzer import Analyzer
    from thoracic.node.queue import JobQueue
    from thoracic.node.service import DicomNode

    JobQueue(config.spool, config.queue_size).close()  # a spool in use, damaged or locked: said before the models load
    log.info("loading the models")
    analyzer = Analyzer.load(args.detector, args.classifier, threads=args.threads, preset=args.preset)
    log.info("models: %s", analyzer.model_ids)
    build = None
    if args.min_score is not None:
        from thoracic.dicom import build_results

        build = functools.partial(build_results, min_score=args.min_score)
    DicomNode(config, analyzer, build).serve()
    return 0
