"""Serving: ``edgeres serve`` on a real Triton Inference Server (through NVIDIA PyTriton).

Optional extra: ``pip install 'edgeres[serve]'``. Importing this package does not
import PyTriton; :class:`ModelServer` does, when it is created.
"""

from __future__ import annotations

from edgeres.serve.server import (
    INSTALL_HINT,
    ModelServer,
    ServeOptions,
    ServingSpec,
    pytriton_available,
    require_pytriton,
    serve,
    server_environment,
    serving_spec_from_engine,
)

__all__ = [
    "INSTALL_HINT",
    "ModelServer",
    "ServeOptions",
    "ServingSpec",
    "pytriton_available",
    "require_pytriton",
    "serve",
    "server_environment",
    "serving_spec_from_engine",
]
