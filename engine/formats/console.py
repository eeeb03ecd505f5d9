"""Console line patterns: what a board prints on its UART, turned into hub events.

An Azure RTOS board running the getting-started firmware says on its console what it did —
``Telemetry message sent: {...}.``, ``Receive direct method: setLedState``, ``SUCCESS: Connected
to IoT Hub`` — and IoT Hub logs most of that traffic only when it fails. A console pattern is a
regular expression that turns such a line into an event, as a ``hub-events`` record would: an
``op`` (``d2c``, ``c2d``, ``c2d-reject``, ``method``, ``upload``, ``purge``, ``twin-update``), a
protocol for the message ops, and named groups for what the line itself says: ``device``,
``count`` (the weight), ``time``, ``protocol``, ``status`` (401/401xxx: unauthorized). A message
whose pattern and line name no protocol takes the protocol of the device's latest connection
(``catalogue.D2C_UNKNOWN`` …, resolved by the evaluator). Three more
ops record what is not counted: ``connect`` (an event of rule ``catalogue.CONNECT`` whose value is
the protocol), ``disconnect`` (an event that counts toward nothing) and ``device`` (the line names
the board's device id: the stream's console events go to it from then on; no event).

Patterns are anchored at the start of the line (``re.match``): the first that matches wins, the
user's before the built-in ones. They are combined into as few alternations as possible, so a
line costs one regular-expression match whatever the number of patterns; a user pattern that
cannot be combined (a global inline flag, a numbered back-reference) is matched on its own, in
its place in the order.

:data:`BUILTIN` holds the patterns for the getting-started firmware (azure-rtos/getting-started,
now eclipse-threadx/getting-started); docs/formats.md lists them with the line each matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from engine import catalogue as c
from engine.event import Event, new_event
from engine.formats.common import BadRecord, fold_protocol, is_unauthorized, weight_of
from engine.timestamps import US, parse_time

MESSAGE_OPS = {"d2c": c.D2C, "c2d": c.C2D, "c2d-reject": c.C2D_REJECTED}
# A message whose line names no protocol takes the device's latest connection's (SPEC §2).
UNKNOWN_PROTOCOL = {"d2c": c.D2C_UNKNOWN, "c2d": c.C2D_UNKNOWN, "c2d-reject": c.C2D_REJECT_UNKNOWN}
COUNTED_OPS = {
    "method": c.DIRECT_METHODS,
    "upload": c.FILE_UPLOADS,
    "purge": c.QUEUE_PURGES,
    "twin-update": c.TWIN_UPDATES,
}
OPS = (*MESSAGE_OPS, *COUNTED_OPS, "connect", "disconnect", "device")
GROUPS = ("device", "count", "time", "protocol", "status")
UNIX = "unix"  # ``time_format`` for Unix seconds (a fraction allowed)

# The same plausibility rule as a frame's board time (SPEC §2 serial).
EARLIEST_BOARD_TIME = parse_time("2020-01-01T00:00:00Z")
BOARD_AHEAD_LIMIT = 5 * 60 * US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Numbered references do not survive being combined with other patterns (group numbers move).
_NUMBERED = re.compile(r"\\[1-9]|\\g<|\(\?\(")


class PatternError(ValueError):
    """A pattern that cannot be used: ``key`` is its offending key (``match``, ``op`` …)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConsolePattern:
    """One pattern: a regular expression (matched at the start of a line) and what a line it
    matches becomes. ``protocol`` is folded; ``time_format`` reads the ``time`` group (a
    ``strptime`` format, or ``unix``; default RFC 3339). Built-in patterns carry an ``example``
    line and the firmware ``source`` that prints it, for the docs and the tests."""

    match: str
    op: str
    protocol: str | None = None
    time_format: str | None = None
    example: str = field(default="", compare=False)
    source: str = field(default="", compare=False)


def check(pattern: ConsolePattern) -> re.Pattern[str]:
    """The compiled regular expression of ``pattern``; PatternError says what is wrong."""
    if not isinstance(pattern.match, str) or not pattern.match:
        raise PatternError("match", "must be a non-empty regular expression")
    try:
        regex = re.compile(pattern.match)
    except re.error as exc:
        raise PatternError("match", f"bad regular expression: {exc}") from None
    except (RecursionError, OverflowError, ValueError) as exc:  # absurd nesting or repeats
        raise PatternError("match", f"bad regular expression: {type(exc).__name__}") from None
    for name in regex.groupindex:
        if name not in GROUPS:
            raise PatternError(
                "match",
                f"unknown group name {name!r} (named groups: {', '.join(GROUPS)})",
            )
    groups = regex.groupindex
    if pattern.op not in OPS:
        raise PatternError("op", f"unknown op {pattern.op!r} (one of {', '.join(OPS)})")
    if pattern.op == "device" and "device" not in groups:
        raise PatternError("match", "a device pattern needs a (?P<device>...) group")
    if pattern.time_format is not None and "time" not in groups:
        raise PatternError("time_format", "there is no (?P<time>...) group to read")
    return regex


def fold(protocol: str) -> str:
    """A pattern's protocol, folded; PatternError when it is none of amqp, mqtt, http."""
    folded = fold_protocol(protocol)
    if folded is None:
        raise PatternError("protocol", f"unknown protocol {protocol!r} (amqp, mqtt or http)")
    return folded


# -- the getting-started firmware -----------------------------------------------------------------

_NX = "core/src/azure_iot_nx/azure_iot_nx_client.c"
_SHARED = "shared/src/azure_iot_nx_client.c"
_LEGACY = "shared/src/azure_iot_mqtt/azure_iot_mqtt.c"
_LEGACY_APP = "<board>/app/legacy/mqtt.c"

# The NetX Duo Azure IoT middleware and the legacy MQTT client both speak MQTT (port 8883) only.
BUILTIN_PATTERNS: tuple[ConsolePattern, ...] = (
    ConsolePattern(
        r"Telemetry message sent: ",
        "d2c",
        "mqtt",
        example='Telemetry message sent: {"humidity":31.01,"temperature":25.62,"pressure":927.3}.',
        source=f"{_NX}, {_SHARED}",
    ),
    ConsolePattern(
        r"Sending telemetry with float value",
        "d2c",
        "mqtt",
        example="Sending telemetry with float value",
        source=_LEGACY,
    ),
    ConsolePattern(
        r"Receive direct method: ",
        "method",
        example="Receive direct method: setLedState",
        source=f"{_NX} (to 2021-09)",
    ),
    ConsolePattern(
        r"Received command: ",
        "method",
        example="Received command: setLedState",
        source=f"{_NX} (from 2021-09), {_SHARED}",
    ),
    ConsolePattern(
        r"Received direct method=",
        "method",
        example="Received direct method=setLedState, rid=1, message=true",
        source=_LEGACY,
    ),
    ConsolePattern(
        r"Device twin (?:property sent|writeable property sent|writeable property response): ",
        "twin-update",
        example='Device twin property sent: {"ledState":true}',
        source=f"{_NX} (to 2021-09)",
    ),
    ConsolePattern(
        r"Sending (?:writable )?property: ",
        "twin-update",
        example=(
            'Sending property: $iothub/twin/PATCH/properties/reported/?$rid=5{"ledState":false}'
        ),
        source=f"{_NX} (from 2021-09), {_SHARED}",
    ),
    ConsolePattern(
        r"(?:Sending device twin update with (?:float|bool) value"
        r"|Reporting writeable property |Responding to writeable property )",
        "twin-update",
        example="Sending device twin update with bool value",
        source=_LEGACY,
    ),
    # A desired-property update from the service. The whole twin document the board fetches at
    # start-up ({"desired": …, "reported": …}) is a read, not an update.
    ConsolePattern(
        r'Receive properties: (?!\{"desired")',
        "twin-update",
        example='Receive properties: {"telemetryInterval":5,"$version":7}',
        source=_SHARED,
    ),
    ConsolePattern(
        r"Receive (?:writable properties|twin writeable property): ",
        "twin-update",
        example='Receive writable properties: {"telemetryInterval":5,"$version":7}',
        source=_NX,
    ),
    ConsolePattern(
        r"Received device twin desired property",
        "twin-update",
        example="Received device twin desired property",
        source=_LEGACY,
    ),
    ConsolePattern(
        r"(?:Received C2D message"
        r"|No callback is registered for MQTT cloud to device message processing)",
        "c2d",
        "mqtt",
        example="Received C2D message, properties='', message='hello'",
        source=f"{_LEGACY_APP}, {_LEGACY}",
    ),
    ConsolePattern(
        r"(?:SUCCESS: )?Connected to IoT Hub|SUCCESS: MQTT Hub client initialized",
        "connect",
        "mqtt",
        example="SUCCESS: Connected to IoT Hub",
        source=f"shared/src/azure_iot_connect.c, {_NX}, {_LEGACY}",
    ),
    ConsolePattern(
        r"(?:Disconnected from IoT Hub|Reconnecting to IoT Hub|Connection failure from IoT Hub"
        r"|ERROR: MQTT disconnected)",
        "disconnect",
        "mqtt",
        example="Disconnected from IoT Hub",
        source=f"{_SHARED}, {_NX}, {_LEGACY}",
    ),
    ConsolePattern(
        r"\s*Device id: (?P<device>\S+)",
        "device",
        example="\tDevice id: mydevice",
        source=f"shared/src/azure_iot_connect.c, {_NX}, {_LEGACY}",
    ),
)


# -- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled pattern: the names its groups have in the expression it is matched with
    (``_K_NAME`` when combined with others), and the rule it counts toward."""

    pattern: ConsolePattern
    rule: int  # for ops that do not depend on the protocol; message ops look it up
    device: str | None
    count: str | None
    time: str | None
    protocol: str | None
    status: str | None

    def event(self, m: re.Match[str], pos: int, host_time: int, fallback: str | None) -> Event:
        """The event of a matched line; BadRecord when what the line says cannot be used."""
        p = self.pattern
        device = m.group(self.device) if self.device else None
        if not device:
            device = fallback
            if not device:
                raise BadRecord("missing device")
        weight = 1
        if self.count:
            text = m.group(self.count)
            weight = 1 if text is None else weight_of(text, "count")
        time, host_timed = host_time, True
        if self.time:
            stamp = m.group(self.time)
            board = _board_time(stamp, p.time_format, host_time) if stamp else None
            if board is not None:
                time, host_timed = board, False
        protocol = p.protocol
        if self.protocol:
            text = m.group(self.protocol)
            if text:
                protocol = fold_protocol(text)
                if protocol is None:
                    raise BadRecord("unknown protocol")
        op = p.op
        rule = self.rule
        if op in MESSAGE_OPS:
            rule = MESSAGE_OPS[op][protocol] if protocol else UNKNOWN_PROTOCOL[op]
        elif op == "connect" and protocol is None:
            rule = 0  # a connection that names no protocol only makes the device known
        unauthorized = bool(self.status) and is_unauthorized(m.group(self.status))
        return new_event(
            (time, device, op, rule, unauthorized, 0, protocol, weight, host_timed, pos)
        )


def _board_time(stamp: str, fmt: str | None, host_time: int) -> int | None:
    """The time a line states, or None when it is unreadable or implausible (then the host's
    receive time stands in, as for a frame's board time)."""
    try:
        if fmt is None:
            t = parse_time(stamp)
        elif fmt == UNIX:
            t = round(float(stamp) * US)
        else:
            d = datetime.strptime(stamp, fmt)
            if d.tzinfo is None:
                d = d.replace(tzinfo=UTC)
            delta = d - _EPOCH
            t = (delta.days * 86400 + delta.seconds) * US + delta.microseconds
    except (ValueError, OverflowError):
        return None
    if t < EARLIEST_BOARD_TIME or t > host_time + BOARD_AHEAD_LIMIT:
        return None
    return t


def _rename_groups(src: str, prefix: str) -> str | None:
    """``src`` with every named group ``NAME`` (and ``(?P=NAME)``) renamed ``PREFIX+NAME``, or
    None when it cannot be combined with other patterns (numbered references)."""
    if _NUMBERED.search(src):
        return None
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch == "\\":
            out.append(src[i : i + 2])
            i += 2
        elif ch == "[":  # a set: up to its first unescaped "]" that is not its first member
            j = i + 1
            if j < n and src[j] == "^":
                j += 1
            if j < n and src[j] == "]":
                j += 1
            while j < n and src[j] != "]":
                j += 2 if src[j] == "\\" else 1
            out.append(src[i : j + 1])
            i = j + 1
        elif src.startswith("(?P<", i) or src.startswith("(?P=", i):
            end = src.find(">" if src[i + 3] == "<" else ")", i + 4)
            if end < 0:
                return None
            out.append(src[i : i + 4] + prefix + src[i + 4 : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class ConsolePatterns:
    """A compiled, ordered set of console patterns (``user`` first, then ``builtin``)."""

    def __init__(
        self,
        user: Sequence[ConsolePattern] = (),
        builtin: Sequence[ConsolePattern] = BUILTIN_PATTERNS,
    ) -> None:
        self.patterns = (*user, *builtin)
        # Runs of patterns: a combined expression with its alternatives by group name, or one
        # pattern matched alone.
        self._runs: list[tuple[re.Pattern[str], dict[str, Compiled] | Compiled]] = []
        run: list[tuple[str, Compiled]] = []
        for k, pattern in enumerate(self.patterns):
            regex = check(pattern)
            prefix = f"_{k}_"
            renamed = _rename_groups(pattern.match, prefix)
            if renamed is not None and not _same_groups(regex, renamed, prefix):
                renamed = None
            if renamed is None:
                if run:
                    self._runs.append(_combine(run))
                    run = []
                self._runs.append((regex, _alt(pattern, "")))
            else:
                run.append((f"(?P<_{k}>{renamed})", _alt(pattern, prefix)))
        if run:
            self._runs.append(_combine(run))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    @property
    def hub(self) -> bool:
        """Whether these patterns can make events that IoT Hub rules count."""
        return any(p.op in MESSAGE_OPS or p.op in COUNTED_OPS for p in self.patterns)

    def match(self, text: str) -> tuple[Compiled, re.Match[str]] | None:
        """The first pattern that matches ``text`` at its start, with its match."""
        for regex, alts in self._runs:
            m = regex.match(text)
            if m is not None:
                if isinstance(alts, dict):
                    return alts[m.lastgroup], m  # type: ignore[index]
                return alts, m
        return None


def _same_groups(regex: re.Pattern[str], renamed: str, prefix: str) -> bool:
    """Whether ``renamed`` is ``regex`` with its groups renamed and nothing else changed, and
    can stand as an alternative of a larger expression."""
    try:
        other = re.compile(renamed)
        re.compile(f"(?P<_x>{renamed})|x")
    except (re.error, RecursionError, OverflowError, ValueError):
        return False
    expected = {prefix + name: index for name, index in regex.groupindex.items()}
    return (
        other.groups == regex.groups
        and dict(other.groupindex) == expected
        and other.flags == regex.flags
    )


def _alt(pattern: ConsolePattern, prefix: str) -> Compiled:
    names = re.compile(pattern.match).groupindex

    def group(name: str) -> str | None:
        return prefix + name if name in names else None

    return Compiled(
        pattern,
        COUNTED_OPS.get(pattern.op, c.CONNECT if pattern.op == "connect" else 0),
        group("device"),
        group("count"),
        group("time"),
        group("protocol"),
        group("status"),
    )


def _combine(
    run: list[tuple[str, Compiled]],
) -> tuple[re.Pattern[str], dict[str, Compiled] | Compiled]:
    """One expression for a run of patterns: the alternative that matched is ``lastgroup``,
    the outermost group, which closes last."""
    regex = re.compile("|".join(src for src, _ in run))
    alts = {}
    for src, alt in run:
        alts[src[4 : src.index(">")]] = alt
    return regex, alts


BUILTIN = ConsolePatterns()
NONE = ConsolePatterns((), ())


def mark_of(patterns: ConsolePatterns | None, text: str) -> str | None:
    """What a stream would mark ``text`` with (see :func:`mark`), whatever its device: for
    lines read back from the database, whose marks were not kept."""
    hit = patterns.match(text) if patterns is not None else None
    if hit is None:
        return None
    alt, m = hit
    if alt.pattern.op == "device":
        device = m.group(alt.device)
        return f"device {device}" if device else None
    try:
        return mark(alt.event(m, 0, 0, "-"))
    except Exception:  # what the stream quarantined: its reason is in the quarantine
        return None


def mark(event: Event) -> str:
    """What the console shows beside a line a pattern made ``event`` of: ``d2c mqtt``,
    ``method``, ``twin-update ×3``, ``connect mqtt``."""
    text = event.name if event.value is None else f"{event.name} {event.value}"
    return text if event.weight == 1 else f"{text} ×{event.weight}"
