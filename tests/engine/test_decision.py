"""Decisions (spec §6): the combination truth table, the reason text, the JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis.engine import Decision, EngineError, RuleError
from aegis.engine._combine import Outcome, RuleResult, combine

VERSION = "a" * 64


def _allow(name: str, outcome: Outcome, message: str | None = None) -> RuleResult:
    return RuleResult(name, "allow", outcome, None, message)


def _deny(
    name: str, outcome: Outcome, reason: str | None = None, message: str | None = None
) -> RuleResult:
    return RuleResult(name, "deny", outcome, reason, message)


M, N, E = Outcome.MATCH, Outcome.NO_MATCH, Outcome.ERROR


def test_no_rules_is_default_deny() -> None:
    decision = combine([], VERSION)
    assert decision.to_dict() == {
        "decision": "DENY",
        "allowed": False,
        "reason": "no allow rule matched",
        "allow": [],
        "deny": [],
        "errors": [],
        "version": VERSION,
    }


def test_a_matching_allow_rule_allows() -> None:
    decision = combine([_allow("b", M), _allow("a", M), _allow("c", N)], VERSION)
    assert decision.allowed
    assert decision.decision == "ALLOW"
    assert decision.reason == 'allowed by rule "a"'  # the first by name
    assert decision.allow == ("a", "b")


def test_a_matching_deny_rule_wins_and_allow_rules_are_still_listed() -> None:
    decision = combine([_allow("a", M), _deny("z", M, reason="frozen"), _deny("y", M)], VERSION)
    assert decision.decision == "DENY"
    assert decision.reason == 'denied by rule "y"'  # y sorts first and has no reason
    assert decision.allow == ("a",)
    assert decision.deny == ("y", "z")


def test_the_reason_of_the_first_matching_deny_rule_is_used() -> None:
    decision = combine([_deny("b", M, reason="later"), _deny("a", M, reason="frozen")], VERSION)
    assert decision.reason == "frozen"


def test_an_empty_reason_is_still_the_reason() -> None:
    assert combine([_deny("a", M, reason="")], VERSION).reason == ""


def test_a_matching_deny_rule_decides_the_reason_even_when_an_earlier_one_errors() -> None:
    decision = combine([_deny("a", E, message="boom"), _deny("b", M, reason="frozen")], VERSION)
    assert decision.reason == "frozen"
    assert decision.deny == ("a", "b")
    assert decision.errors == (RuleError("a", "boom"),)


def test_an_erroring_deny_rule_fails_closed() -> None:
    decision = combine(
        [_allow("a", M), _deny("d2", E, message="y"), _deny("d1", E, message="`x` is missing")],
        VERSION,
    )
    assert decision.decision == "DENY"
    assert decision.reason == 'rule "d1" failed: `x` is missing'
    assert decision.deny == ("d1", "d2")
    assert [e.rule for e in decision.errors] == ["d1", "d2"]


def test_an_erroring_allow_rule_does_not_count_but_is_reported() -> None:
    decision = combine([_allow("a", E, message="m"), _allow("b", N)], VERSION)
    assert decision.decision == "DENY"
    assert decision.reason == "no allow rule matched"
    assert decision.allow == ()
    assert decision.errors == (RuleError("a", "m"),)


def test_a_reason_on_an_allow_rule_is_documentation_only() -> None:
    decision = combine([RuleResult("a", "allow", M, "because", None)], VERSION)
    assert decision.reason == 'allowed by rule "a"'


@pytest.mark.parametrize(
    ("deny_matched", "deny_errored", "allow_matched", "expected"),
    [
        (True, True, True, "DENY"),
        (True, True, False, "DENY"),
        (True, False, True, "DENY"),
        (True, False, False, "DENY"),
        (False, True, True, "DENY"),
        (False, True, False, "DENY"),
        (False, False, True, "ALLOW"),
        (False, False, False, "DENY"),
    ],
)
def test_truth_table(
    deny_matched: bool, deny_errored: bool, allow_matched: bool, expected: str
) -> None:
    results = [_allow("a0", N), _deny("d0", N)]
    if deny_matched:
        results.append(_deny("d1", M))
    if deny_errored:
        results.append(_deny("d2", E, message="m"))
    if allow_matched:
        results.append(_allow("a1", M))
    assert combine(results, VERSION).decision == expected


_outcomes = st.sampled_from([M, N, E])
_results = st.dictionaries(
    st.text("abcxyz", min_size=1, max_size=3),
    st.tuples(st.sampled_from(["allow", "deny"]), _outcomes, st.none() | st.just("r")),
    max_size=8,
)


def _build(spec: dict[str, Any]) -> list[RuleResult]:
    return [
        RuleResult(name, effect, outcome, reason, "msg" if outcome is E else None)
        for name, (effect, outcome, reason) in spec.items()
    ]


@given(_results, st.randoms())
def test_combination_does_not_depend_on_order(spec: dict[str, Any], random: Any) -> None:
    results = _build(spec)
    shuffled = list(results)
    random.shuffle(shuffled)
    assert combine(results, VERSION) == combine(shuffled, VERSION)


@given(_results, st.text("pq", min_size=1, max_size=3), _outcomes)
def test_adding_an_allow_rule_never_turns_allow_into_deny(
    spec: dict[str, Any], name: str, outcome: Outcome
) -> None:
    before = combine(_build(spec), VERSION)
    after = combine([*_build(spec), _allow(name, outcome, "m")], VERSION)
    if before.allowed:
        assert after.allowed


@given(_results, st.text("pq", min_size=1, max_size=3), _outcomes)
def test_adding_a_deny_rule_never_turns_deny_into_allow(
    spec: dict[str, Any], name: str, outcome: Outcome
) -> None:
    before = combine(_build(spec), VERSION)
    after = combine([*_build(spec), _deny(name, outcome, message="m")], VERSION)
    if not before.allowed:
        assert not after.allowed


@given(_results)
def test_lists_are_sorted_and_consistent(spec: dict[str, Any]) -> None:
    results = _build(spec)
    decision = combine(results, VERSION)
    assert list(decision.allow) == sorted(
        r.name for r in results if r.effect == "allow" and r.outcome is M
    )
    assert list(decision.deny) == sorted(
        r.name for r in results if r.effect == "deny" and r.outcome is not N
    )
    assert [e.rule for e in decision.errors] == sorted(r.name for r in results if r.outcome is E)
    assert decision.allowed == (decision.decision == "ALLOW")


# ----------------------------------------------------------------------------- JSON form


def test_to_dict_has_exactly_the_documented_keys_and_is_json() -> None:
    decision = combine([_allow("a", M), _allow("b", E, "`x` is missing")], VERSION)
    data = decision.to_dict()
    assert list(data) == ["decision", "allowed", "reason", "allow", "deny", "errors", "version"]
    assert data["errors"] == [{"rule": "b", "message": "`x` is missing"}]
    assert json.loads(json.dumps(data)) == data


@given(_results)
def test_from_dict_round_trips(spec: dict[str, Any]) -> None:
    decision = combine(_build(spec), VERSION)
    assert Decision.from_dict(decision.to_dict()) == decision
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("reason"),
        lambda d: d.update(extra=1),
        lambda d: d.update(decision="MAYBE"),
        lambda d: d.update(allowed="yes"),
        lambda d: d.update(allowed=True),  # inconsistent with DENY
        lambda d: d.update(allow="a"),
        lambda d: d.update(deny=[1]),
        lambda d: d.update(errors=[{"rule": "a"}]),
        lambda d: d.update(errors={}),
        lambda d: d.update(version=None),
    ],
)
def test_from_dict_rejects_malformed_objects(mutate: Any) -> None:
    data = combine([], VERSION).to_dict()
    mutate(data)
    with pytest.raises(EngineError, match="malformed decision object"):
        Decision.from_dict(data)


def test_decision_checks_its_own_consistency() -> None:
    with pytest.raises(ValueError, match="allowed"):
        Decision("ALLOW", False, "r", (), (), (), VERSION)
    with pytest.raises(ValueError, match="ALLOW"):
        Decision("YES", True, "r", (), (), (), VERSION)  # type: ignore[arg-type]
