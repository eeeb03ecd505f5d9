"""Streams, the clocks of their devices, and when a data source's windows are complete (SPEC §4).

Every device keeps its own clock within a stream: an event is expired when it is earlier than the
latest time the same stream has shown *for the same device* minus ``horizon``. A window of a data
source (IoT Hub or Agent) is complete once every stream feeding that data source has seen an event
at or after ``window end + lateness``, with the lateness of the stream's source.
"""

from __future__ import annotations

from engine.catalogue import AGENT, HUB

DATA_SOURCES = (HUB, AGENT)

# The data sources a stream of each format can carry.
FEEDS: dict[str, tuple[str, ...]] = {
    "hub-log": (HUB,),
    "hub-events": (HUB,),
    "hub-messages": (HUB, AGENT),
    "security-messages": (AGENT,),
    "serial": (AGENT,),
}


def feeds_of(fmt: str | None, hub_lines: bool = False) -> tuple[str, ...]:
    """The data sources a stream of format ``fmt`` feeds; none while its format is unknown. A
    serial stream whose console patterns make IoT Hub events (``hub_lines``) feeds both."""
    if fmt == "serial" and hub_lines:
        return (HUB, AGENT)
    return FEEDS.get(fmt or "", ())


class StreamClock:
    """The time state of one stream: its latest event time, and each device's."""

    __slots__ = ("devices", "events", "expired", "feeds", "holding", "lateness", "latest", "name")

    def __init__(self, name: str, feeds: tuple[str, ...] = (), lateness: int | None = None) -> None:
        self.name = name
        self.feeds = feeds  # data sources; () while the format is not known yet
        self.lateness = lateness  # µs, of the stream's source; None: the engine's
        self.latest: int | None = None  # latest event time seen
        self.devices: dict[str, int] = {}  # latest event time seen per device
        self.holding = True  # holds its data sources (unfinished replay input, backlog being read)
        self.events = 0
        self.expired = 0

    def holds(self, source: str) -> bool:
        """Whether this stream holds the windows of ``source`` back."""
        return self.holding and (source in self.feeds or not self.feeds)


class Watermark:
    """The streams of a session and, per data source, the point before which every window is
    complete."""

    def __init__(self, lateness: int = 0) -> None:
        self.lateness = lateness  # µs: ``[engine] lateness``, for streams without their own
        self.streams: list[StreamClock] = []
        # Live: data source -> the largest lateness of the configured sources feeding it (µs).
        # A data source that no configured source feeds is never completed by the wall clock.
        self.wall_lateness: dict[str, int] = {}

    def add(
        self, name: str, feeds: tuple[str, ...] = (), lateness: int | None = None
    ) -> StreamClock:
        clock = StreamClock(name, feeds, lateness)
        self.streams.append(clock)
        return clock

    def mark(self, source: str, wall: int | None = None) -> int | None:
        """The time (µs) up to which windows of ``source`` are complete, or None when nothing is.

        Holding streams feeding ``source`` bound it by ``latest - lateness``; a holding stream
        that has seen nothing holds everything. In a live session (``wall`` given) the wall clock
        bounds it by ``wall - lateness`` when a configured source feeds ``source``. Without
        ``wall`` and without a holding stream it is None: the end of a replay decides.
        """
        low: int | None = None
        for s in self.streams:
            if s.holds(source):
                if s.latest is None:
                    return None
                m = s.latest - (self.lateness if s.lateness is None else s.lateness)
                if low is None or m < low:
                    low = m
        if wall is not None:
            lateness = self.wall_lateness.get(source)
            if lateness is None:
                return low
            m = wall - lateness
            low = m if low is None or m < low else low
        return low

    def last(self, source: str) -> int | None:
        """``T_last(source)``: the latest event time of the streams feeding ``source``."""
        times = [s.latest for s in self.streams if source in s.feeds and s.latest is not None]
        return max(times) if times else None
