"""``thoracic serve``: the HTTP API and web viewer on uvicorn.

``serve.add_parser(sub)`` adds it to the main parser (sets ``func=serve.run``); ``--port 0``
takes a free port (the URL is the first line printed).

The token comes from ``--token-file``, else the ``THORACIC_TOKEN`` environment variable, else
``--token`` (visible to other users in the process list: prefer the first two); with none, a
random token is made and printed once. ``--tokens-file`` adds one token per client (each line),
each with its own request budget (``--rate-limit N/PERIOD``) and its own id in the audit log
(``--audit-log FILE``). Without the ``serve`` extra the command says what to install.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from thoracic.cli._args import COUNT, IN_FILE, OUT_FILE, PORT, POSITIVE, POSITIVE_FLOAT, config_from_args
from thoracic.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from thoracic.serve.limits import RateLimit

__all__ = ["HELP", "add_parser", "read_tokens", "resolve_token", "run"]

HELP = "run the HTTP API and the web viewer"
TOKEN_ENV = "THORACIC_TOKEN"
log = logging.getLogger("thoracic.serve")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers`` and return its parser."""
    p = subparsers.add_parser("serve", help=HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the service: give --tls-cert/--tls-key "
                        "or put a TLS proxy in front)")
    p.add_argument("--port", type=PORT, default=8000, help="port (default 8000; 0 takes a free one)")
    p.add_argument("--token", default=None, help=f"API token (prefer --token-file or ${TOKEN_ENV}: flags are visible to others)")
    p.add_argument("--token-file", type=IN_FILE, default=None, help="read the API token from this file (first line)")
    p.add_argument("--tokens-file", type=IN_FILE, default=None,
                   help="more API tokens, one per line (blank lines and lines starting with # skipped): one per "
                        "client, each with its own budget and audit id")
    p.add_argument("--rate-limit", type=_rate_limit, default=None, metavar="N/PERIOD",
                   help="request budget per token, e.g. 60/min, 1000/h or 5/10s: every authenticated /v1 request "
                        "counts; beyond it 429 with Retry-After (default: none)")
    p.add_argument("--audit-log", type=OUT_FILE, default=None, metavar="FILE",
                   help="append one JSON line per analysis request to FILE (time, token id, SHA-256 of the SOP "
                        "Instance UID or of the upload, model ids, outcome; no patient data)")
    p.add_argument("--max-upload-mb", type=POSITIVE_FLOAT, default=32.0, help="largest upload accepted, MiB (default 32)")
    p.add_argument("--workers", "--concurrency", dest="concurrency", type=POSITIVE, default=1,
                   help="analyses run at the same time (default 1)")
    p.add_argument("--queue", type=COUNT, default=8,
                   help="requests that may wait for a worker; beyond that 429 with Retry-After (default 8)")
    p.add_argument("--threads", type=POSITIVE, default=1, help="ONNX Runtime threads per analysis (default 1)")
    p.add_argument("--results", type=POSITIVE, default=32, help="recent results kept for download (default 32)")
    p.add_argument("--results-mb", type=POSITIVE_FLOAT, default=512.0, help="memory budget of kept results, MiB (default 512)")
    p.add_argument("--upload-timeout", type=POSITIVE_FLOAT, default=60.0,
                   help="seconds an upload may take to arrive; 408 after (default 60)")
    p.add_argument("--models", nargs="+", metavar="ONNX", default=(),
                   help="detector ONNX files fused by WBF (default: the shipped detector)")
    p.add_argument("--classifier", type=IN_FILE, metavar="ONNX", default=None,
                   help="normal/abnormal classifier (default: the shipped one with the shipped detector); a "
                        "multi-label one adds per-finding probabilities and heatmaps")
    p.add_argument("--preset", metavar="NAME|JSON", default=None,
                   help="a preset instead of --models/--classifier: 'fast' (the shipped models) or a preset file, "
                        "such as the ensemble.json of 'thoracic train cv' (its detectors, TTA, WBF and classifier)")
    p.add_argument("--tls-cert", metavar="PEM", default=None, help="serve HTTPS with this certificate (chain)")
    p.add_argument("--tls-key", metavar="PEM", default=None,
                   help="the certificate's private key (unencrypted; readable by this service only)")
    p.add_argument("--allow-non-chest", action="store_true", help="analyze lateral and non-chest images too (flagged)")
    p.add_argument("--log-level", type=str.lower, choices=["debug", "info", "warning", "error"], default="info",
                   help="log level of the service, in either case (default info: one line per request, no patient data)")
    p.set_defaults(func=run)
    return p


def _rate_limit(text: str) -> RateLimit:
    from thoracic.serve.limits import RateLimit

    try:
        return RateLimit.parse(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def read_tokens(path: str) -> tuple[str, ...]:
    """The tokens of a ``--tokens-file``: one per line, blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read the tokens file ({err.strerror or err})", path=path) from err
    tokens = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not tokens:
        raise ConfigError("the tokens file has no token", path=path)
    return tokens


def resolve_token(args: argparse.Namespace, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """The API token and where it came from (``file``, ``env``, ``flag`` or ``generated``)."""
    env = os.environ if environ is None else environ
    if args.token_file:
        try:
            text = Path(args.token_file).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read the token file ({err.strerror or err})", path=args.token_file) from err
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ConfigError("the token file is empty", path=args.token_file)
        return token, "file"
    if env.get(TOKEN_ENV, "").strip():
        return env[TOKEN_ENV].strip(), "env"
    if args.token:
        return args.token, "flag"
    return secrets.token_urlsafe(24), "generated"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror or err})") from err
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    """Load the models, bind the port, print the URL and serve until interrupted."""
    try:
        import uvicorn

        from thoracic.serve.app import create_app
    except ImportError as err:
        raise MissingDependencyError.for_feature("thoracic serve", "fastapi/uvicorn", "serve") from err
    from thoracic.inference.analyzer import Analyzer
    from thoracic.serve.config import ServeConfig
    from thoracic.serve.limits import token_id

    level = getattr(logging, args.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("thoracic").setLevel(level)  # one line per request at info
    if level <= logging.DEBUG:
        logging.getLogger().setLevel(level)  # everything, the libraries' debug output included
    token, source = resolve_token(args)
    tokens = read_tokens(args.tokens_file) if args.tokens_file else ()
    settings = config_from_args(ServeConfig, args, token=token, tokens=tokens)
    sock = _bind(args.host, args.port)  # fail fast on a taken port, before loading the models
    try:
        analyzer = Analyzer.load(settings.models, settings.classifier, threads=settings.threads, preset=settings.preset)
    except BaseException:
        sock.close()
        raise
    app = create_app(settings, analyzer=analyzer)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls else "http"
    print(f"thoracic serve: {scheme}://{shown}:{port}/ (viewer), API at /v1, spec at /openapi.json", flush=True)
    if source == "generated":
        print(f"API token (generated; pass --token-file or ${TOKEN_ENV} to fix it): {token}", flush=True)
    else:
        print(f"API token: from the {'token file' if source == 'file' else source}", flush=True)
    if tokens:
        print(f"API tokens: {len(settings.all_tokens)} (ids {', '.join(token_id(t) for t in settings.all_tokens)})",
              flush=True)
    config = uvicorn.Config(
        app,
        log_config=None,  # our logging: uvicorn's access log would repeat every request line
        access_log=False,
        log_level=args.log_level,
        server_header=False,
        timeout_graceful_shutdown=10,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
