"""The settings of ``thoracic serve``: one frozen dataclass, validated once.

>>> s = ServeConfig(token="secret", max_upload_mb=8, concurrency=2, queue=4)
>>> s.max_upload_bytes, s.capacity
(8388608, 6)
>>> s
ServeConfig(token='***', tokens=0, max_upload_mb=8.0, concurrency=2, queue=4, results=32, results_mb=512.0,
              threads=1, retry_after_max=60, upload_timeout=60.0, models=(), allow_non_chest=False, classifier=None,
              tls_cert=None, tls_key=None, rate_limit=None, audit_log=None, preset=None)
>>> ServeConfig(token="a", tokens=("b", "c"), rate_limit="60/min").rate_limit
RateLimit(requests=60, period=60.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thoracic import _tls
from thoracic.errors import ConfigError
from thoracic.serve.limits import RateLimit

__all__ = ["ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """How the HTTP service runs.

    Attributes
    ----------
    token:
        The API token clients send as ``Authorization: Bearer <token>``; ``None`` (and no
        ``tokens``) turns authentication off (only for tests and loopback demos; the CLI always
        sets one).
    tokens:
        More API tokens, one per client: each has its own request budget and its own id in the
        audit log.
    max_upload_mb:
        The largest upload accepted, in MiB (larger ones get 413 before they are parsed).
    concurrency:
        Analyses that run at the same time (worker threads).
    queue:
        Requests that may wait for a worker; beyond ``concurrency + queue`` requests in
        flight the service answers 429 with ``Retry-After`` at once.
    results:
        Analyses whose images and DICOM results are kept for download (least recently used
        ones are dropped first).
    results_mb:
        Memory budget of the kept results, in MiB.
    threads:
        ONNX Runtime threads of each model (per analysis).
    retry_after_max:
        Upper bound of the ``Retry-After`` seconds sent with 429.
    upload_timeout:
        Seconds an upload may take to arrive (a slow client holds a slot meanwhile); 408 after.
    models:
        Detector ONNX files (default: the shipped detector).
    allow_non_chest:
        Analyze lateral views and non-chest images too (flagged) instead of answering 422.
    classifier:
        The normal/abnormal classifier ONNX (default: the shipped one with the shipped detector);
        a multi-label one adds per-finding probabilities and heatmaps to every result.
    preset:
        A preset's name or file (:mod:`thoracic.inference.preset`) instead of ``models`` and
        ``classifier``: the detectors, their fusion (TTA, WBF) and the classifier in one.
    tls_cert, tls_key:
        A PEM certificate (chain) and its unencrypted private key: the service speaks HTTPS only
        (TLS 1.2 or newer). Both files are loaded when the settings are built.
    rate_limit:
        A request budget per token (a :class:`~thoracic.serve.limits.RateLimit` or its text,
        ``60/min``): every authenticated ``/v1`` request counts; beyond it 429 with ``Retry-After``.
        ``None``: no budget.
    audit_log:
        A file receiving one JSON line per analysis request (:mod:`thoracic.serve.audit`); created
        (mode 0600) and checked when the settings are built.
    """

    token: str | None = field(default=None, repr=False)
    tokens: tuple[str, ...] = field(default=(), repr=False)
    max_upload_mb: float = 32.0
    concurrency: int = 1
    queue: int = 8
    results: int = 32
    results_mb: float = 512.0
    threads: int = 1
    retry_after_max: int = 60
    upload_timeout: float = 60.0
    models: tuple[str, ...] = ()
    allow_non_chest: bool = False
    classifier: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    rate_limit: RateLimit | None = None
    audit_log: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_upload_mb", float(self.max_upload_mb))
        object.__setattr__(self, "results_mb", float(self.results_mb))
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        if self.classifier is not None:
            object.__setattr__(self, "classifier", str(self.classifier))
        if self.preset is not None:
            object.__setattr__(self, "preset", str(self.preset))
            if self.models or self.classifier is not None:
                raise ConfigError("give a preset or detector and classifier files (models, classifier), not both")
        if self.token is not None and not self.token.strip():
            raise ConfigError("the API token is empty; give a token or none at all")
        object.__setattr__(self, "tokens", tuple(str(t) for t in self.tokens))
        if any(not t.strip() for t in self.tokens):
            raise ConfigError("an API token is empty; give each client a token")
        if isinstance(self.rate_limit, str):
            object.__setattr__(self, "rate_limit", RateLimit.parse(self.rate_limit))
        if self.audit_log is not None:
            from thoracic.serve.audit import check_writable

            object.__setattr__(self, "audit_log", str(self.audit_log))
            check_writable(self.audit_log)
        if not self.max_upload_mb > 0:
            raise ConfigError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        for name in ("concurrency", "results", "threads", "retry_after_max"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise ConfigError(f"queue must be at least 0, got {self.queue}")
        if not self.upload_timeout > 0:
            raise ConfigError(f"upload_timeout must be positive, got {self.upload_timeout}")
        if not self.results_mb > 0:
            raise ConfigError(f"results_mb must be positive, got {self.results_mb}")
        for name in ("tls_cert", "tls_key"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        _tls.check_pair(self.tls_cert, self.tls_key, "HTTPS (--tls-cert/--tls-key)")

    def __repr__(self) -> str:  # never print the token
        shown = "None" if self.token is None else "'***'"
        return (
            f"ServeConfig(token={shown}, tokens={len(self.tokens)}, max_upload_mb={self.max_upload_mb}, concurrency={self.concurrency}, "
            f"queue={self.queue}, results={self.results}, results_mb={self.results_mb}, threads={self.threads}, "
            f"retry_after_max={self.retry_after_max}, upload_timeout={self.upload_timeout}, models={self.models}, allow_non_chest={self.allow_non_chest}, "
            f"classifier={self.classifier!r}, tls_cert={self.tls_cert!r}, tls_key={self.tls_key!r}, "
            f"rate_limit={self.rate_limit!r}, audit_log={self.audit_log!r}, preset={self.preset!r})"
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def all_tokens(self) -> tuple[str, ...]:
        """Every accepted token, each once (empty: authentication is off)."""
        return tuple(dict.fromkeys(t for t in (self.token, *self.tokens) if t is not None))

    @property
    def tls(self) -> bool:
        """Whether the service speaks HTTPS."""
        return self.tls_cert is not None

    @property
    def capacity(self) -> int:
        """Requests in flight (running + waiting) before the service answers 429."""
        return self.concurrency + self.queue
