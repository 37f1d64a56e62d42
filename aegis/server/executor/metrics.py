"""Prometheus metrics of the executor service, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["ExecutorMetrics"]


class ExecutorMetrics:
    """The counters ``aegis executor`` exports on ``/metrics``.

    Attributes:
        registry: the registry to expose (``prometheus_client.generate_latest(registry)``).
        actions: actions answered 200/500/504, by ``type`` and ``status``.
        refusals: refused requests (403, 409, 413, 422), by ``reason``.
        signature_failures: requests answered 401 (any signature problem).
        replays: correctly signed requests whose nonce was already used (409).
        audit_failures: requests refused with 503 because the audit store failed
            (``executor_refused_audit_down_total``, FLT-03).
        unavailable: requests refused with 503 for another store (nonce store, guardrail store).
        requests: every HTTP request, by route and status code.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.actions = Counter(
            "aegis_executor_actions",
            "Actions executed (or dry-run), by type and outcome status",
            ["type", "status"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "aegis_executor_refusals",
            "Requests refused by scope, guardrail, policy, validation or size, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "aegis_executor_signature_failures",
            "Requests refused with 401 because their signature did not verify",
            registry=self.registry,
        )
        self.replays = Counter(
            "aegis_executor_replays",
            "Correctly signed requests refused because their nonce was already used",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "executor_refused_audit_down",
            "Requests refused with 503 because the executor could not audit (FLT-03)",
            registry=self.registry,
        )
        self.unavailable = Counter(
            "aegis_executor_store_unavailable",
            "Requests refused with 503 because the nonce or guardrail store failed",
            registry=self.registry,
        )
        self.requests = Counter(
            "aegis_executor_http_requests",
            "HTTP requests by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
