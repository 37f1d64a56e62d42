"""The Aegis control plane: a Starlette application built only from the library.

Usage::

    from aegis.server import Settings, create_app
    from aegis.server.db import upgrade

    settings = Settings.from_env()          # AEGIS_* variables, see docs/server.md
    upgrade(settings.database_url)          # or: aegis db upgrade
    app = create_app(settings)              # serve with uvicorn, or: aegis serve
"""

from __future__ import annotations

from aegis.server.app import create_app
from aegis.server.errors import ApiError, ServerError
from aegis.server.mail import Mailer, OutboxMailer, SmtpMailer
from aegis.server.permissions import Authorizer, Endpoint, EngineAuthorizer
from aegis.server.policy_service import PolicyService, RuntimeSettingsV1
from aegis.server.settings import Settings

__all__ = [
    "ApiError",
    "Authorizer",
    "Endpoint",
    "EngineAuthorizer",
    "Mailer",
    "OutboxMailer",
    "PolicyService",
    "RuntimeSettingsV1",
    "ServerError",
    "Settings",
    "SmtpMailer",
    "create_app",
]
