"""``thoracic serve``: the HTTP API (FastAPI) and the web viewer.

>>> from thoracic.serve import ServeConfig, create_app   # doctest: +SKIP
>>> app = create_app(ServeConfig(token="secret"))         # doctest: +SKIP

Run it with ``thoracic serve`` (uvicorn), or mount ``create_app(...)`` in any ASGI server. The
API needs the ``serve`` extra: ``pip install 'thoracic[serve]'``.
"""

from typing import Any

from thoracic.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is an optional extra: import it only when the app is asked for
    if name == "create_app":
        from thoracic.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
