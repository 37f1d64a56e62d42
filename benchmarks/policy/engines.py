"""One adapter per engine: the workload expressed equivalently in each engine's own language.

An adapter is a class with

* ``name`` (the table's row label) and ``library`` (the distribution whose version is
  reported, or ``None``);
* ``load(workload)`` — build the engine from the workload's rules (this is what "load time"
  measures: parse, compile, index);
* ``prepare(request)`` — turn a workload request (an Aegis request object) into the engine's
  native input, *outside* the timed region (so peers are not charged for our glue);
* ``decide(prepared) -> bool`` — the timed call: one decision.

To add an engine, write such a class and list it in :data:`ADAPTERS` (or pass it to
``benchmarks.policy.runner.run``). The Aegis compiled evaluator plugs in the same way as
:class:`AegisAdapter`: it only needs ``load`` to build the engine and ``decide`` to call it.

Peers are imported inside their adapter, so that the benchmark still runs (and says which
engine it skipped) when one of them is not installed.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any, ClassVar

from benchmarks.policy.workload import ANY_NAMESPACE, Workload, hour_of


class Adapter:
    """Base class of the adapters (see the module docstring)."""

    name: str = "?"
    library: ClassVar[str | None] = None
    slow: ClassVar[bool] = False
    """True for engines that evaluate every rule (no index): timed on fewer samples."""

    def before_load(self, workload: Workload) -> None:
        """Called before ``load``, outside the timed region (default: nothing)."""

    def load(self, workload: Workload) -> None:
        raise NotImplementedError

    def prepare(self, request: dict[str, Any]) -> Any:
        return request

    def decide(self, prepared: Any) -> bool:
        raise NotImplementedError

    warm_every: ClassVar[float | None] = None
    """If set, ``warm`` is called again (untimed) whenever this many seconds have passed
    since the last call while the engine is being timed (a cache whose entries expire)."""

    def warm(self, prepared: list[Any]) -> None:
        """Called just before timing (e.g. to fill a cache); the default does nothing."""

    def timing_note(self) -> str:
        """A remark on the timed decisions for the table's note column (default: none)."""
        return ""

    def close(self) -> None:
        """Drop the loaded engine (so that its memory can be reclaimed)."""


# ---------------------------------------------------------------- Aegis


def aegis_source(workload: Workload) -> str:
    """The workload in the Aegis policy language (spec §3)."""
    out = []
    for rule in workload.rules:
        lines = [f'{rule.effect} "{rule.name}" {{', f'    action == "{rule.action}"']
        if rule.role is not None:
            lines.append(f'    "{rule.role}" in principal.roles')
        if rule.namespace != ANY_NAMESPACE:
            lines.append(f'    resource.namespace == "{rule.namespace}"')
        lines.append(f"    time.hour in {rule.lo}..{rule.hi}")
        if rule.effect == "deny":
            lines.append('    reason "maintenance freeze"')
        lines.append("}")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _forget_loaded_sets() -> None:
    """Drop the sets and parse trees this process remembers by content (``aegis.lang``), so
    that the next load is a load from the texts, as in a new process."""
    from aegis.lang import loader

    loader._loaded.clear()
    loader._parse_cached.cache_clear()
    gc.collect()


class AegisAdapter(Adapter):
    """``aegis.PolicyEngine`` (whatever evaluator it runs: reference or compiled)."""

    name = "Aegis"
    library = "aegis"

    def __init__(
        self, factory: Callable[[dict[str, str]], Any] | None = None, name: str | None = None
    ) -> None:
        self._factory = factory
        if name is not None:
            self.name = name
        self.engine: Any = None

    def before_load(self, workload: Workload) -> None:
        _forget_loaded_sets()

    def load(self, workload: Workload) -> None:
        texts = {"workload.aegis": aegis_source(workload)}
        if self._factory is not None:
            self.engine = self._factory(texts)
        else:
            from aegis.engine import PolicyEngine

            # from the texts alone: parse, hash, compile, index (no compiled snapshot)
            self.engine = PolicyEngine.from_texts(texts, compiled_cache=False)
        self._evaluate = self.engine.evaluate

    def decide(self, prepared: Any) -> bool:
        return bool(self._evaluate(prepared).allowed)

    def close(self) -> None:
        self.engine = None
        self._evaluate = None


class AegisSnapshotAdapter(AegisAdapter):
    """``aegis.PolicyEngine.from_texts`` restoring the set's compiled snapshot.

    ``before_load`` (untimed) loads the set once from its texts, which leaves the snapshot in
    a private directory, as the first start of a server or the first ``aegis`` command on a
    set would; the timed load is the next start's. Rules are parsed and compiled when first a
    candidate, so part of the work moves to the first decisions: the JSON results keep the
    cross-check pass's time (``first_pass_s``) beside the load.
    """

    name = "Aegis (compiled snapshot)"

    def __init__(self) -> None:
        super().__init__()
        import atexit
        import shutil
        import tempfile

        self._directory = tempfile.mkdtemp(prefix="aegis-bench-compiled-")
        atexit.register(shutil.rmtree, self._directory, True)

    def before_load(self, workload: Workload) -> None:
        from aegis.engine import PolicyEngine

        texts = {"workload.aegis": aegis_source(workload)}
        PolicyEngine.from_texts(texts, compiled_cache=self._directory)
        # the timed load must not find this load's set or parse trees in the process (a set
        # too small for a snapshot is then parsed again, as in a new process)
        _forget_loaded_sets()

    def load(self, workload: Workload) -> None:
        from aegis.engine import PolicyEngine

        texts = {"workload.aegis": aegis_source(workload)}
        self.engine = PolicyEngine.from_texts(texts, compiled_cache=self._directory)
        self._evaluate = self.engine.evaluate

    def timing_note(self) -> str:
        return "restored from its snapshot; rules compiled on first use"


class AegisCacheHitAdapter(AegisAdapter):
    """The Aegis cache-hit path: every timed decision is answered from a warm memory cache.

    When ``PolicyEngine`` accepts ``cache=``, that real path is timed. Until then
    the adapter times the steps an engine performs on a hit, with the engine's own parts, and
    says so in its name: the compiled evaluator's request check and time view, the key from
    :class:`aegis.engine.cache.KeyBuilder` over the compiled set's read paths,
    ``MemoryDecisionCache.get``, ``decode_decision`` and ``Decision.from_dict``. The
    cross-check pass fills the cache (a miss evaluates and stores, as the engine will).
    """

    name = "Aegis cache hit"

    def load(self, workload: Workload) -> None:
        import inspect

        from aegis.engine import PolicyEngine
        from aegis.engine.cache import KeyBuilder, MemoryDecisionCache

        self.cache = MemoryDecisionCache(max_entries=1_000_000, ttl=60)
        texts = {"workload.aegis": aegis_source(workload)}
        if "cache" in inspect.signature(PolicyEngine).parameters:
            from aegis.lang import load_texts

            self.engine = PolicyEngine(load_texts(texts), cache=self.cache, compiled_cache=False)
            self._evaluate = self.engine.evaluate
            self.emulated = False
            return
        self.engine = PolicyEngine.from_texts(texts)
        self._evaluate = self._emulated
        self.emulated = True
        self.name = "Aegis cache hit (emulated)"
        compiled = getattr(self.engine, "_compiled", None)
        reads = getattr(compiled, "reads", None)
        if reads is None:  # an engine without read paths: this workload's, by hand
            reads = {("action",), ("principal", "roles"), ("resource", "namespace"),
                     ("time", "UTC", "hour")}  # fmt: skip
        self._keys = KeyBuilder(reads)

    def _hits(self) -> tuple[int, int]:
        """(hits, lookups) so far."""
        if self.emulated:
            return self._emulated_hits, self._emulated_lookups
        stats = self.engine.stats
        return stats.cache_hits, stats.cache_hits + stats.cache_misses + stats.cache_errors

    warm_every = 30.0  # CACHE-1 caps the TTL at 60 s; the timing of all sizes takes longer

    def warm(self, prepared: list[Any]) -> None:
        # fill the cache (again) right before timing; lookups from here on count in the note
        for request in prepared:
            self._evaluate(request)
        if self._baseline is None:
            self._baseline = self._hits()

    def timing_note(self) -> str:
        hits, lookups = self._hits()
        hits -= (self._baseline or (0, 0))[0]
        lookups -= (self._baseline or (0, 0))[1]
        return f"{hits / lookups:.0%} of lookups hit while timed" if lookups else ""

    _emulated_hits = 0
    _emulated_lookups = 0
    _baseline: tuple[int, int] | None = None

    def _emulated(self, request: dict[str, Any]) -> Any:
        from aegis.engine import Decision, _compiler
        from aegis.engine.cache import decode_decision, encode_decision

        prepare = getattr(_compiler, "prepare_request", None)
        if prepare is not None:
            principal, action, resource, context, view = prepare(request, None)
        else:
            old_prepare: Any = getattr(_compiler, "_prepare")  # noqa: B009
            principal, action, resource, context, view = old_prepare(request, None).ctx
        parts = {"principal": principal, "action": action, "resource": resource,
                 "context": context}  # fmt: skip
        key = self._keys.key(self.engine.version, parts, time_view=view)
        raw = self.cache.get(key)
        self._emulated_lookups += 1
        if raw is None:  # the warm-up pass: evaluate and store, as the engine will
            decision = self.engine.evaluate(request)
            if not decision.errors:
                self.cache.put(key, encode_decision(decision.to_dict()))
            return decision
        self._emulated_hits += 1
        return Decision.from_dict(decode_decision(raw))


# ---------------------------------------------------------------- hand-written dict index


class DictIndexAdapter(Adapter):
    """A hand-written, workload-specific dictionary index: the floor for Python."""

    name = "dict index (floor)"

    def load(self, workload: Workload) -> None:
        allow: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
        deny: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for rule in workload.rules:
            if rule.effect == "deny":
                deny.setdefault((rule.action, rule.namespace), []).append((rule.lo, rule.hi))
            else:
                assert rule.role is not None
                key = (rule.action, rule.namespace, rule.role)
                allow.setdefault(key, []).append((rule.lo, rule.hi))
        self.allow = {k: tuple(v) for k, v in allow.items()}
        self.deny = {k: tuple(v) for k, v in deny.items()}

    def decide(self, prepared: Any) -> bool:
        action = prepared["action"]
        namespace = prepared["resource"]["namespace"]
        hour = prepared["context"]["time"] // 3600 % 24
        for lo, hi in self.deny.get((action, namespace), ()):
            if lo <= hour <= hi:
                return False
        get = self.allow.get
        for role in prepared["principal"]["roles"]:
            for lo, hi in get((action, namespace, role), ()):
                if lo <= hour <= hi:
                    return True
            for lo, hi in get((action, ANY_NAMESPACE, role), ()):
                if lo <= hour <= hi:
                    return True
        return False


# ---------------------------------------------------------------- Cedar


def cedar_source(workload: Workload) -> str:
    """The workload in Cedar: one permit/forbid per rule, roles as the principal's parents."""
    out = []
    for rule in workload.rules:
        conds = [f"context.hour >= {rule.lo}", f"context.hour <= {rule.hi}"]
        if rule.namespace != ANY_NAMESPACE:
            conds.insert(0, f'resource.namespace == "{rule.namespace}"')
        principal = "principal" if rule.role is None else f'principal in Role::"{rule.role}"'
        effect = "permit" if rule.effect == "allow" else "forbid"
        out.append(
            f'@id("{rule.name}")\n{effect}({principal}, action == Action::"{rule.action}", '
            f"resource)\nwhen {{ {' && '.join(conds)} }};"
        )
    return "\n".join(out) + "\n"


class CedarAdapter(Adapter):
    """Cedar through ``cedarpy``, used as its documentation recommends for speed.

    The policy set is parsed once (a ``PolicySet`` handle). The users and their roles are a
    stable entity graph parsed once at load (an ``Entities`` handle: users with their roles
    as parents), and each request adds its resource as a delta (``with_added_json_str``),
    prepared outside the timed region; the timed call is ``is_authorized``.
    """

    name = "Cedar (cedarpy)"
    library = "cedarpy"
    slow = True

    def load(self, workload: Workload) -> None:
        import cedarpy

        self.policies: Any = cedarpy.PolicySet.from_str(cedar_source(workload))
        roles = sorted({role for roles in workload.users.values() for role in roles})
        graph = [
            {
                "uid": {"type": "User", "id": user},
                "attrs": {},
                "parents": [{"type": "Role", "id": role} for role in user_roles],
            }
            for user, user_roles in sorted(workload.users.items())
        ] + [{"uid": {"type": "Role", "id": role}, "attrs": {}, "parents": []} for role in roles]
        self.entities: Any = cedarpy.Entities.from_json_str(json.dumps(graph))
        self._is_authorized = cedarpy.is_authorized

    def prepare(self, request: dict[str, Any]) -> Any:
        resource = request["resource"]
        delta = [
            {
                "uid": {"type": "Resource", "id": resource["name"]},
                "attrs": {"namespace": resource["namespace"], "kind": resource["kind"]},
                "parents": [],
            }
        ]
        cedar_request = {
            "principal": {"type": "User", "id": request["principal"]["id"]},
            "action": {"type": "Action", "id": request["action"]},
            "resource": {"type": "Resource", "id": resource["name"]},
            "context": {"hour": hour_of(request)},
        }
        return cedar_request, self.entities.with_added_json_str(json.dumps(delta))

    def decide(self, prepared: Any) -> bool:
        request, entities = prepared
        return bool(self._is_authorized(request, self.policies, entities).allowed)

    def close(self) -> None:
        self.policies = None
        self.entities = None


# ---------------------------------------------------------------- Casbin

CASBIN_MODEL = """
[request_definition]
r = sub, act, ns, hour

[policy_definition]
p = sub, act, ns, lo, hi, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.act == p.act && (p.ns == "*" || r.ns == p.ns) && hourIn(r.hour, p.lo, p.hi) \
&& (p.sub == "*" || g(r.sub, p.sub))
"""


def _hour_in(hour: int, lo: str, hi: str) -> bool:
    return int(lo) <= hour <= int(hi)


def casbin_policies(workload: Workload) -> list[list[str]]:
    """The workload as Casbin ``p`` lines (deny rules apply to every subject, ``*``)."""
    return [
        [rule.role or "*", rule.action, rule.namespace, str(rule.lo), str(rule.hi), rule.effect]
        for rule in workload.rules
    ]


class CasbinAdapter(Adapter):
    """Casbin (``casbin``): RBAC with an ABAC matcher and deny override."""

    name = "Casbin"
    library = "casbin"
    slow = True

    def load(self, workload: Workload) -> None:
        import casbin

        model = casbin.model.Model()
        model.load_model_from_text(CASBIN_MODEL)
        enforcer = casbin.Enforcer(model)
        enforcer.add_function("hourIn", _hour_in)
        # add_policies refuses duplicates; identical generated rules differ only by name.
        enforcer.add_policies(list(map(list, {tuple(p) for p in casbin_policies(workload)})))
        enforcer.add_grouping_policies(
            [[user, role] for user, roles in sorted(workload.users.items()) for role in roles]
        )
        self.enforcer = enforcer
        self._enforce = enforcer.enforce

    def prepare(self, request: dict[str, Any]) -> Any:
        return (
            request["principal"]["id"],
            request["action"],
            request["resource"]["namespace"],
            hour_of(request),
        )

    def decide(self, prepared: Any) -> bool:
        return bool(self._enforce(*prepared))

    def close(self) -> None:
        self.enforcer = None


# ---------------------------------------------------------------- OPA Rego (regopy)

REGO_MODULE = """
package authz

import rego.v1

default allow := false

deny if {
    some w in data.idx.deny[input.action][input.namespace]
    w[0] <= input.hour
    input.hour <= w[1]
}

allowed if {
    some role in input.roles
    some ns in [input.namespace, "*"]
    some w in data.idx.allow[input.action][ns][role]
    w[0] <= input.hour
    input.hour <= w[1]
}

allow if {
    not deny
    allowed
}
"""


def rego_data(workload: Workload) -> dict[str, Any]:
    """The hand-indexed data document: ``allow[action][namespace][role]`` and
    ``deny[action][namespace]`` map to lists of ``[lo, hi]`` hour windows."""
    allow: dict[str, Any] = {}
    deny: dict[str, Any] = {}
    for rule in workload.rules:
        if rule.effect == "deny":
            deny.setdefault(rule.action, {}).setdefault(rule.namespace, []).append(
                [rule.lo, rule.hi]
            )
        else:
            assert rule.role is not None
            allow.setdefault(rule.action, {}).setdefault(rule.namespace, {}).setdefault(
                rule.role, []
            ).append([rule.lo, rule.hi])
    return {"idx": {"allow": allow, "deny": deny}}


class RegoAdapter(Adapter):
    """OPA Rego through ``regopy`` (rego-cpp) over a hand-indexed data document."""

    name = "OPA Rego (regopy)"
    library = "regopy"

    def load(self, workload: Workload) -> None:
        import regopy

        interpreter = regopy.Interpreter()
        interpreter.add_module("authz", REGO_MODULE)
        interpreter.add_data_json(json.dumps(rego_data(workload)))
        self.bundle = interpreter.build("x = data.authz.allow", ["authz/allow"])
        self.interpreter = interpreter

    def prepare(self, request: dict[str, Any]) -> Any:
        return {
            "action": request["action"],
            "namespace": request["resource"]["namespace"],
            "roles": request["principal"]["roles"],
            "hour": hour_of(request),
        }

    def decide(self, prepared: Any) -> bool:
        self.interpreter.set_input(prepared)
        output = self.interpreter.query_bundle(self.bundle)
        return bool(json.loads(output.binding("x").json()))

    def close(self) -> None:
        self.interpreter = None
        self.bundle = None


# ---------------------------------------------------------------- Oso / Polar

POLAR_RULES = """
# no request-level allow/3 here: an explicit never-true one keeps Oso from warning about it
allow(_actor, _action, _resource) if false;

decide(req) if not denied(req) and allowed(req);

denied(req) if
    deny_rule(req.action, req.namespace, lo, hi) and lo <= req.hour and req.hour <= hi;

allowed(req) if
    role in req.roles and
    allow_rule(req.action, req.namespace, role, lo, hi) and lo <= req.hour and req.hour <= hi;

allowed(req) if
    role in req.roles and
    allow_rule(req.action, "*", role, lo, hi) and lo <= req.hour and req.hour <= hi;
"""


def polar_source(workload: Workload) -> str:
    """The workload in Polar: the rules as facts (indexed by Polar on their constant
    arguments) plus the four general rules of :data:`POLAR_RULES`."""
    facts = []
    for rule in workload.rules:
        if rule.effect == "deny":
            facts.append(f'deny_rule("{rule.action}", "{rule.namespace}", {rule.lo}, {rule.hi});')
        else:
            facts.append(
                f'allow_rule("{rule.action}", "{rule.namespace}", "{rule.role}", '
                f"{rule.lo}, {rule.hi});"
            )
    if not any(r.effect == "deny" for r in workload.rules):
        facts.append('deny_rule("", "", 1, 0);')  # keep the predicate defined
    return POLAR_RULES + "\n".join(facts) + "\n"


class OsoAdapter(Adapter):
    """Oso (``oso``, the Polar language)."""

    name = "Oso (Polar)"
    library = "oso"

    def load(self, workload: Workload) -> None:
        import oso

        engine = oso.Oso()
        engine.load_str(polar_source(workload))
        self.oso: Any = engine

    def prepare(self, request: dict[str, Any]) -> Any:
        return {
            "action": request["action"],
            "namespace": request["resource"]["namespace"],
            "roles": list(request["principal"]["roles"]),
            "hour": hour_of(request),
        }

    def decide(self, prepared: Any) -> bool:
        return bool(self.oso.query_rule_once("decide", prepared))

    def close(self) -> None:
        self.oso = None


ADAPTERS: tuple[type[Adapter], ...] = (
    DictIndexAdapter,
    AegisAdapter,
    AegisSnapshotAdapter,
    AegisCacheHitAdapter,
    CedarAdapter,
    CasbinAdapter,
    RegoAdapter,
    OsoAdapter,
)
"""The engines of a default run, in table order."""
