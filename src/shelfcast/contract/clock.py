"""One clock for every "now" and "today" shelfcast asks, and one way to write a moment down.

Everything that needs the time calls `now()` or `today()` here, never `datetime.now()` or `date.today()`
(a unit test holds that): ingest's future-date check, data freshness, alert timestamps and cooldowns, canary
age, night names, store sync times and promotion records. The system clock is the default; a replay of past
days installs a `SimulatedClock` with `use_clock`, and every one of those decisions follows it.

Moments are written as `stamp()` text, UTC to the second with a `Z` (`2026-12-01T02:00:00Z`): fixed width,
so string order is time order in the alert log, the promotion log and the store's own state.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Iterator, Protocol

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware, in UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class SimulatedClock:
    """A clock that stands still until told to move: `set(moment)` or `advance(timedelta)`. Thread-safe."""

    def __init__(self, start: datetime | str) -> None:
        self._moment = parse(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._moment

    def set(self, moment: datetime | str) -> None:
        with self._lock:
            self._moment = parse(moment)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._moment = self._moment + delta


_clock: Clock = SystemClock()


def now() -> datetime:
    return _clock.now()


def today() -> date:
    return _clock.now().date()


def stamp(moment: datetime | str | None = None) -> str:
    """`moment` (default: now) as UTC text to the second, `YYYY-MM-DDTHH:MM:SSZ`."""
    return parse(now() if moment is None else moment).strftime(STAMP_FORMAT)


def parse(moment: datetime | date | str) -> datetime:
    """A timezone-aware UTC datetime from a datetime, a date (its midnight) or ISO text. A moment without a
    timezone is taken as UTC, which is how every moment shelfcast writes is meant."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.strip())
    elif isinstance(moment, date) and not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def set_clock(clock: Clock) -> Clock:
    """Install `clock` for the whole process; returns the one it replaces."""
    global _clock
    previous, _clock = _clock, clock
    return previous


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)
