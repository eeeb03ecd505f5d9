"""The decoded event: what every input format turns its records into."""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """One occurrence on one device, at one event time, with a weight.

    ``rule`` is the id of the range rule it counts toward (0: none), ``unauthorized`` says it also
    counts toward ``UnauthorizedOperationsNotInAllowedRange``, ``allow`` is the id of the allow-list
    rule that checks ``value`` (0: none). ``pos`` is the position of its record in the stream
    (a byte offset for files). ``late`` is set by the evaluator.
    """

    __slots__ = (
        "allow",
        "device",
        "host_timed",
        "late",
        "name",
        "pos",
        "rule",
        "time",
        "unauthorized",
        "value",
        "weight",
    )

    def __init__(
        self,
        time: int,
        device: str,
        name: str,
        rule: int = 0,
        unauthorized: bool = False,
        allow: int = 0,
        value: str | None = None,
        weight: int = 1,
        host_timed: bool = False,
        pos: int = 0,
    ) -> None:
        self.time = time
        self.device = device
        self.name = name
        self.rule = rule
        self.unauthorized = unauthorized
        self.allow = allow
        self.value = value
        self.weight = weight
        self.host_timed = host_timed
        self.pos = pos
        self.late = False

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Event({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Bad:
    """A record (or part of one) that was quarantined: where, why, and its raw bytes."""

    pos: int
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class ConsoleLine:
    """A line of console text that a board printed between frames."""

    pos: int
    text: str


MAX_RAW = 64 * 1024  # quarantine keeps at most this much of a bad record
MAX_LINE = 1024 * 1024  # a longer line is quarantined, not parsed
