"""``langroute serve``: the routes behind an OpenAI-compatible HTTP endpoint.

Needs FastAPI and uvicorn: ``pip install 'langchain-langroute[serve]'``. The core's
``langroute serve CONFIG`` finds :func:`run_server` through the ``langroute.serve``
entry point. In Python::

    from langroute.models.config import load_models_config
    from langchain_langroute.server import Gateway, create_app

    app = create_app(Gateway(load_models_config("models.toml")))  # any ASGI server

See ``docs/serving.md`` for the configuration, headers, keys, budgets and metrics.
"""

from langchain_langroute.server.app import create_app, decision_headers
from langchain_langroute.server.gateway import Gateway
from langchain_langroute.server.run import run_server, serve_in_thread

__all__ = [
    "Gateway",
    "create_app",
    "decision_headers",
    "run_server",
    "serve_in_thread",
]
