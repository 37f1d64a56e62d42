"""Request validation and the `time` view (spec §4)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine.errors import InvalidRequestError
from aegis.engine.request import TIME_ATTRIBUTES, parse_request, parse_time, time_view

NOW = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)


def _request(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"principal": {"id": "u"}, "action": "read", "resource": {}}
    base.update(overrides)
    return base


def _with_time(value: object) -> dict[str, Any]:
    return _request(context={"time": value})


# ----------------------------------------------------------------------------- shape


def test_a_minimal_request_is_valid_and_context_defaults_to_empty() -> None:
    request = parse_request(_request(), now=NOW)
    assert request.principal == {"id": "u"}
    assert request.action == "read"
    assert request.resource == {}
    assert request.context == {}
    assert request.instant == NOW


def test_values_are_normalised() -> None:
    request = parse_request(
        _request(resource={"replicas": 3, "ratio": 0.1, "tags": ["a"]}), now=NOW
    )
    assert request.resource["replicas"] == Decimal(3)
    assert isinstance(request.resource["replicas"], Decimal)
    assert request.resource["ratio"] == Decimal("0.1")
    assert request.resource["tags"] == ("a",)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "must be a JSON object"),
        ("x", "must be a JSON object"),
        (None, "must be a JSON object"),
        ({"action": "read", "resource": {}}, "no `principal`"),
        ({"principal": {}, "resource": {}}, "no `action`"),
        ({"principal": {}, "action": "read"}, "no `resource`"),
        (_request(action=42), "`action` must be a string, not a number"),
        (_request(action=True), "`action` must be a string, not a boolean"),
        (_request(action=None), "`action` must be a string, not null"),
        (_request(principal="alice"), "`principal` must be an object, not a string"),
        (_request(principal=["alice"]), "`principal` must be an object, not a list"),
        (_request(resource=None), "`resource` must be an object, not null"),
        (_request(context=None), "`context` must be an object, not null"),
        (_request(context=[]), "`context` must be an object, not a list"),
        (_request(extra=1), "unknown request key `extra`"),
        ({**_request(), 1: 2}, "unknown request key `1`"),
        (_request(resource={"x": float("nan")}), "`resource.x` is not a finite number"),
        (_request(resource={"x": {1: 2}}), "`resource.x` has a key that is not a string"),
        (_request(resource={"x": {1, 2}}), "`resource.x` is not a JSON value"),
        (_request(resource={10**5000: 1}), "`resource` has a key that is not a string: `<int>`"),
        ({**_request(), 10**5000: 1}, "unknown request key `<int>`"),
        (_with_time(10**5000), "`context.time` is out of the supported range"),
        (_request(resource={"k\nx": 1.0, "v": float("inf")}), "`resource.v` is not a finite"),
        (_request(resource={"k\nx": float("inf")}), '`resource["k\\nx"]` is not a finite'),
    ],
)
def test_invalid_shapes_are_rejected_with_a_clear_message(data: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(data, now=NOW)
    assert fragment in str(info.value)
    assert info.value.code == "request.invalid"


# ----------------------------------------------------------------------------- context.time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:15:00Z", datetime(2026, 11, 26, 10, 15, tzinfo=UTC)),
        ("2026-11-26T10:15:00+01:00", datetime(2026, 11, 26, 9, 15, tzinfo=UTC)),
        ("2026-11-26T10:15:00-05:30", datetime(2026, 11, 26, 15, 45, tzinfo=UTC)),
        ("2026-11-26T10:15:00-00:00", datetime(2026, 11, 26, 10, 15, tzinfo=UTC)),
        ("2026-11-26T10:15:00.5Z", datetime(2026, 11, 26, 10, 15, 0, 500000, tzinfo=UTC)),
        ("2026-11-26T10:15:00.123456789Z", datetime(2026, 11, 26, 10, 15, 0, 123456, tzinfo=UTC)),
        ("2026-11-26t10:15:00z", datetime(2026, 11, 26, 10, 15, tzinfo=UTC)),  # RFC 3339 §5.6
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2026-12-31T23:30:00-01:00", datetime(2027, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_are_read(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected
    assert parse_request(_with_time(text), now=NOW).instant == expected


@pytest.mark.parametrize(
    "bad",
    [
        "2026-11-26",  # a date alone
        "2026-11-26T10:15Z",  # no seconds
        "2026-11-26T10:15:00",  # no offset
        "2026-11-26 10:15:00Z",  # a space for T
        "2026-11-26T23:59:60Z",  # a leap second
        "2026-02-30T10:00:00Z",  # no such day
        "2025-02-29T10:00:00Z",  # not a leap year
        "2026-13-01T10:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T10:60:00Z",
        "2026-11-26T10:15:00+24:00",
        "2026-11-26T10:15:00+01:60",
        "2026-11-26T10:15:00+0100",
        "2026-11-26T10:15:00.Z",
        "2026-11-26T10:15:00Z ",
        "2026-11-26T10:15:00Z\n",
        " 2026-11-26T10:15:00Z",
        "2026-11-26T10:15:00UTC",
        "２０２６-11-26T10:15:00Z",  # full-width digits are not ASCII digits
        "+2026-11-26T10:15:00Z",
        "0000-01-01T00:00:00Z",
        "",
        "now",
    ],
)
def test_malformed_rfc3339_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_with_time(bad), now=NOW)
    assert "`context.time`" in str(info.value)


def test_epoch_seconds_are_read() -> None:
    assert parse_time(1798761600) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_time(-86400) == datetime(1969, 12, 31, tzinfo=UTC)
    # A number whose value is an integer is an integer (numbers compare by value, §2).
    assert parse_time(1798761600.0) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_time(Decimal("1798761600.00")) == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        1.5,
        Decimal("0.1"),
        True,
        False,
        None,
        [1],
        {"t": 1},
        10**20,
        -(10**20),
        float("inf"),
        Decimal("1e999999999"),
    ],
)
def test_other_times_are_invalid(bad: object) -> None:
    with pytest.raises(InvalidRequestError):
        parse_request(_with_time(bad), now=NOW)


def test_time_is_validated_even_when_no_rule_reads_it() -> None:
    # parse_request knows nothing of rules: validity never depends on them.
    with pytest.raises(InvalidRequestError):
        parse_request(_with_time("2026-11-26"), now=NOW)


def test_context_time_wins_over_now() -> None:
    request = parse_request(_with_time("2027-01-01T00:00:00Z"), now=NOW)
    assert request.instant == datetime(2027, 1, 1, tzinfo=UTC)
    assert request.context["time"] == "2027-01-01T00:00:00Z"  # the raw value stays readable


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(InvalidRequestError, match="timezone-aware"):
        parse_request(_request(), now=datetime(2026, 1, 1))
    with pytest.raises(InvalidRequestError, match="timezone-aware"):
        parse_request(_request(), now="2026-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_without_time_or_now_the_system_clock_is_used() -> None:
    before = datetime.now(UTC)
    request = parse_request(_request())
    after = datetime.now(UTC)
    assert before <= request.instant <= after


def test_now_in_another_zone_is_the_same_instant() -> None:
    berlin = datetime(2026, 11, 26, 11, 15, tzinfo=ZoneInfo("Europe/Berlin"))
    assert parse_request(_request(), now=berlin).instant == NOW


# ----------------------------------------------------------------------------- the view


def test_time_view_has_exactly_the_nine_attributes() -> None:
    view = time_view(datetime(2026, 11, 26, 7, 30, 59, 999999, tzinfo=UTC), "Europe/Berlin")
    assert tuple(view) == TIME_ATTRIBUTES
    assert dict(view) == {
        "year": Decimal(2026),
        "month": Decimal(11),
        "day": Decimal(26),
        "hour": Decimal(8),
        "minute": Decimal(30),
        "weekday": "thu",
        "date": "2026-11-26",
        "clock": "08:30",
        "epoch": Decimal(1795678259),
    }


def test_time_view_follows_summer_time() -> None:
    before = time_view(datetime(2026, 3, 27, 6, 30, tzinfo=UTC), "Europe/Berlin")
    after = time_view(datetime(2026, 3, 30, 6, 30, tzinfo=UTC), "Europe/Berlin")
    assert (before["hour"], after["hour"]) == (Decimal(7), Decimal(8))


def test_epoch_drops_fractions_toward_negative_infinity() -> None:
    half_before = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    view = time_view(half_before, "UTC")
    assert view["epoch"] == Decimal(-1)
    assert view["clock"] == "23:59"
    assert time_view(datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=UTC), "UTC")["epoch"] == 0


def test_request_caches_the_view_per_zone() -> None:
    request = parse_request(_with_time("2026-11-26T07:30:00Z"), now=NOW)
    first = request.time_view("Europe/Berlin")
    assert request.time_view("Europe/Berlin") is first
    assert request.time_view("UTC")["clock"] == "07:30"
    assert first["clock"] == "08:30"


def test_extreme_supported_instants_can_be_seen_in_every_extreme_zone() -> None:
    for text in ("0001-01-02T00:00:00Z", "9999-12-30T23:59:59Z"):
        instant = parse_time(text)
        for zone in ("Pacific/Kiritimati", "Etc/GMT+12", "America/St_Johns"):
            assert time_view(instant, zone)["year"] in {Decimal(1), Decimal(9999)}
    with pytest.raises(InvalidRequestError, match="out of the supported range"):
        parse_time("0001-01-01T12:00:00Z")
    with pytest.raises(InvalidRequestError, match="out of the supported range"):
        parse_time("9999-12-31T00:00:00Z")


_ZONES = st.sampled_from(
    [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/St_Johns",
        "Pacific/Kiritimati",
    ]
)


@given(
    st.integers(min_value=-(2**34), max_value=2**35),
    st.integers(min_value=0, max_value=999_999),
    _ZONES,
)
def test_time_view_matches_an_independent_computation(seconds: int, micros: int, zone: str) -> None:
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
    view = time_view(instant, zone)
    # Independently: the wall clock from the zone's own utcoffset, the weekday by name.
    offset = ZoneInfo(zone).utcoffset(instant.replace(tzinfo=None))
    assert offset is not None
    local = instant.replace(tzinfo=None) + offset
    assert view["year"] == local.year
    assert view["month"] == local.month
    assert view["day"] == local.day
    assert view["hour"] == local.hour
    assert view["minute"] == local.minute
    assert view["weekday"] == local.strftime("%a").lower()
    assert view["date"] == local.date().isoformat()
    assert view["clock"] == local.strftime("%H:%M")
    assert view["epoch"] == seconds  # micros are dropped: floor


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1),
        max_value=datetime(9000, 1, 1),
    ),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    st.integers(min_value=0, max_value=999_999),
)
def test_rfc3339_round_trip(local: datetime, offset_minutes: int, micros: int) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    fraction = f".{micros:06d}" if micros else ""
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + f"{sign}{hours:02d}:{minutes:02d}"
    expected = local.replace(microsecond=micros, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert parse_time(text) == expected


# ----------------------------------------------------------------------------- robustness

_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["2026-11-26T10:15:00Z", "2026-11-26", "principal", "time"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["principal", "action", "resource", "context", "time", "x"])
            | st.text(max_size=3),
            children,
            max_size=5,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=300)
@given(_json_like)
def test_arbitrary_json_never_raises_anything_but_invalid_request(data: object) -> None:
    try:
        request = parse_request(data, now=NOW)
    except InvalidRequestError as exc:
        message = str(exc)
    else:
        assert isinstance(request.principal, Mapping)
        assert isinstance(request.action, str)
        return
    assert message
    assert len(message.splitlines()) == 1


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {"principal": st.just({}), "action": st.just("a"), "resource": st.just({})},
    ),
    st.dictionaries(st.just("time"), _json_like, max_size=1),
)
def test_arbitrary_context_time_never_raises_anything_but_invalid_request(
    base: dict[str, Any], context: dict[str, Any]
) -> None:
    with contextlib.suppress(InvalidRequestError):
        parse_request({**base, "context": context}, now=NOW)
