"""The generated infrastructure-actions workload, shared by every engine adapter.

About 20 roles, 10 actions, 50 namespaces and hour windows. A set of N rules has
``N // 5`` deny rules (action + namespace + hour window, e.g. maintenance freezes) that
override ``N - N // 5`` allow rules (role + action + namespace + hour window; one allow rule
in ten applies to every namespace). The request stream mixes requests aimed at an allow
rule (often inside its window) with random ones, so that both decisions and every path of the
engines (deny hit, allow hit, nothing matches) are common.

Everything is generated from a seed, so every engine sees exactly the same rules and
requests, and two runs see the same workload.

Semantics that every adapter must express (the oracle is :func:`expected_decision`)::

    allowed(req) = not any(deny d:  d.action == req.action and d.namespace == ns(req)
                                    and d.lo <= hour(req) <= d.hi)
                   and any(allow a: a.action == req.action and a.role in roles(req)
                                    and (a.namespace == "*" or a.namespace == ns(req))
                                    and a.lo <= hour(req) <= a.hi)

``hour(req)`` is the UTC hour of ``context.time`` (integer epoch seconds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ROLES = (
    "sre", "oncall", "dev", "qa", "dba", "netops", "secops", "platform", "release", "support",
    "data", "ml", "finops", "auditor", "intern", "contractor", "lead", "manager", "observer",
    "admin",
)  # fmt: skip
ACTIONS = (
    "restart_pod", "scale_deployment", "rollback_deployment", "read_logs", "exec_pod",
    "delete_pod", "cordon_node", "drain_node", "patch_config", "update_image",
)  # fmt: skip
KIND_OF_ACTION = {
    "restart_pod": "pod", "scale_deployment": "deployment", "rollback_deployment": "deployment",
    "read_logs": "pod", "exec_pod": "pod", "delete_pod": "pod", "cordon_node": "node",
    "drain_node": "node", "patch_config": "configmap", "update_image": "deployment",
}  # fmt: skip
NAMESPACES = tuple(f"team-{i:02d}" for i in range(50))
ANY_NAMESPACE = "*"
USERS = 200
DAY = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp())


@dataclass(frozen=True, slots=True)
class Rule:
    """One workload rule, engine-neutral.

    Attributes:
        name: unique rule name (``allow-00012``, ``deny-00003``).
        effect: ``"allow"`` or ``"deny"``.
        action: the action it is about.
        namespace: a namespace, or ``"*"`` (allow rules only) for every namespace.
        role: the role an allow rule requires (``None`` for deny rules: they apply to all).
        lo: first hour of the window (UTC, inclusive).
        hi: last hour of the window (UTC, inclusive).
    """

    name: str
    effect: str
    action: str
    namespace: str
    role: str | None
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Workload:
    """A rule set of one size plus the request stream to decide.

    Attributes:
        n_rules: number of rules.
        rules: the rules, allow rules first.
        users: user id -> roles (the principals of the requests; engines with a role
            graph load it from here).
        requests: the request stream, Aegis request objects (spec §4) with
            ``context.time`` as epoch seconds.
    """

    n_rules: int
    rules: tuple[Rule, ...]
    users: dict[str, tuple[str, ...]]
    requests: tuple[dict[str, Any], ...]

    @property
    def allow_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.effect == "allow")

    @property
    def deny_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.effect == "deny")


def hour_of(request: dict[str, Any]) -> int:
    """The UTC hour of a workload request."""
    return int(request["context"]["time"]) // 3600 % 24


def _window(rng: random.Random) -> tuple[int, int]:
    lo = rng.randrange(0, 21)
    return lo, rng.randrange(lo + 2, 24)


def _users(rng: random.Random) -> dict[str, tuple[str, ...]]:
    users = {}
    for i in range(USERS):
        users[f"u{i:03d}"] = tuple(sorted(rng.sample(ROLES, rng.randint(1, 3))))
    return users


def generate(n_rules: int, n_requests: int, seed: int = 7) -> Workload:
    """Generate the workload with ``n_rules`` rules and ``n_requests`` requests.

    The rules of a smaller set are not a prefix of a larger one; each size is its own
    random set drawn from the same distribution.
    """
    rng = random.Random(f"{seed}:{n_rules}")
    users = _users(random.Random(seed))
    n_deny = max(1, n_rules // 5)
    rules: list[Rule] = []
    for i in range(n_rules - n_deny):
        lo, hi = _window(rng)
        namespace = ANY_NAMESPACE if rng.random() < 0.1 else rng.choice(NAMESPACES)
        rules.append(
            Rule(f"allow-{i:05d}", "allow", rng.choice(ACTIONS), namespace,
                 rng.choice(ROLES), lo, hi)
        )  # fmt: skip
    for i in range(n_deny):
        lo = rng.randrange(0, 24)
        hi = min(23, lo + rng.randrange(0, 3))  # freezes are short: 1-3 hours
        rules.append(
            Rule(f"deny-{i:05d}", "deny", rng.choice(ACTIONS), rng.choice(NAMESPACES), None, lo, hi)
        )
    by_role: dict[str, list[str]] = {role: [] for role in ROLES}
    for user, roles in users.items():
        for role in roles:
            by_role[role].append(user)
    allows = [r for r in rules if r.effect == "allow"]
    requests = []
    for i in range(n_requests):
        if allows and rng.random() < 0.6:
            target = rng.choice(allows)
            assert target.role is not None
            candidates = by_role[target.role] or list(users)
            user = rng.choice(candidates)
            action = target.action
            namespace = (
                rng.choice(NAMESPACES) if target.namespace == ANY_NAMESPACE else target.namespace
            )
            hour = rng.randint(target.lo, target.hi) if rng.random() < 0.8 else rng.randrange(24)
        else:
            user = rng.choice(list(users))
            action = rng.choice(ACTIONS)
            namespace = rng.choice(NAMESPACES)
            hour = rng.randrange(24)
        epoch = DAY + rng.randrange(0, 7) * 86400 + hour * 3600 + rng.randrange(3600)
        requests.append(
            {
                "principal": {"id": user, "roles": list(users[user])},
                "action": action,
                "resource": {
                    "kind": KIND_OF_ACTION[action],
                    "namespace": namespace,
                    "name": f"{KIND_OF_ACTION[action]}-{i:05d}",
                },
                "context": {"time": epoch, "source": "benchmark"},
            }
        )
    return Workload(n_rules, tuple(rules), users, tuple(requests))


def expected_decision(workload: Workload, request: dict[str, Any]) -> bool:
    """The workload's semantics written out literally (the oracle of the cross-check)."""
    action = request["action"]
    namespace = request["resource"]["namespace"]
    roles = set(request["principal"]["roles"])
    hour = hour_of(request)
    for rule in workload.deny_rules:
        if rule.action == action and rule.namespace == namespace and rule.lo <= hour <= rule.hi:
            return False
    return any(
        rule.action == action
        and rule.role in roles
        and rule.namespace in (namespace, ANY_NAMESPACE)
        and rule.lo <= hour <= rule.hi
        for rule in workload.allow_rules
    )
