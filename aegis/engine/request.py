"""Requests (spec §4): validation, the normalised :class:`Request`, and the ``time`` view.

A request is a JSON object with exactly these keys::

    {"principal": {...}, "action": "restart_pod", "resource": {...}, "context": {...}}

``principal`` and ``resource`` are required objects, ``action`` a required string, ``context``
an optional object (default ``{}``; an explicit ``null`` is invalid). ``context.time``, when
present, is RFC 3339 with an offset or an integer of epoch seconds. Anything else raises
:class:`~aegis.engine.errors.InvalidRequestError`: a request is rejected, never decided.

Usage::

    >>> from datetime import datetime, timezone
    >>> req = parse_request(
    ...     {"principal": {"id": "alice"}, "action": "read", "resource": {},
    ...      "context": {"time": "2026-11-26T07:30:00Z"}})
    >>> req.time_view("Europe/Berlin")["clock"]
    '08:30'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

import orjson

from aegis.engine._values import JsonValue, NormalizeError, normalize, safe_repr, show
from aegis.engine.errors import InvalidRequestError

__all__ = [
    "DOCUMENT_OPTIONS",
    "TIME_ATTRIBUTES",
    "Request",
    "as_document",
    "finite",
    "parse_request",
    "parse_time",
    "time_view",
    "write_document",
]

TIME_ATTRIBUTES: Final = (
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "weekday",
    "date",
    "clock",
    "epoch",
)
"""The attributes of the derived ``time`` object, exactly these (spec §4)."""

_KEYS: Final = frozenset({"principal", "action", "resource", "context"})
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# RFC 3339 §5.6 date-time, strictly: seconds required, fraction optional, an offset
# required. ABNF literals are case-insensitive, so RFC 3339 allows `t` and `z` (its §5.6
# note says so too): accepted. A space instead of `T` is not RFC 3339: rejected (spec §4).
# [0-9] and not \d: \d would accept other scripts' digits.
_RFC3339: Final = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<offset>[Zz]|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)

# Instants are accepted only where every IANA zone can show them as a date of years
# 1..9999 (zone offsets stay well within a day): Python's datetime cannot go further.
_EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)
_LATEST: Final = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LOWEST_EPOCH: Final = Decimal(int((_EARLIEST - _EPOCH).total_seconds()))
_HIGHEST_EPOCH: Final = Decimal(int((_LATEST - _EPOCH).total_seconds()))


DOCUMENT_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
"""The ``orjson.dumps`` options a request's JSON document is written with: a subclass of a JSON
type, a dataclass or a datetime is not written (``orjson`` raises), so a request holding one has
no document and is read by :func:`~aegis.engine._values.normalize` instead."""


def write_document(data: object) -> bytes | None:
    """The JSON text ``orjson`` writes for ``data`` (see :func:`as_document`), or ``None`` when
    it writes none: a type it does not write natively (``Decimal``, a ``Mapping`` that is not
    a ``dict``, a subclass, ...), a non-string key, an integer beyond 64 bits, a lone
    surrogate, nesting deeper than 254 (a cycle)."""
    try:
        return orjson.dumps(data, None, DOCUMENT_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return None


def as_document(data: object) -> object:
    """``data`` read as the JSON document ``orjson`` writes for it, or ``data`` itself.

    Python callers may hand the engine values that are not JSON but have one JSON form, the
    one ``orjson`` writes: a ``tuple`` (an array), a ``uuid.UUID`` (its string), an enum
    member (its value), an ``orjson.Fragment`` (the JSON text it holds, in place). A request
    is read as that document, on every path: the near cache keys a request by the same text
    (:mod:`aegis.engine.cache._near`), so a request and its document are one request.

    ``data`` itself is returned when there is no such document (:func:`write_document`), when
    it holds a number that is not finite (``orjson`` writes NaN as ``null``; the reader
    rejects it), or when a fragment makes the text invalid JSON; the reference reader
    (:func:`parse_request`) then accepts or rejects it as before.
    """
    text = write_document(data)
    if text is None or (b"null" in text and not finite(data)):
        return data
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # a fragment that does not hold JSON
        return data


def finite(value: object) -> bool:
    """Whether no float in ``value`` (a request ``orjson`` wrote: nested at most 254 deep) is
    NaN or infinite, enum members' values included; ``orjson`` writes those as ``null``."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Enum):
        return finite(value.value)
    if isinstance(value, dict):
        return all(finite(child) for child in value.values())
    if isinstance(value, list | tuple):
        return all(finite(child) for child in value)
    return True


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _in_range(instant: datetime, shown: str) -> datetime:
    if not _EARLIEST <= instant <= _LATEST:
        raise _invalid(
            f"`context.time` is out of the supported range "
            f"(0001-01-02 to 9999-12-30 UTC): `{show(shown)}`"
        )
    return instant


def parse_time(value: object) -> datetime:
    """Read a ``context.time`` value: RFC 3339 with an offset, or integer epoch seconds.

    Strings must be RFC 3339 date-times: ``YYYY-MM-DDTHH:MM:SS``, an optional fraction of any
    length, then ``Z`` or ``±HH:MM`` (``t`` and ``z`` may be lower case, as RFC 3339 allows).
    A date alone, missing seconds, a space for ``T``, no offset, the leap second ``:60`` or an
    impossible date are rejected. Numbers must have an integer value (``1798761600`` or
    ``1798761600.0``; not ``1.5``); booleans and ``null`` are rejected.

    Args:
        value: the raw value of ``context.time`` (as in the request, before normalising).

    Returns:
        The instant, timezone-aware, in UTC; fractions finer than a microsecond are dropped.

    Raises:
        InvalidRequestError: the value is none of the above, or outside years 0001..9999.
    """
    if isinstance(value, bool) or value is None:
        raise _invalid(
            f"`context.time` must be an RFC 3339 date-time or integer epoch seconds, "
            f"not `{'null' if value is None else str(value).lower()}`"
        )
    if isinstance(value, int | float | Decimal):
        return _parse_epoch(value)
    if isinstance(value, str):
        return _parse_rfc3339(value)
    raise _invalid(
        "`context.time` must be an RFC 3339 date-time or integer epoch seconds, "
        f"not a {_json_kind(value)}"
    )


def _json_kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _parse_epoch(value: int | float | Decimal) -> datetime:
    try:
        number = normalize(value, "context.time")
    except NormalizeError as exc:
        raise _invalid(str(exc)) from exc
    assert isinstance(number, Decimal)
    if number != number.to_integral_value():
        raise _invalid(
            "`context.time` must be whole epoch seconds, "
            f"not the non-integer number `{show(str(number))}`"
        )
    # Compare as decimals first: int() of 1e999999999 would build a huge integer.
    if not _LOWEST_EPOCH <= number <= _HIGHEST_EPOCH:
        raise _invalid(
            "`context.time` is out of the supported range "
            f"(0001-01-02 to 9999-12-30 UTC): `{show(str(number))}`"
        )
    return _EPOCH + timedelta(seconds=int(number))


def _parse_rfc3339(text: str) -> datetime:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _invalid(
            f"`context.time` is not an RFC 3339 date-time with an offset "
            f"(like `2026-11-26T10:15:00Z`): `{show(text)}`"
        )
    parts = {
        name: int(digits)
        for name, digits in match.groupdict().items()
        if digits is not None and name not in {"fraction", "offset", "sign"}
    }
    if parts["second"] == 60:
        raise _invalid(f"`context.time` is a leap second, which is not supported: `{show(text)}`")
    fraction = match["fraction"] or ""
    microsecond = int((fraction + "000000")[:6])
    offset = timedelta(0)
    if match["sign"] is not None:
        if parts["off_hour"] > 23 or parts["off_minute"] > 59:
            raise _invalid(f"`context.time` has an impossible offset: `{show(text)}`")
        offset = timedelta(hours=parts["off_hour"], minutes=parts["off_minute"])
        if match["sign"] == "-":
            offset = -offset
    try:
        local = datetime(
            parts["year"],
            parts["month"],
            parts["day"],
            parts["hour"],
            parts["minute"],
            parts["second"],
            microsecond,
            tzinfo=timezone(offset),
        )
        instant = local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _invalid(f"`context.time` is not a valid date-time: `{show(text)}`") from exc
    return _in_range(instant, text)


def _check_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if not isinstance(now, datetime):
        raise _invalid(f"`now` must be a timezone-aware datetime, not a {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise _invalid("`now` must be a timezone-aware datetime, not a naive one")
    try:
        instant = now.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _invalid(f"`now` is out of range: `{now.isoformat()}`") from exc
    return _in_range(instant, now.isoformat())


def time_view(instant: datetime, zone: str | ZoneInfo) -> Mapping[str, JsonValue]:
    """The derived ``time`` object of spec §4: ``instant`` as seen in ``zone``.

    Args:
        instant: a timezone-aware datetime.
        zone: an IANA zone name (``"Europe/Berlin"``) or a :class:`~zoneinfo.ZoneInfo`.

    Returns:
        A read-only object with exactly :data:`TIME_ATTRIBUTES`: ``year month day hour
        minute`` and ``epoch`` as numbers (``Decimal``, the evaluation form of integers),
        ``weekday`` (``"mon"`` … ``"sun"``), ``date`` (``"YYYY-MM-DD"``), ``clock``
        (``"HH:MM"``). ``epoch`` drops the fraction toward negative infinity, so it is the
        second that contains the instant (``-0.5`` s is ``-1``), consistent with the clock
        fields.
    """
    tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    local = instant.astimezone(tz)
    delta = instant - _EPOCH
    epoch = delta.days * 86400 + delta.seconds  # floor: microseconds are dropped
    view: dict[str, JsonValue] = {
        "year": Decimal(local.year),
        "month": Decimal(local.month),
        "day": Decimal(local.day),
        "hour": Decimal(local.hour),
        "minute": Decimal(local.minute),
        "weekday": _WEEKDAYS[local.weekday()],
        "date": f"{local.year:04d}-{local.month:02d}-{local.day:02d}",
        "clock": f"{local.hour:02d}:{local.minute:02d}",
        "epoch": Decimal(epoch),
    }
    return MappingProxyType(view)


@dataclass(frozen=True, slots=True)
class Request:
    """A valid request (spec §4), normalised for evaluation.

    Build one with :func:`parse_request`. Values are in the evaluation form of
    :mod:`aegis.engine._values` (numbers are ``Decimal``, lists tuples, objects read-only).

    Attributes:
        principal: the principal object.
        action: the action name.
        resource: the resource object.
        context: the context object (``{}`` when the request has none).
        instant: the moment ``time`` describes (UTC): ``context.time`` or the clock.
    """

    principal: Mapping[str, JsonValue]
    action: str
    resource: Mapping[str, JsonValue]
    context: Mapping[str, JsonValue]
    instant: datetime
    _views: dict[str, Mapping[str, JsonValue]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def time_view(self, zone: str) -> Mapping[str, JsonValue]:
        """The ``time`` object in ``zone``, computed once per zone per request."""
        view = self._views.get(zone)
        if view is None:
            view = time_view(self.instant, zone)
            self._views[zone] = view
        return view


def parse_request(data: object, now: datetime | None = None, *, read: bool = True) -> Request:
    """Validate a request against spec §4 and normalise it.

    Args:
        data: the request, a mapping as parsed from JSON (or YAML).
        now: stands in for the clock when the request has no ``context.time``; must be
            timezone-aware. ``None`` reads the system clock.

    Returns:
        The normalised :class:`Request`.

    Raises:
        InvalidRequestError: the request breaks §4 (with a message saying where), or
            ``now`` is not a timezone-aware datetime.

    A request holding Python values with a JSON form (a tuple, a UUID, an enum member, an
    ``orjson.Fragment``) is read as its JSON document: see :func:`as_document`
    (``read=False``: ``data`` was read so already).
    """
    if read:
        data = as_document(data)
    if not isinstance(data, Mapping):
        raise _invalid(f"a request must be a JSON object, not a {_json_kind(data)}")
    for key in data:
        if key not in _KEYS:
            shown = show(key if isinstance(key, str) else safe_repr(key))
            raise _invalid(
                f"unknown request key `{shown}`: a request has only "
                "`principal`, `action`, `resource` and `context`"
            )
    for required in ("principal", "action", "resource"):
        if required not in data:
            raise _invalid(f"the request has no `{required}`")
    action = data["action"]
    if not isinstance(action, str):
        raise _invalid(f"`action` must be a string, not {_describe_kind(action)}")
    objects: dict[str, Mapping[str, JsonValue]] = {}
    for name in ("principal", "resource", "context"):
        raw = data.get(name, {})
        if not isinstance(raw, Mapping):
            raise _invalid(f"`{name}` must be an object, not {_describe_kind(raw)}")
        try:
            value = normalize(raw, name)
        except NormalizeError as exc:
            raise _invalid(str(exc)) from exc
        assert isinstance(value, Mapping)
        objects[name] = value
    context_raw = data.get("context", {})
    assert isinstance(context_raw, Mapping)
    clock = _check_now(now)
    instant = parse_time(context_raw["time"]) if "time" in context_raw else clock
    return Request(
        principal=objects["principal"],
        action=str(action),
        resource=objects["resource"],
        context=objects["context"],
        instant=instant,
    )


def _describe_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    kind = _json_kind(value)
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
