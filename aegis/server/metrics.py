"""Prometheus metrics of one app, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]


class Metrics:
    """The counters and histograms the server exports on ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aegis_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aegis_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "aegis_ratelimit_limited",
            "Requests refused with 429, by rate-limit class",
            ["limit_class"],
            registry=self.registry,
        )
        self.ratelimit_fail_open = Counter(
            "ratelimit_fail_open",
            "Rate-limit decisions taken by the in-process fallback because Redis failed (RL-3)",
            registry=self.registry,
        )
        self.login_failures = Counter(
            "aegis_login_failures",
            "Failed logins (wrong password, unknown account or throttled)",
            ["reason"],
            registry=self.registry,
        )
        self.refresh_reuse = Counter(
            "aegis_refresh_reuse_detected",
            "Refresh tokens presented again after use; each revoked a session family (SES-3)",
            registry=self.registry,
        )
        self.authorization_denied = Counter(
            "aegis_authorization_denied",
            "Requests the route policy denied, by action",
            ["action"],
            registry=self.registry,
        )
