"""When a run template fires: interval codes, cron expressions and time zones. Pure code.

Interval codes keep their upstream meaning; each one except ``c`` (custom cron) and ``n``
(not scheduled) stands for a fixed cron expression (:data:`INTERVAL_CRON`).

Rules are evaluated on the wall clock of an IANA time zone, so "daily at 02:30 in
Europe/Prague" stays at 02:30 local time in summer and in winter. On the days the clock
changes:

* A local time that does not exist (spring forward, 02:30 on 2026-03-29 in Prague) fires
  once, shifted forward by the length of the gap: 02:30 becomes 03:30 CEST. This is what
  PEP 495 gives for ``fold=0``. A shifted time that coincides with another time of the
  same rule fires once (an hourly rule fires at 01:00 CET and 03:00 CEST: every real hour).
* A local time that occurs twice (fall back, 02:30 on 2026-10-25 in Prague) fires once,
  at its first occurrence (CEST) -- unless the rule fires in every hour of the day
  (hourly, minutely, ``*/15 * * * *``): such a rule fires in both occurrences, so that it
  keeps firing every real hour or minute and nothing is skipped or doubled.

``delay`` seconds are added to every tick (upstream ``runtemplate.delay``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from multiflexi.errors import Invalid

#: Interval code -> the cron expression it stands for (upstream ``Scheduler::$intervCron``).
INTERVAL_CRON: dict[str, str] = {
    "y": "0 0 1 1 *",
    "m": "0 0 1 * *",
    "w": "0 0 * * 1",
    "d": "0 0 * * *",
    "h": "0 * * * *",
    "i": "* * * * *",
}

#: Interval code -> its name.
INTERVAL_NAMES: dict[str, str] = {
    "y": "yearly",
    "m": "monthly",
    "w": "weekly",
    "d": "daily",
    "h": "hourly",
    "i": "minutely",
    "c": "custom",
    "n": "not scheduled",
}

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

#: (name, low, high, names) of the five fields.
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, WEEKDAYS),
)

_PART = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")

#: How far a search may iterate before the rule is declared broken (minutely rules
#: around a 24-hour clock jump need ~1,500 steps).
_MAX_STEPS = 20_000


def validate_interval(code: str) -> str:
    """Return a valid interval code or raise :class:`Invalid`."""
    if code not in INTERVAL_NAMES:
        valid = ", ".join(f"{c} ({n})" for c, n in INTERVAL_NAMES.items())
        raise Invalid(f"unknown interval {code!r}; valid: {valid}")
    return code


def _value(raw: str, field: str, low: int, high: int, names: tuple[str, ...], expr: str) -> int:
    if raw.isdigit():
        number = int(raw)
    elif raw in names:
        number = names.index(raw) + (1 if field == "month" else 0)
    else:
        raise Invalid(f"cron expression {expr!r}: {field} field has an invalid value {raw!r}")
    if not low <= number <= high:
        raise Invalid(
            f"cron expression {expr!r}: {field} value {number} is out of range {low}-{high}"
        )
    return number


def _expand(text: str, index: int, expr: str) -> set[int]:
    """The values one field allows; ``L`` and ``#`` are checked and kept by croniter."""
    field, low, high, names = _FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        if index == 2 and part in ("l", "L"):
            values.update(range(28, 32))
            continue
        if index == 4 and (m := re.fullmatch(r"([0-7a-z]+)#[1-5]", part)):
            values.add(_value(m.group(1), field, low, high, names, expr) % 7)
            continue
        match = _PART.match(part)
        if match is None:
            raise Invalid(f"cron expression {expr!r}: {field} field has an invalid part {part!r}")
        star, first, last, step = match.groups()
        if step is not None and int(step) == 0:
            raise Invalid(f"cron expression {expr!r}: {field} step must be at least 1")
        if star:
            start, end = low, high
        else:
            start = _value(first, field, low, high, names, expr)
            end = _value(last, field, low, high, names, expr) if last else start
            if last is None and step is not None:
                end = high
            if end < start:
                raise Invalid(f"cron expression {expr!r}: {field} range {first}-{last} is reversed")
        values.update(range(start, end + 1, int(step or 1)))
    return values


#: The nicknames croniter accepts, as the five fields they stand for (stored that way).
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: The width of ``runtemplate.cron``.
CRON_MAX_LENGTH = 64


def validate_cron(expr: str) -> str:
    """Return the normalised five-field expression, or raise :class:`Invalid` saying why.

    Accepted per field: numbers, ranges ``a-b``, lists, steps ``*/n`` and ``a-b/n``, month
    and weekday names; ``L`` (last day) in day-of-month; ``5#2`` (second Friday) in
    day-of-week; the nicknames of :data:`CRON_MACROS` (``@daily`` is ``0 0 * * *``).
    Refused: 6 or 7 fields (seconds, years), ``@reboot`` and other nicknames, and
    expressions that can never fire such as ``0 0 31 2 *``, and a day of month together
    with an nth weekday (``0 0 1 * 5#2``), which croniter cannot schedule.
    """
    fields = str(expr).strip().lower().split()
    if len(fields) == 1 and fields[0] in CRON_MACROS:
        fields = CRON_MACROS[fields[0]].split()
    if len(fields) != 5:
        raise Invalid(
            f"cron expression {expr!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    for index, text in enumerate(fields):
        _expand(text, index, str(expr))
    fields[2] = fields[2].replace("l", "L")  # day-of-month has no names; L is "last day"
    if "#" in fields[4] and fields[2] not in ("*", "?"):
        # Cron ORs a day of month with a weekday, but croniter cannot with an nth weekday:
        # it would never fire, and "no such date" would be the wrong reason.
        raise Invalid(
            f"cron expression {expr!r} combines a day of month ({fields[2]}) with an nth "
            f"weekday ({fields[4]}), which cannot be scheduled; use one of them"
        )
    normalised = " ".join(fields)
    if len(normalised) > CRON_MAX_LENGTH:
        raise Invalid(f"cron expression is longer than {CRON_MAX_LENGTH} characters")
    from croniter import CroniterError, croniter

    try:
        it = croniter(normalised, datetime(2000, 1, 1))
        it.get_next(datetime)
    except CroniterError as exc:
        if "find" in str(exc):
            raise Invalid(
                f"cron expression {expr!r} never fires (no such date in any year)"
            ) from None
        raise Invalid(f"cron expression {expr!r} is invalid: {exc}") from None
    return normalised


def cron_for(interv: str, cron: str | None) -> str | None:
    """The cron expression of a schedule, or None when it is not scheduled."""
    validate_interval(interv)
    if interv == "n":
        return None
    if interv == "c":
        if not cron or not cron.strip():
            raise Invalid("interval c (custom) needs a cron expression")
        return validate_cron(cron)
    return INTERVAL_CRON[interv]


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` or :class:`Invalid`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r}") from None


@lru_cache(maxsize=256)
def _every_hour(expr: str) -> bool:
    return _expand(expr.split()[1], 1, expr) == set(range(24))


def _instants(local: datetime, tz: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The UTC instants a naive local wall-clock tick stands for (see the module doc)."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first < second:  # occurs twice: the first occurrence, or both for hourly rules
        return [first, second] if every_hour else [first]
    return [first]  # does not exist: fold=0 gives the time shifted forward by the gap


def _offsets(around: datetime, tz: ZoneInfo) -> list[timedelta]:
    steps = (around + timedelta(hours=12 * k) for k in range(-4, 5))
    return [s.astimezone(tz).utcoffset() or timedelta(0) for s in steps]


def _next_tick(expr: str, after: datetime, tz: ZoneInfo) -> datetime:
    """The first tick of ``expr`` strictly after ``after`` (aware UTC)."""
    from croniter import croniter

    every_hour = _every_hour(expr)
    # A tick c (naive local) fires at c - offset(c), so it can be after ``after`` only if
    # c > after + offset >= after + the smallest offset around ``after``.
    start = (after + min(_offsets(after, tz))).replace(tzinfo=None)
    it = croniter(expr, start)
    best: datetime | None = None
    stop: datetime | None = None
    for _ in range(_MAX_STEPS):
        local: datetime = it.get_next(datetime)
        if stop is not None and local >= stop:
            return best  # type: ignore[return-value]
        for instant in _instants(local, tz, every_hour):
            if instant > after and (best is None or instant < best):
                best = instant
                # No later tick can fire earlier than tick - the largest offset near it.
                stop = (best + max(_offsets(best, tz))).replace(tzinfo=None)
    raise Invalid(f"cron expression {expr!r} does not fire in a reasonable time")


def _check_aware(after: datetime) -> datetime:
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("`after` must be a timezone-aware datetime")
    return after.astimezone(UTC)


def next_fire(
    interv: str, cron: str | None, after: datetime, tz: str, delay: int = 0
) -> datetime | None:
    """When the schedule fires next, strictly after ``after``; None for ``n``.

    The result is an aware UTC datetime: the next tick of the rule evaluated in time zone
    ``tz``, plus ``delay`` seconds.
    """
    expr = cron_for(interv, cron)
    if expr is None:
        return None
    if delay < 0:
        raise Invalid(f"delay must not be negative, got {delay}")
    moment = _check_aware(after)
    tick = _next_tick(expr, moment - timedelta(seconds=delay), zone(tz))
    return tick + timedelta(seconds=delay)


def upcoming(
    interv: str,
    cron: str | None,
    after: datetime,
    tz: str,
    n: int = 5,
    delay: int = 0,
) -> list[datetime]:
    """The next ``n`` fire times after ``after``, strictly increasing, aware UTC."""
    out: list[datetime] = []
    moment = _check_aware(after)
    for _ in range(max(n, 0)):
        found = next_fire(interv, cron, moment, tz, delay)
        if found is None:
            break
        out.append(found)
        moment = found
    return out


def describe(interv: str, cron: str | None) -> str:
    """Short human description: ``daily``, ``custom (30 2 * * *)``, ``not scheduled``."""
    name = INTERVAL_NAMES.get(interv, interv)
    return f"{name} ({cron})" if interv == "c" and cron else name
