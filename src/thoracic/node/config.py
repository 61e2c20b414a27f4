"""The settings of a DICOM node: one frozen dataclass, validated when built."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from thoracic import _tls
from thoracic.errors import ConfigError

__all__ = ["CStoreDestination", "NodeConfig", "StowRsDestination", "check_ae_title"]

_AE_CHARS = re.compile(r"^[\x20-\x7e]{1,16}$")


def check_ae_title(title: str, what: str = "AE title") -> str:
    """Validate a DICOM Application Entity title and return it without padding.

    >>> check_ae_title(" THORACIC ")
    'THORACIC'
    """
    stripped = title.strip()
    if not stripped or not _AE_CHARS.match(stripped) or "\\" in stripped:
        raise ConfigError(
            f"{what} {title!r} is not a valid AE title: 1 to 16 printable ASCII characters, no backslash"
        )
    return stripped


def _path(value: object) -> Path | None:
    return None if value is None else Path(str(value))


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise ConfigError(f"the send timeout must be a positive number of seconds, got {timeout}")


def _check_port(port: int, what: str) -> int:
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be a TCP port number (0-65535), got {port}")
    return int(port)


@dataclass(frozen=True)
class CStoreDestination:
    """A DICOM peer (a PACS) that receives the results by C-STORE.

    With ``tls`` the association runs over TLS 1.2+: the peer's certificate is verified against
    ``tls_ca`` (else the system's trusted certificates) and must name ``host``; ``tls_cert`` and
    ``tls_key`` are our certificate for a peer that requires one (mutual TLS). ``timeout`` bounds
    each wait for the peer (the association, each C-STORE answer): a peer that answers slower
    has the association aborted, and the send is tried again later.
    """

    ae_title: str
    host: str
    port: int
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    timeout: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "destination AE title"))
        if not self.host:
            raise ConfigError("the destination host is empty")
        _check_port(self.port, "the destination port")
        _check_timeout(self.timeout)
        for name in ("tls_ca", "tls_cert", "tls_key"):
            object.__setattr__(self, name, _path(getattr(self, name)))
        if not self.tls and (self.tls_ca or self.tls_cert or self.tls_key):
            raise ConfigError("--dest-tls-ca/--dest-tls-cert/--dest-tls-key need --dest-tls")
        if self.tls:
            self.ssl_context()  # every file readable and usable, now rather than at the first send

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context of the association (``None`` without TLS)."""
        if not self.tls:
            return None
        return _tls.client_context(self.tls_ca, self.tls_cert, self.tls_key)

    @property
    def name(self) -> str:
        """A stable name for logs and the queue's records (no credentials)."""
        return f"cstore:{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class StowRsDestination:
    """A DICOMweb service that receives the results by STOW-RS (``POST {url}/studies``).

    ``token`` is sent as ``Authorization: Bearer <token>``; ``username``/``password`` as HTTP basic
    authentication. Neither is ever logged. An ``https://`` server's certificate is verified
    against ``ca`` (a PEM file), else the system's trusted certificates; ``verify=False`` turns
    verification off (never done by the CLI; the node logs a warning for it).
    """

    url: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    verify: bool = True
    ca: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ca", _path(self.ca))
        _check_timeout(self.timeout)
        if not re.match(r"^https?://[^/]+", self.url):
            raise ConfigError(f"the STOW-RS URL must start with http:// or https://, got {self.url!r}")
        if self.token and self.username:
            raise ConfigError("give a STOW-RS bearer token or a user name and password, not both")
        if (self.username is None) != (self.password is None):
            raise ConfigError("STOW-RS basic authentication needs both a user name and a password")
        if self.ca is not None:
            if not self.verify:
                raise ConfigError("a STOW-RS CA file and verify=False contradict each other")
            if not self.url.lower().startswith("https://"):
                raise ConfigError(f"--stowrs-ca is for an https:// URL, got {self.name.removeprefix('stowrs:')!r}")
            self.ssl_context()

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx verifies the server with: a context of ``ca`` or the system store, or ``False``."""
        if not self.verify:
            return False
        return _tls.client_context(self.ca)

    @property
    def name(self) -> str:
        """A stable name for logs and the queue's records: the URL without user information."""
        return "stowrs:" + re.sub(r"//[^/@]*@", "//", self.url.rstrip("/"))


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``thoracic dicom-node`` needs.

    Attributes
    ----------
    spool:
        Folder of the persistent queue: ``queue.sqlite3``, received images (``in/``), results
        waiting to be sent (``out/``). Survives restarts; keep it on a local disk.
    ae_title, host, port:
        Our Application Entity title and where the C-STORE SCP listens.
    allow_ae:
        Calling AE titles allowed to associate; empty allows any.
    queue_size:
        At most this many images are waiting or in work; beyond it C-STORE answers
        ``0xA700`` (out of resources) and the modality retries later.
    destinations:
        Where the results go (at least one): :class:`CStoreDestination` and/or
        :class:`StowRsDestination`.
    workers:
        Images analyzed at the same time.
    max_attempts:
        Tries of a transient failure (a destination down, refusing with ``0xA700`` or too slow, a
        full disk) before a job is marked failed. With the default delays, 20 tries wait about
        70 minutes in all.
    backoff, max_backoff:
        Seconds before the first retry, doubled on each further one up to ``max_backoff``.
    accept_secondary_capture:
        Accept Secondary Capture images whose Modality is CR or DX (digitized films, exports).
    keep_files:
        Keep the received image and the result files of finished jobs (default: deleted once the
        results are delivered; the queue keeps their UIDs).
    tls_cert, tls_key, tls_ca:
        With a certificate and its key (PEM), associations are accepted over TLS only (1.2 or
        newer; a plaintext association fails its handshake). With ``tls_ca`` too, a client must
        present a certificate that CA signed (mutual TLS).
    """

    spool: Path
    destinations: tuple[CStoreDestination | StowRsDestination, ...]
    ae_title: str = "THORACIC"
    host: str = "0.0.0.0"
    port: int = 11112
    allow_ae: tuple[str, ...] = ()
    queue_size: int = 100
    workers: int = 1
    max_attempts: int = 20
    backoff: float = 5.0
    max_backoff: float = 300.0
    accept_secondary_capture: bool = True
    keep_files: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool", Path(self.spool))
        for name in ("tls_cert", "tls_key", "tls_ca"):
            object.__setattr__(self, name, _path(getattr(self, name)))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError("--tls-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.tls_cert is not None:
            self.ssl_context()  # every file readable and usable, before the node starts
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title))
        object.__setattr__(
            self, "allow_ae", tuple(check_ae_title(t, "allowed AE title") for t in self.allow_ae)
        )
        object.__setattr__(self, "destinations", tuple(self.destinations))
        _check_port(self.port, "the port")
        if not self.destinations:
            raise ConfigError(
                "no destination for the results: give --dest-ae/--dest-host/--dest-port (C-STORE) "
                "and/or --stowrs URL (DICOMweb)"
            )
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ConfigError("the same destination is given twice")
        if self.queue_size < 1:
            raise ConfigError(f"the queue size must be at least 1, got {self.queue_size}")
        if self.workers < 1:
            raise ConfigError(f"the number of workers must be at least 1, got {self.workers}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.backoff <= self.max_backoff:
            raise ConfigError("the backoff must satisfy 0 <= backoff <= max_backoff")

    @property
    def tls(self) -> bool:
        """Whether associations are accepted over TLS only."""
        return self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context of the SCP (``None`` without TLS)."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return _tls.server_context(self.tls_cert, self.tls_key, self.tls_ca)
