"""A first look at Aegis: decide every example request against the example policies.

Run it with ``make run`` (or ``python examples/show_decisions.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import aegis

HERE = Path(__file__).resolve().parent


def main() -> int:
    engine = aegis.PolicyEngine.from_paths([HERE / "policies"])
    print(f"Loaded {len(engine.policy_set.rules)} rules, version {engine.version[:12]}\n")
    for path in sorted((HERE / "requests").glob("*.json")):
        request = json.loads(path.read_text(encoding="utf-8"))
        decision = engine.evaluate(request)
        who = request["principal"].get("id", "?")
        target = f"{request['resource'].get('namespace')}/{request['resource'].get('name')}"
        print(f"{path.stem}")
        print(f"  {who} -> {request['action']} on {target} at {request['context']['time']}")
        print(f"  {decision.decision}: {decision.reason}")
        for error in decision.errors:
            print(f"  (rule {error.rule!r} could not be evaluated: {error.message})")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
