"""PolicyEngine: construction, evaluation through the public API, schemas, threads."""

from __future__ import annotations

import doctest
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aegis.engine
import aegis.engine.evaluator
import aegis.engine.request
from aegis.engine import Decision, InvalidRequestError, PolicyEngine
from aegis.lang import PolicyLoadError, SchemaError, load_texts
from aegis.lang.schema import parse_schema

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # a Saturday, 10:00 in Berlin

SPEC_EXAMPLE = """\
timezone "Europe/Berlin"

@owner("platform")
allow "sre-may-restart" {
    action in ["restart_pod", "rollback_deployment"]
    "sre" in principal.roles
    resource.namespace in ["staging", "prod"]
    time.hour in 8..19
}

deny "prod-weekend-freeze" {
    action == "scale_deployment"
    resource.namespace like "prod*"
    time.weekday in ["sat", "sun"]
    reason "production is frozen at weekends"
}
"""


def _request(action: str = "restart_pod", **resource: Any) -> dict[str, Any]:
    return {
        "principal": {"id": "alice", "roles": ["sre"]},
        "action": action,
        "resource": {"kind": "pod", "namespace": "prod", **resource},
    }


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_texts({"platform.aegis": SPEC_EXAMPLE})


def test_the_spec_example_allows_a_restart(engine: PolicyEngine) -> None:
    decision = engine.evaluate(_request(), now=NOW)
    assert decision.to_dict() == {
        "decision": "ALLOW",
        "allowed": True,
        "reason": 'allowed by rule "sre-may-restart"',
        "allow": ["sre-may-restart"],
        "deny": [],
        "errors": [],
        "version": engine.version,
    }


def test_the_spec_example_denies_a_weekend_scale(engine: PolicyEngine) -> None:
    decision = engine.evaluate(_request("scale_deployment"), now=NOW)
    assert decision.decision == "DENY"
    assert decision.reason == "production is frozen at weekends"
    assert decision.deny == ("prod-weekend-freeze",)


def test_context_time_overrides_now(engine: PolicyEngine) -> None:
    request = {**_request("scale_deployment"), "context": {"time": "2026-11-26T10:15:00Z"}}
    assert engine.evaluate(request, now=NOW).reason == "no allow rule matched"


def test_now_stands_in_for_the_clock(engine: PolicyEngine) -> None:
    late = datetime(2026, 11, 26, 19, 30, tzinfo=UTC)  # 20:30 in Berlin
    assert engine.evaluate(_request(), now=late).decision == "DENY"
    assert engine.evaluate(_request(), now=NOW).decision == "ALLOW"


def test_without_now_the_system_clock_decides(engine: PolicyEngine) -> None:
    decision = engine.evaluate({**_request(), "context": {}})
    assert decision.decision in {"ALLOW", "DENY"}
    assert decision.errors == ()


def test_invalid_requests_raise(engine: PolicyEngine) -> None:
    with pytest.raises(InvalidRequestError):
        engine.evaluate({"principal": {}, "action": "read"}, now=NOW)
    with pytest.raises(InvalidRequestError):
        engine.evaluate({**_request(), "context": {"time": "2026-11-26"}}, now=NOW)
    with pytest.raises(InvalidRequestError, match="timezone-aware"):
        engine.evaluate(_request(), now=datetime(2026, 1, 1))


def test_version_is_the_policy_sets_and_is_on_every_decision(engine: PolicyEngine) -> None:
    assert engine.version == engine.policy_set.version
    assert len(engine.version) == 64
    assert engine.evaluate(_request(), now=NOW).version == engine.version
    assert "PolicyEngine(rules=2" in repr(engine)


def test_the_three_constructors_agree(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "platform.aegis").write_text(SPEC_EXAMPLE, encoding="utf-8")
    (tmp_path / "extra.aegis").write_text('allow "reader" { action == "read" }', encoding="utf-8")
    texts = {"platform.aegis": SPEC_EXAMPLE, "extra.aegis": 'allow "reader" { action == "read" }'}
    engines = [
        PolicyEngine.from_paths([tmp_path]),
        PolicyEngine.from_texts(texts),
        PolicyEngine.from_policy_set(load_texts(texts)),
        PolicyEngine(load_texts(texts)),
    ]
    assert len({e.version for e in engines}) == 1
    for request in (_request(), _request("read"), _request("scale_deployment")):
        assert len({str(e.evaluate(request, now=NOW).to_dict()) for e in engines}) == 1


def test_a_set_that_does_not_load_raises_with_every_diagnostic() -> None:
    with pytest.raises(PolicyLoadError) as info:
        PolicyEngine.from_texts(
            {"a.aegis": 'allow "x" { action = "read" }', "b.aegis": 'deny "y" { resource. }'}
        )
    assert {d.span.file for d in info.value.diagnostics} == {"a.aegis", "b.aegis"}


def test_an_empty_set_denies_everything() -> None:
    engine = PolicyEngine.from_texts({})
    decision = engine.evaluate(_request(), now=NOW)
    assert decision.decision == "DENY"
    assert decision.reason == "no allow rule matched"


def test_concurrent_evaluation_gives_the_sequential_answers(engine: PolicyEngine) -> None:
    requests = [
        {**_request(action, namespace=ns), "context": {"time": 1795600000 + 3600 * hour}}
        for action in ("restart_pod", "scale_deployment", "read")
        for ns in ("prod", "staging", "dev")
        for hour in range(0, 48, 5)
    ]
    expected = [engine.evaluate(r).to_dict() for r in requests]
    work = requests * 8
    random.Random(7).shuffle(work)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda r: (r, engine.evaluate(r).to_dict()), work))
    for request, decision in got:
        assert decision == expected[requests.index(request)]


def test_evaluate_does_not_modify_or_keep_the_request(engine: PolicyEngine) -> None:
    request = _request(labels={"a": ["b"]})
    snapshot = repr(request)
    engine.evaluate(request, now=NOW)
    assert repr(request) == snapshot


# ----------------------------------------------------------------------------- schemas

SCHEMA = """\
principal:
  id: string
  roles: [string]
action: [restart_pod, scale_deployment, rollback_deployment, read]
resource:
  kind: string
  namespace: string
  replicas?: int
"""


def test_schema_path_validates_the_set(tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA, encoding="utf-8")
    engine = PolicyEngine.from_texts({"platform.aegis": SPEC_EXAMPLE}, schema=schema)
    assert engine.schema is not None
    assert engine.evaluate(_request(), now=NOW).allowed
    with pytest.raises(PolicyLoadError) as info:
        PolicyEngine.from_texts(
            {"bad.aegis": 'allow "x" {\n  resource.replicas > 3\n  resource.colour == "red"\n}'},
            schema=str(schema),
        )
    assert {d.span.line for d in info.value.diagnostics} == {2, 3}


def test_a_request_that_does_not_conform_to_the_schema_is_invalid() -> None:
    engine = PolicyEngine.from_texts({"platform.aegis": SPEC_EXAMPLE}, schema=parse_schema(SCHEMA))
    with pytest.raises(InvalidRequestError, match="does not conform to the schema"):
        engine.evaluate(_request(replicas="three"), now=NOW)
    with pytest.raises(InvalidRequestError, match="does not conform to the schema"):
        engine.evaluate(_request("delete"), now=NOW)


def test_a_set_that_validates_never_errors_on_conforming_requests() -> None:
    engine = PolicyEngine.from_texts(
        {"p.aegis": 'deny "big" { has resource.replicas and resource.replicas > 10 }'},
        schema=parse_schema(SCHEMA),
    )
    for replicas in ({}, {"replicas": 3}, {"replicas": 30}):
        decision = engine.evaluate(_request(**replicas), now=NOW)
        assert decision.errors == ()


def test_a_malformed_schema_raises_schema_error(tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text("principal: [unclosed\n", encoding="utf-8")
    with pytest.raises(SchemaError):
        PolicyEngine.from_texts({"p.aegis": SPEC_EXAMPLE}, schema=schema)
    with pytest.raises(SchemaError):
        PolicyEngine.from_texts({"p.aegis": SPEC_EXAMPLE}, schema=tmp_path / "absent.yaml")


# ----------------------------------------------------------------------------- properties

_RULE_POOL = [
    'allow "read" { action == "read" }',
    'allow "sre" { "sre" in principal.roles }',
    'allow "broken-allow" { resource.nope > 1 }',
    'allow "everything" {}',
    'deny "prod" { resource.namespace like "prod*" and action == "scale_deployment" }',
    'deny "broken-deny" { resource.replicas > 10 }',
    'deny "never" { false }',
    'deny "weekend" { time.weekday in ["sat", "sun"] }',
    'allow "flag" { resource.flag }',
]

_requests = st.fixed_dictionaries(
    {
        "principal": st.fixed_dictionaries({"roles": st.lists(st.sampled_from(["sre", "dev"]))}),
        "action": st.sampled_from(["read", "scale_deployment", "restart_pod"]),
        "resource": st.fixed_dictionaries(
            {},
            optional={
                "namespace": st.sampled_from(["prod", "production", "dev"]),
                "replicas": st.integers(0, 20) | st.just("many"),
                "flag": st.booleans() | st.just("yes"),
            },
        ),
        "context": st.fixed_dictionaries(
            {"time": st.integers(1795000000, 1796000000)},
        ),
    }
)


def _engine(rules: list[str], files: int) -> PolicyEngine:
    texts: dict[str, str] = {}
    for index, rule in enumerate(rules):
        name = f"f{index % files}.aegis"
        texts[name] = texts.get(name, "") + rule + "\n"
    return PolicyEngine.from_texts(texts)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(_RULE_POOL), unique=True),
    st.integers(1, 3),
    st.randoms(use_true_random=False),
    _requests,
)
def test_decision_does_not_depend_on_rule_or_file_order(
    rules: list[str], files: int, rnd: random.Random, request: dict[str, Any]
) -> None:
    shuffled = list(rules)
    rnd.shuffle(shuffled)
    first = _engine(rules, files).evaluate(request).to_dict()
    second = _engine(shuffled, rnd.randint(1, 3)).evaluate(request).to_dict()
    assert first == second


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_RULE_POOL), unique=True), _requests)
def test_deny_wins_monotonicity(rules: list[str], request: dict[str, Any]) -> None:
    base = _engine(rules, 1).evaluate(request)
    extra_allow = 'allow "zz-extra" { resource.flag == true or resource.nope }'
    extra_deny = 'deny "zz-extra" { resource.flag == true or resource.nope }'
    if base.allowed:
        assert _engine([*rules, extra_allow], 1).evaluate(request).allowed
    else:
        assert not _engine([*rules, extra_deny], 1).evaluate(request).allowed


@settings(max_examples=30, deadline=None)
@given(_requests)
def test_removing_every_rule_gives_deny(request: dict[str, Any]) -> None:
    assert PolicyEngine.from_texts({}).evaluate(request).decision == "DENY"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(_RULE_POOL), unique=True), _requests)
def test_decisions_round_trip_through_json(rules: list[str], request: dict[str, Any]) -> None:
    decision = _engine(rules, 2).evaluate(request)
    assert Decision.from_dict(decision.to_dict()) == decision


# ----------------------------------------------------------------------------- front door


def test_public_names_are_exported_sorted() -> None:
    names = aegis.engine.__all__
    assert sorted(names) == sorted(set(names))
    for name in names:
        assert getattr(aegis.engine, name) is not None
    assert {"PolicyEngine", "Decision", "RuleError", "Request", "InvalidRequestError"} <= set(names)


@pytest.mark.parametrize("module", [aegis.engine.evaluator, aegis.engine.request])
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# ----------------------------------------------------------------------------- robustness

_EVERY_OPERATOR = """\
timezone "Asia/Kolkata"
allow "eq" { resource.a == resource.b  resource.a != 1 }
allow "order" { resource.a < resource.b or resource.a >= "m" }
allow "lists" { resource.a in [1, "x", true]  resource.a not in [false] }
allow "range" { resource.a in -1.5..2 }
allow "path-in" { resource.a in resource.b  "k" not in principal.p }
allow "like" { resource.a like "*x\\\\*" }
deny "logic" { not (resource.a and resource.b) or has resource.c.d }
deny "bare" { resource.a }
deny "time" { time.hour > 12 and time.weekday == "mon" and time.clock like "1*" }
allow "roots" { action.x == 1 or context.time == time }
"""

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
    | st.sampled_from(["x*", "k", "m", "1*"])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d", "k", "time"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), _json, max_size=3),
    st.dictionaries(st.sampled_from(["p", "id"]), _json, max_size=2),
    st.sampled_from(["read", "x"]),
    st.none() | _json,
)
def test_evaluation_never_raises_on_valid_requests(
    resource: dict[str, Any], principal: dict[str, Any], action: str, time: object
) -> None:
    engine = _EVERY_OPERATOR_ENGINE
    request: dict[str, Any] = {"principal": principal, "action": action, "resource": resource}
    if time is not None:
        request["context"] = {"time": time}
    try:
        decision = engine.evaluate(request, now=NOW)
    except InvalidRequestError:
        assert time is not None  # only a bad context.time can make these requests invalid
        return
    assert Decision.from_dict(decision.to_dict()) == decision
    for error in decision.errors:
        assert error.message
        assert len(error.message.splitlines()) == 1


_EVERY_OPERATOR_ENGINE = PolicyEngine.from_texts({"every.aegis": _EVERY_OPERATOR})


# ----------------------------------------------------------------------------- version


def test_version_ignores_file_names_order_comments_and_layout() -> None:
    a = 'allow "a" { action == "read" }\n'
    b = 'deny "b" {\n    resource.kind == "secret"   # no secrets\n    reason "no"\n}\n'
    relaid = (
        '# comment\ndeny "b" { resource.kind == "secret" reason "no" }\n\n\n'
        'allow "a" {action=="read"}'
    )
    versions = {
        PolicyEngine.from_texts({"x.aegis": a, "y.aegis": b}).version,
        PolicyEngine.from_texts({"y.aegis": b, "x.aegis": a}).version,
        PolicyEngine.from_texts({"other.aegis": b + a}).version,
        PolicyEngine.from_texts({"one.aegis": relaid}).version,
    }
    assert len(versions) == 1


def test_version_changes_with_a_rule_or_a_timezone() -> None:
    base = PolicyEngine.from_texts({"p.aegis": 'allow "a" { time.hour > 8 }'}).version
    changed = PolicyEngine.from_texts({"p.aegis": 'allow "a" { time.hour > 9 }'}).version
    zoned = PolicyEngine.from_texts(
        {"p.aegis": 'timezone "Europe/Berlin"\nallow "a" { time.hour > 8 }'}
    ).version
    renamed = PolicyEngine.from_texts({"p.aegis": 'allow "b" { time.hour > 8 }'}).version
    effect = PolicyEngine.from_texts({"p.aegis": 'deny "a" { time.hour > 8 }'}).version
    assert len({base, changed, zoned, renamed, effect}) == 5
