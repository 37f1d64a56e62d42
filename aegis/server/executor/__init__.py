"""The ``aegis executor`` service: the HTTP shell of :mod:`aegis.remediation`.

Usage::

    from aegis.remediation import build_executor
    from aegis.server.executor import create_executor_app

    executor = build_executor(keys=os.environ["AEGIS_EXECUTOR_KEYS"], allow_namespaces=["prod"],
                              policies=["policies/"], database_url="sqlite:///executor.db")
    executor.start()
    app = create_executor_app(executor)     # serve with uvicorn, or: aegis executor
"""

from __future__ import annotations

from aegis.server.executor.app import DEFAULT_MAX_BODY_BYTES, ExecutorApp, create_executor_app
from aegis.server.executor.metrics import ExecutorMetrics

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ExecutorApp", "ExecutorMetrics", "create_executor_app"]
