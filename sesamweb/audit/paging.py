"""Seek pagination of the audit log: pages are cut on `sequence` (WHERE sequence < cursor
ORDER BY sequence DESC LIMIT n+1), never with OFFSET, and the number of matching events is
counted only up to a bound. A page is a handful of index lookups whether the log holds a
hundred events or a million, and the deep pages cost what the first does.

    ?before=<sequence>  older events than that one (the "Older" link)
    ?after=<sequence>   newer events than that one (the "Newer" link; after=0: the oldest page)
"""
from dataclasses import dataclass, field

from sesamweb.identifiers import parse_id

COUNT_LIMIT = 10_000  # "10,000+ events" beyond this: counting a million rows per page is what we avoid


@dataclass
class SeekPage:
    events: list = field(default_factory=list)
    older: int | None = None  # ?before= of the next older page
    newer: int | None = None  # ?after= of the next newer page
    count: int = 0  # matching events, up to COUNT_LIMIT
    count_capped: bool = False

    @property
    def first_sequence(self):
        return self.events[0].sequence if self.events else None

    @property
    def last_sequence(self):
        return self.events[-1].sequence if self.events else None

    def __iter__(self):
        return iter(self.events)

    def __len__(self):
        return len(self.events)


def cursor(value) -> int | None:
    """A cursor from the query string; None for anything that is not a sequence number."""
    return parse_id(value) if value not in (None, "") else None


def bounded_count(queryset, limit=COUNT_LIMIT) -> tuple[int, bool]:
    """(count, capped): SELECT COUNT(*) FROM (SELECT sequence ... LIMIT limit+1): at most
    limit+1 index entries are read (an index-only scan when the filter's index covers it)."""
    count = queryset.order_by().values("sequence")[: limit + 1].count()
    return min(count, limit), count > limit


def seek_page(queryset, *, before=None, after=None, size=50, count=True) -> SeekPage:
    """The page of `queryset` (newest first) just older than `before`, or just newer than
    `after`, or the newest page."""
    if after is not None and before is None:
        rows = list(queryset.filter(sequence__gt=after).order_by("sequence")[: size + 1])
        more_newer = len(rows) > size
        events = list(reversed(rows[:size]))
        page = SeekPage(events)
        page.newer = events[0].sequence if more_newer and events else None
        if events:
            page.older = events[-1].sequence if queryset.filter(sequence__lt=events[-1].sequence).exists() else None
    else:
        rows = queryset
        if before is not None:
            rows = rows.filter(sequence__lt=before)
        rows = list(rows.order_by("-sequence")[: size + 1])
        events = rows[:size]
        page = SeekPage(events)
        page.older = events[-1].sequence if len(rows) > size else None
        if before is not None and events:
            page.newer = events[0].sequence if queryset.filter(sequence__gt=events[0].sequence).exists() else None
    if count:
        page.count, page.count_capped = bounded_count(queryset)
    return page
