"""Issue periods: seven days closing at `[newsletter] issue_closes`, named by ISO week."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from newsletter.config import NewsletterSettings
from newsletter.errors import UsageError

_WEEK = re.compile(r"^(\d{4})-?W(\d{2})$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Week:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Week:
        match = _WEEK.match(text.strip())
        if not match:
            raise UsageError(f"{text!r} is not an ISO week", hint="write it as 2024-W47")
        year, number = int(match[1]), int(match[2])
        try:
            date.fromisocalendar(year, number, 1)
        except ValueError:
            raise UsageError(f"{text!r}: {year} has no week {number}") from None
        return cls(year, number)

    @classmethod
    def containing(cls, moment: datetime, zone: ZoneInfo) -> Week:
        local = moment.astimezone(zone).date()
        iso = local.isocalendar()
        return cls(iso.year, iso.week)

    def __str__(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """Monday 00:00 to the next Monday 00:00 local time, as UTC instants."""
        start = datetime.combine(self.monday, time(0), tzinfo=zone)
        end = datetime.combine(self.monday + timedelta(days=7), time(0), tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def label(self) -> str:
        """A reader-facing label such as 'Week of 18 November 2024'."""
        monday = self.monday
        return f"Week of {monday.day} {monday:%B %Y}"

    def previous(self) -> Week:
        iso = (self.monday - timedelta(days=7)).isocalendar()
        return Week(iso.year, iso.week)

    def next(self) -> Week:
        iso = (self.monday + timedelta(days=7)).isocalendar()
        return Week(iso.year, iso.week)


_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Periods:
    """Seven-day periods that tile time, each closing at the same weekday and local time.

    An issue is named by the ISO week its period ends in: the week of the last instant
    before the close. With the default close, Monday 00:00, each period is exactly its ISO
    week, which is what issues stored before periods existed mean.
    """

    weekday: int  # 0 is Monday
    at: time
    zone: ZoneInfo

    @classmethod
    def of(cls, settings: NewsletterSettings) -> Periods:
        weekday, at = settings.closes
        return cls(weekday, at, settings.zone)

    def close(self, week: Week) -> datetime:
        """The instant the issue's period closes, in UTC."""
        day = week.monday + timedelta(days=self.weekday)
        local = datetime.combine(day, self.at, tzinfo=self.zone)
        if Week.containing(local - _JUST_BEFORE, self.zone) != week:
            # A close at midnight on Monday ends the period on the Sunday before it.
            local = datetime.combine(day + timedelta(days=7), self.at, tzinfo=self.zone)
        return local.astimezone(UTC)

    def bounds(self, week: Week) -> tuple[datetime, datetime]:
        """From the previous issue's close (included) to this one's (excluded), in UTC."""
        return self.close(week.previous()), self.close(week)

    def containing(self, moment: datetime) -> Week:
        """The issue whose period holds this instant."""
        week = Week.containing(moment, self.zone)
        return week if moment < self.close(week) else week.next()

    def last_closed(self, now: datetime) -> Week:
        return self.containing(now).previous()
