"""Aegis benchmarks (``make bench`` runs ``python -m benchmarks``).

Suites: ``policy`` (the engine against Cedar, Casbin, OPA Rego, Oso and a hand-written index;
:mod:`benchmarks.policy`), ``audit`` (``benchmarks.audit_bench``) and ``detection``
(:mod:`benchmarks.detection`). Results go to ``benchmarks/results/``. Peer engines are a
benchmark-only extra (``pip install 'aegis[bench]'``); ``aegis`` itself never imports them.
"""
