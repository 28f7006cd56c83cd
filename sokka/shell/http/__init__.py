"""Serve any ``TaskStore`` over HTTP: an ASGI application (Starlette).

``create_app(store)`` (``app``) returns the application; ``sokka serve`` runs
it under uvicorn, and ``serve_in_background`` (``serve``) runs it on a
thread. Requests pass the ``guard`` (token, host names, body limit) before any
parsing. The contract itself (the table of calls, the codec, the problem
types, the OpenAPI document) is ``sokka.adapters.wire``, shared with
``HTTPStore``.
"""

from sokka.adapters.wire.openapi import openapi_document
from sokka.shell.http.app import create_app
from sokka.shell.http.limits import DEFAULT_MAX_BODY_BYTES, MIN_TOKEN_LENGTH
from sokka.shell.http.serve import serve_in_background

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MIN_TOKEN_LENGTH",
    "create_app",
    "openapi_document",
    "serve_in_background",
]
