"""The decoded event: what every input format turns its records into."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple


class Event(NamedTuple):
    """One occurrence on one device, at one event time, with a weight.

    ``rule`` is the id of the range rule it counts toward (0: none), ``unauthorized`` says it also
    counts toward ``UnauthorizedOperationsNotInAllowedRange``, ``allow`` is the id of the
    allow-list rule that checks ``value`` (0: none). ``pos`` is the position of its record in the
    stream (a byte offset for files). A tuple, because millions are made and read per minute.
    """

    time: int
    device: str
    name: str
    rule: int = 0
    unauthorized: bool = False
    allow: int = 0
    value: str | None = None
    weight: int = 1
    host_timed: bool = False
    pos: int = 0


# Decoders build events with ``new_event((time, device, ...))``: all ten fields, in order,
# without the keyword handling of ``Event(...)``.
new_event = partial(tuple.__new__, Event)


@dataclass(frozen=True, slots=True)
class Bad:
    """A record (or part of one) that was quarantined: where, why, and its raw bytes.

    ``part`` says which part of the record at ``pos`` it was (the element of a ``records``
    batch, the event of a message, the record of an Avro block); None: the record as a whole.
    It is never in ``reason``, so that reasons group by cause.
    """

    pos: int
    reason: str
    raw: bytes
    part: int | None = None


class HubRecord(NamedTuple):
    """A resource-log record that has no device by design (``Routes``, ``JobsOperations``, …):
    valid, stored, counted toward no rule. ``result`` is its ``resultType`` (None if empty)."""

    pos: int
    time: int
    category: str
    operation: str
    result: str | None
    raw: bytes


@dataclass(slots=True)
class ConsoleLine:
    """A line of console text that a board printed between frames.

    ``time`` (µs) is the host's receive time and ``event`` what a console pattern made of the
    line (``"d2c mqtt"``, ``"method"`` …; None: no pattern matched). The stream that decodes the
    line fills both in; equality looks at ``pos`` and ``text`` only.
    """

    pos: int
    text: str
    time: int = field(default=0, compare=False)
    event: str | None = field(default=None, compare=False)


MAX_RAW = 64 * 1024  # quarantine keeps at most this much of a bad record
MAX_LINE = 1024 * 1024  # a longer line is quarantined, not parsed
