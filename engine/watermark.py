"""Per-stream late detection and the watermark across streams (SPEC §4).

An event is late when its time is earlier than the latest time its stream has seen minus
``lateness``. A window is complete once every stream that holds the watermark has seen an event
at or after ``window end + lateness``.
"""

from __future__ import annotations


class StreamClock:
    """The time state of one stream."""

    __slots__ = ("events", "holding", "late", "latest", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.latest: int | None = None  # latest event time seen
        self.holding = True  # holds the watermark (unfinished replay input, backlog being read)
        self.events = 0
        self.late = 0


class Watermark:
    """The streams of a session and the point before which no non-late event can still arrive."""

    def __init__(self, lateness: int) -> None:
        self.lateness = lateness  # µs
        self.streams: list[StreamClock] = []

    def add(self, name: str) -> StreamClock:
        clock = StreamClock(name)
        self.streams.append(clock)
        return clock

    def value(self, wall: int | None = None) -> int | None:
        """The watermark in µs, or None while a holding stream has seen nothing.

        With no holding stream the watermark is ``wall - lateness`` (live) or None (replay: the
        end of input decides). ``wall`` caps it in a live session.
        """
        low: int | None = None
        for s in self.streams:
            if s.holding:
                if s.latest is None:
                    return None
                if low is None or s.latest < low:
                    low = s.latest
        if wall is not None:
            low = wall if low is None else min(low, wall)
        return None if low is None else low - self.lateness
