"""The policy-engine benchmark (issue 3, item 6).

* :mod:`benchmarks.policy.workload` — the generated infrastructure-actions workload and its
  oracle;
* :mod:`benchmarks.policy.engines` — one adapter per engine (``load`` / ``prepare`` /
  ``decide``), the workload written in each engine's language;
* :mod:`benchmarks.policy.runner` — load, cross-check the whole stream, then time;
* :mod:`benchmarks.policy.report` — machine description, markdown table, goals, plot.

Run it with ``python -m benchmarks policy --help``.
"""
