"""The TOML configuration (SPEC §3): engine timing, database, sources, security groups, device map.

Validation refuses anything doubtful with a :class:`ConfigError` naming the file, the dotted key and
the reason; unknown keys are refused too, so that a typo is never silently ignored.

Defaults where SPEC §3 is silent:

- ``[engine]``: ``lateness`` PT1M (from PT0S to P7D), ``horizon`` P1D (from PT1M to P30D, at
  least every ``lateness`` of the file), ``quiet`` PT1H (from PT1S to P365D); ``hub`` absent →
  ``Config.hub`` is None (exports leave ``ResourceId`` empty), else the IoT hub's Azure resource id.
- ``[database]``: ``path`` absent → ``Config.db_path`` is None (the caller picks a location).
- Relative ``path`` values (sources and database) are relative to the configuration file's folder;
  a leading ``~`` is expanded.
- A range rule: ``enabled`` true, ``min`` 0, ``window`` PT15M (Azure's default); ``max`` is required
  unless the rule is disabled (a disabled rule without ``max`` gets ``max = min``). Thresholds are
  integers from 0 to 2147483647 (Azure's int32), ``min`` ≤ ``max``.
- An allow-list rule: ``enabled`` true, ``allow`` empty (every value is a violation).
- ``severity``: ``Low`` unless set to ``Low``, ``Medium``, ``High`` or ``Informational``
  (case-insensitive, stored in this spelling).
- A group table may be empty (``[groups.lab]``): the group exists with every rule disabled.
- Sources: ``path`` only on file sources; ``port``, ``baudrate`` (default 115200) and ``device``
  only on serial sources; ``lateness`` on any source (default ``[engine] lateness``). ``SourceConfig.format`` is the decoder of the stream: ``type`` for file
  sources, None for serial ones.
- ``[devices]``: a key containing ``*``, ``?`` or ``[`` is a glob pattern, any other key is an exact
  (case-sensitive) device id; the values are group names, compared case-insensitively.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.allowlist import Allowlist, validate_entry
from engine.catalogue import BY_ID, BY_NAME, RuleType
from engine.formats.console import (
    BUILTIN,
    BUILTIN_PATTERNS,
    UNIX,
    ConsolePattern,
    ConsolePatterns,
    PatternError,
    check,
    fold,
)
from engine.jsonline import UNSAFE
from engine.timestamps import format_duration, parse_duration

SEVERITIES = ("Low", "Medium", "High", "Informational")
SOURCE_TYPES = ("hub-log", "hub-events", "hub-messages", "security-messages", "serial")
FILE_SOURCE_TYPES = ("hub-log", "hub-events", "hub-messages", "security-messages")
DEFAULT_GROUP = "default"
DEFAULT_LATENESS = 60
DEFAULT_HORIZON = 86400
MIN_HORIZON = 60
MAX_HORIZON = 30 * 86400
DEFAULT_QUIET = 3600
DEFAULT_WINDOW = 900
DEFAULT_BAUDRATE = 115200
MIN_BAUDRATE = 50  # the slowest standard rate (termios B50)
MAX_BAUDRATE = 10_000_000  # well above the fastest USB-UART bridges (FTDI FT4232H: 12 Mbaud)
MIN_WINDOW = 60
MAX_WINDOW = 7 * 86400
MAX_LATENESS = 7 * 86400
MAX_QUIET = 365 * 86400
MAX_THRESHOLD = 2**31 - 1
RANGE_KEYS = ("enabled", "min", "max", "window", "severity")
ALLOW_KEYS = ("enabled", "allow", "severity")
_CACHE_SIZE = 65536
_GLOB_CHARS = frozenset("*?[")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# An IoT hub's Azure resource id. The fixed segments are matched case-insensitively, as Azure
# Resource Manager compares them; the three names are checked one by one for a precise reason.
_HUB_ID = re.compile(
    r"/subscriptions/([^/]*)/resourceGroups/([^/]*)/providers/Microsoft\.Devices/IotHubs/([^/]*)",
    re.IGNORECASE,
)
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_HUB_NAME = re.compile(r"[A-Za-z0-9-]{2,49}[A-Za-z0-9]")
# Characters a group name may not hold: controls, and what would reorder or hide it on a screen.
_NOT_IN_NAMES = frozenset(chr(c) for c in (*range(0x20), *UNSAFE))
# In messages, keys show those characters escaped: an error line goes to a terminal.
_ESCAPE = {c: f"\\u{c:04x}" for c in UNSAFE}
T = TypeVar("T")
Key = tuple[str | int, ...]


class ConfigError(Exception):
    """Invalid configuration: ``str(err)`` is the one line ``FILE: KEY: REASON``."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        line = f"{file}: {key}: {reason}"
        super().__init__(line.replace("\r\n", " ").replace("\n", " ").replace("\r", " "))


@dataclass(frozen=True, slots=True)
class RangeRule:
    """A range rule of a group: the count per ``window`` seconds must stay in ``[min, max]``."""

    rule: str
    enabled: bool
    min: int
    max: int
    window: int
    severity: str = "Low"

    @property
    def type(self) -> RuleType:
        return BY_NAME[self.rule]

    @property
    def id(self) -> int:
        return BY_NAME[self.rule].id


@dataclass(frozen=True, slots=True)
class AllowRule:
    """An allow-list rule of a group; :attr:`matcher` is its compiled :class:`Allowlist`.

    Raises ValueError when an entry of ``values`` is invalid.
    """

    rule: str
    enabled: bool
    values: tuple[str, ...]
    severity: str = "Low"
    matcher: Allowlist = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "matcher", Allowlist(BY_NAME[self.rule].id, self.values))

    @property
    def type(self) -> RuleType:
        return BY_NAME[self.rule]

    @property
    def id(self) -> int:
        return BY_NAME[self.rule].id

    def allows(self, value: str) -> bool:
        """Whether ``value`` is on this rule's allow-list."""
        return self.matcher.allows(value)


def _rule_name(rule: str | int) -> str:
    return BY_ID[rule].name if isinstance(rule, int) else rule


@dataclass(frozen=True, slots=True)
class Group:
    """A device security group: its rules by ruleType name; a rule absent from it is disabled."""

    name: str
    range_rules: dict[str, RangeRule] = field(default_factory=dict)
    allow_rules: dict[str, AllowRule] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The case-insensitive identity of the group: its lower-cased name."""
        return self.name.lower()

    def range_rule(self, rule: str | int) -> RangeRule | None:
        """The range rule ``rule`` (name or id) when it is enabled in this group, else None."""
        found = self.range_rules.get(_rule_name(rule))
        return found if found is not None and found.enabled else None

    def allow_rule(self, rule: str | int) -> AllowRule | None:
        """The allow-list rule ``rule`` (name or id) when it is enabled in this group, else None."""
        found = self.allow_rules.get(_rule_name(rule))
        return found if found is not None and found.enabled else None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One ``[[sources]]`` entry."""

    type: str
    path: str | None = None
    port: str | None = None
    baudrate: int = DEFAULT_BAUDRATE
    device: str | None = None
    format: str | None = None
    lateness: int | None = None  # seconds; None: ``[engine] lateness``
    # Serial sources: console patterns of their own (tried first), whether the built-in ones
    # follow, and for a glob ``port`` the devices of the boards it finds (port glob → device).
    patterns: tuple[ConsolePattern, ...] = ()
    builtin_patterns: bool = True
    boards: tuple[tuple[str, str], ...] = ()

    @property
    def is_glob(self) -> bool:
        """Whether ``port`` is a glob that may find several boards (a URL never is)."""
        return is_port_glob(self.port)

    def console_patterns(self) -> ConsolePatterns | None:
        """The compiled console patterns of this serial source (None: it has none)."""
        return compile_patterns(self.patterns, self.builtin_patterns)


def is_port_glob(port: str | None) -> bool:
    """Whether a serial ``port`` is a glob: a path holding ``*``, ``?`` or ``[``."""
    return port is not None and "://" not in port and bool(_GLOB_CHARS.intersection(port))


def compile_patterns(
    user: tuple[ConsolePattern, ...], builtin: bool = True
) -> ConsolePatterns | None:
    """The compiled set of ``user`` patterns followed by the built-in ones (when ``builtin``),
    cached: every source and capture with the same patterns shares one."""
    key = (user, builtin)
    found = _PATTERN_CACHE.get(key)
    if found is None:
        if not user and builtin:
            found = BUILTIN
        else:
            found = ConsolePatterns(user, BUILTIN_PATTERNS if builtin else ())
        _PATTERN_CACHE[key] = found
    return found if found else None


_PATTERN_CACHE: dict[tuple[tuple[ConsolePattern, ...], bool], ConsolePatterns] = {}


@dataclass(frozen=True, slots=True)
class DeviceMap:
    """Device id → group key: an exact id first, then the glob patterns in file order, else default.

    Group names are stored lower-cased; ``patterns`` keep their file order.
    """

    exact: dict[str, str] = field(default_factory=dict)
    patterns: tuple[tuple[str, str], ...] = ()
    default: str = DEFAULT_GROUP
    declared: frozenset[str] = field(init=False, compare=False)
    _cache: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exact", {d: g.lower() for d, g in self.exact.items()})
        object.__setattr__(self, "patterns", tuple((p, g.lower()) for p, g in self.patterns))
        object.__setattr__(self, "default", self.default.lower())
        object.__setattr__(self, "declared", frozenset(self.exact))
        object.__setattr__(self, "_cache", {})

    def group_of(self, device: str) -> str:
        """The lower-cased name of the group ``device`` belongs to."""
        group = self._cache.get(device)
        if group is None:
            group = self.exact.get(device)
            if group is None:
                group = next(
                    (g for p, g in self.patterns if fnmatch.fnmatchcase(device, p)), self.default
                )
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[device] = group
        return group


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration; ``lateness``/``quiet``/``horizon`` in seconds, ``groups`` keyed
    lower-case."""

    path: str | None
    lateness: int = DEFAULT_LATENESS
    quiet: int = DEFAULT_QUIET
    db_path: str | None = None
    sources: tuple[SourceConfig, ...] = ()
    groups: dict[str, Group] = field(default_factory=dict)
    devices: DeviceMap = field(default_factory=DeviceMap)
    horizon: int = DEFAULT_HORIZON
    hub: str | None = None  # the IoT hub's Azure resource id: exports' ResourceId

    def lateness_of(self, source: SourceConfig) -> int:
        """The lateness (seconds) of ``source``: its own, else ``[engine] lateness``."""
        return self.lateness if source.lateness is None else source.lateness

    @classmethod
    def default(cls) -> Config:
        """The configuration without a file: no sources, no groups, every rule disabled."""
        return cls(path=None)

    def group(self, name: str) -> Group:
        """The group named ``name`` (case-insensitive), or an empty group if no table defines it."""
        found = self.groups.get(name.lower())
        return found if found is not None else Group(name.lower())

    def group_for(self, device: str) -> Group:
        """The group ``device`` belongs to."""
        return self.group(self.devices.group_of(device))

    def capture_patterns(self) -> ConsolePatterns | None:
        """The console patterns a replayed capture is read with: the user patterns of every
        serial source, in file order, then the built-in ones unless a serial source turns
        them off (``builtin_patterns = false``); without a serial source, the built-in ones."""
        serial = [s for s in self.sources if s.type == "serial"]
        user = tuple(p for s in serial for p in s.patterns)
        return compile_patterns(user, all(s.builtin_patterns for s in serial))

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


# --- validation helpers -------------------------------------------------------------------------


class Invalid(Exception):
    """A reason, raised by a check; the caller knows the key. ``index`` points into an array."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


def key_path(*parts: str | int) -> str:
    """A dotted TOML key: ``groups.default.rules.X.min``, ``sources[1].type``, ``devices."a-*"``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            text = text.translate(_ESCAPE)
            out += f".{text}" if out else text
    return out


def shown_number(value: int) -> str:
    """An integer as a message shows it: digits when it has at most 20, else a word (Python
    refuses to print more than 4,300 digits, and a line of thousands helps nobody)."""
    return str(value) if -(10**20) < value < 10**20 else "a number of more than 20 digits"


def group_name_reason(name: str) -> str | None:
    """Why ``name`` cannot be a group name, or None: empty, or holding a control, bidirectional
    or zero-width character (a name is shown in the console and written to JSON and TOML)."""
    if not name.strip():
        return "a group name must not be empty"
    if not _NOT_IN_NAMES.isdisjoint(name):
        return "a group name must not contain control, bidirectional or zero-width characters"
    return None


def kind_of(value: object, as_json: bool = False) -> str:
    """``an integer``, ``a string``, ``a table`` … as a message names a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number" if as_json else "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object" if as_json else "a table"
    return "a date or time"


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices``, or an empty string."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}?)"
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def unknown_rule_reason(name: object) -> str:
    """The reason for a ruleType that the catalogue does not know."""
    if not isinstance(name, str):
        return f"ruleType must be a string, not {kind_of(name)}"
    return f"unknown ruleType {name!r}{suggest(name, BY_NAME)}"


def check_threshold(value: object, as_json: bool = False) -> int:
    """A threshold: an integer from 0 to 2147483647 (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"must be an integer, not {kind_of(value, as_json)}")
    if value < 0:
        raise Invalid(f"must not be negative ({shown_number(value)})")
    if value > MAX_THRESHOLD:
        raise Invalid(f"must be at most {MAX_THRESHOLD} ({shown_number(value)})")
    return value


def check_window(value: object) -> int:
    """A window size in seconds from an ISO 8601 duration of whole seconds, PT1M to P7D."""
    seconds = _duration(value)
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise Invalid(f"window {value} is outside PT1M..P7D")
    return seconds


def check_lateness(value: object) -> int:
    """A lateness in seconds from an ISO 8601 duration, PT0S to P7D."""
    seconds = _duration(value)
    if seconds > MAX_LATENESS:
        raise Invalid("must be at most P7D")
    return seconds


def check_hub(value: object) -> str:
    """An IoT hub's Azure resource id,
    ``/subscriptions/{guid}/resourceGroups/{group}/providers/Microsoft.Devices/IotHubs/{name}``,
    returned as written. Names follow Azure's naming rules: a resource group 1–90 letters,
    digits, ``_``, ``-``, ``.``, ``(``, ``)``, not ending in ``.``; a hub 3–50 letters, digits and
    hyphens, not ending in a hyphen."""
    if not isinstance(value, str):
        raise Invalid(f"must be an IoT hub's resource id (a string), not {kind_of(value)}")
    m = _HUB_ID.fullmatch(value)
    if m is None:
        raise Invalid(  # repr: a control or bidirectional character is shown escaped
            f"{value!r} is not an IoT hub's resource id (expected /subscriptions/{{id}}"
            "/resourceGroups/{group}/providers/Microsoft.Devices/IotHubs/{name})"
        )
    subscription, group, name = m.groups()
    if not _GUID.fullmatch(subscription):
        raise Invalid(f"subscription id {subscription!r} is not a GUID")
    if not (
        1 <= len(group) <= 90
        and all(ch.isalnum() or ch in "_-.()" for ch in group)
        and not group.endswith(".")
    ):
        raise Invalid(
            f"resource group {group!r} must be 1 to 90 letters, digits, '_', '-', '.', '(' or "
            "')', not ending in '.'"
        )
    if not _HUB_NAME.fullmatch(name):
        raise Invalid(
            f"IoT hub name {name!r} must be 3 to 50 letters, digits or '-', not ending in '-'"
        )
    return value


def _duration(value: object) -> int:
    if not isinstance(value, str):
        raise Invalid(f"must be an ISO 8601 duration string such as 'PT15M', not {kind_of(value)}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def check_bool(value: object, as_json: bool = False) -> bool:
    """A boolean (``true``/``false``)."""
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {kind_of(value, as_json)}")
    return value


def check_severity(value: object) -> str:
    """A severity name, case-insensitive, returned in its canonical spelling."""
    if isinstance(value, str):
        for name in SEVERITIES:
            if value.lower() == name.lower():
                return name
    shown = repr(value) if isinstance(value, str) else kind_of(value)
    raise Invalid(f"severity {shown} is not one of {', '.join(SEVERITIES)}")


def check_allow_values(rule_id: int, value: object, as_json: bool = False) -> tuple[str, ...]:
    """The entries of an allow-list; a bad entry raises :class:`Invalid` with its ``index``."""
    if not isinstance(value, list):
        raise Invalid(f"must be an array of strings, not {kind_of(value, as_json)}")
    for i, entry in enumerate(value):
        reason = validate_entry(rule_id, entry)
        if reason is not None:
            shown = repr(entry) if isinstance(entry, str) else kind_of(entry, as_json)
            raise Invalid(f"allow-list entry {shown} {reason}", i)
    return tuple(value)


# --- parsing ------------------------------------------------------------------------------------


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> tuple[str, str]:
    """The name and text of a configuration file; every failure is a :class:`ConfigError`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(name, "(file)", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(name, "(file)", "is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(name, "(file)", f"cannot be read: {exc.strerror or exc}") from None
    try:
        return name, raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(name, f"line {line}", "not valid UTF-8") from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the TOML configuration at ``path``; raises :class:`ConfigError`."""
    name, text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(name, str(exc)) from None
    except (RecursionError, ValueError) as exc:
        raise unreadable(name, "TOML", exc) from None
    return parse_config(data, name)


def unreadable(name: str, language: str, exc: Exception) -> ConfigError:
    """The error for a file its parser gave up on without a position: nesting deeper than the
    parser's recursion allows, or a number with more digits than Python converts."""
    if isinstance(exc, RecursionError):
        return ConfigError(name, "(file)", f"invalid {language}: nested too deeply")
    return ConfigError(name, "(file)", f"invalid {language}: a number with too many digits")


def _toml_error(name: str, message: str) -> ConfigError:
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if m:
        reason = f"invalid TOML: {message[: m.start()]} (column {m.group(2)})"
        return ConfigError(name, f"line {m.group(1)}", reason)
    m = re.search(r"\s*\(at end of document\)$", message)
    if m:
        return ConfigError(name, "end of file", f"invalid TOML: {message[: m.start()]}")
    return ConfigError(name, "(file)", f"invalid TOML: {message}")


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(path)

    def fail(self, key: Key, reason: str) -> ConfigError:
        return ConfigError(self.path, key_path(*key) or "(file)", reason)

    def table(self, value: object, key: Key) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, not {kind_of(value)}")
        return value

    def only(self, table: Mapping[str, Any], allowed: Iterable[str], key: Key) -> None:
        allowed = tuple(allowed)
        for k in table:
            if k not in allowed:
                raise self.fail((*key, k), f"unknown key {k!r}{suggest(k, allowed)}")

    def run(self, key: Key, check: Callable[..., T], *args: object) -> T:
        try:
            return check(*args)
        except Invalid as exc:
            where = key if exc.index is None else (*key, exc.index)
            raise self.fail(where, exc.reason) from None

    def text(self, value: object, key: Key) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {kind_of(value)}")
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def file_path(self, value: str) -> str:
        value = os.path.expanduser(value)
        return value if value == ":memory:" else os.path.join(self.base, value)


_TOP_KEYS = ("engine", "database", "sources", "groups", "devices")


def parse_config(data: Mapping[str, Any], path: str) -> Config:
    """Validate parsed TOML ``data``; ``path`` names the file in errors and anchors relative paths.

    Raises :class:`ConfigError`.
    """
    p = _Parser(path)
    p.only(data, _TOP_KEYS, ())
    lateness, quiet, horizon = DEFAULT_LATENESS, DEFAULT_QUIET, DEFAULT_HORIZON
    hub: str | None = None
    engine: Mapping[str, Any] = {}
    if "engine" in data:
        engine = p.table(data["engine"], ("engine",))
        p.only(engine, ("lateness", "horizon", "quiet", "hub"), ("engine",))
        if "lateness" in engine:
            lateness = p.run(("engine", "lateness"), check_lateness, engine["lateness"])
        if "horizon" in engine:
            horizon = p.run(("engine", "horizon"), _duration, engine["horizon"])
            if not MIN_HORIZON <= horizon <= MAX_HORIZON:
                raise p.fail(("engine", "horizon"), "must be from PT1M to P30D")
        if "quiet" in engine:
            quiet = p.run(("engine", "quiet"), _duration, engine["quiet"])
            if not 1 <= quiet <= MAX_QUIET:
                raise p.fail(("engine", "quiet"), "must be from PT1S to P365D")
        if "hub" in engine:
            hub = p.run(("engine", "hub"), check_hub, engine["hub"])
    db_path = None
    if "database" in data:
        database = p.table(data["database"], ("database",))
        p.only(database, ("path",), ("database",))
        if "path" in database:
            db_path = p.file_path(p.text(database["path"], ("database", "path")))
    sources = _parse_sources(p, data.get("sources", []))
    if horizon < lateness:
        key = ("engine", "horizon") if "horizon" in engine else ("engine", "lateness")
        raise p.fail(key, _horizon_reason(horizon, lateness))
    for i, source in enumerate(sources):
        if source.lateness is not None and source.lateness > horizon:
            raise p.fail(("sources", i, "lateness"), _horizon_reason(horizon, source.lateness))
    groups = _parse_groups(p, data.get("groups", {}))
    devices = _parse_devices(p, data.get("devices", {}))
    return Config(path, lateness, quiet, db_path, sources, groups, devices, horizon, hub)


def _horizon_reason(horizon: int, lateness: int) -> str:
    return (
        f"lateness {format_duration(lateness)} is beyond the horizon {format_duration(horizon)}"
        " (an event is counted only within the horizon, so its window could never wait that long)"
    )


def _parse_sources(p: _Parser, value: object) -> tuple[SourceConfig, ...]:
    if not isinstance(value, list):
        raise p.fail(("sources",), "must be an array of tables ([[sources]])")
    out = []
    for i, item in enumerate(value):
        key: Key = ("sources", i)
        src = p.table(item, key)
        p.only(src, ("type", "path", "port", "baudrate", "device", "lateness", *_SERIAL_KEYS), key)
        if "type" not in src:
            raise p.fail((*key, "type"), "missing (one of " + ", ".join(SOURCE_TYPES) + ")")
        kind = src["type"]
        if kind not in SOURCE_TYPES:
            shown = repr(kind) if isinstance(kind, str) else kind_of(kind)
            raise p.fail(
                (*key, "type"),
                f"unknown source type {shown} (expected one of {', '.join(SOURCE_TYPES)})"
                + (suggest(kind, SOURCE_TYPES) if isinstance(kind, str) else ""),
            )
        late = None
        if "lateness" in src:
            late = p.run((*key, "lateness"), check_lateness, src["lateness"])
        if kind == "serial":
            if "path" in src:
                raise p.fail((*key, "path"), "only file sources have a path; serial uses port")
            if "port" not in src:
                raise p.fail((*key, "port"), "missing: a serial source needs a port")
            port = p.text(src["port"], (*key, "port"))
            baudrate = DEFAULT_BAUDRATE
            if "baudrate" in src:
                baudrate = src["baudrate"]
                if type(baudrate) is not int or not MIN_BAUDRATE <= baudrate <= MAX_BAUDRATE:
                    shown = shown_number(baudrate) if type(baudrate) is int else kind_of(baudrate)
                    raise p.fail(
                        (*key, "baudrate"),
                        f"must be an integer from {MIN_BAUDRATE} to {MAX_BAUDRATE}, not {shown}",
                    )
            device = p.text(src["device"], (*key, "device")) if "device" in src else None
            glob = is_port_glob(port)
            if glob and device is not None:
                raise p.fail(
                    (*key, "device"),
                    "a glob port finds several boards: name their devices in "
                    f"{key_path(*key, 'boards')}, not with one device",
                )
            boards: tuple[tuple[str, str], ...] = ()
            if "boards" in src:
                if not glob:
                    raise p.fail(
                        (*key, "boards"),
                        "only a glob port (holding *, ? or [) has boards; one port names its "
                        "device with device",
                    )
                boards = _parse_boards(p, src["boards"], (*key, "boards"))
            builtin = True
            if "builtin_patterns" in src:
                builtin = p.run((*key, "builtin_patterns"), check_bool, src["builtin_patterns"])
            patterns = _parse_patterns(p, src.get("patterns", []), (*key, "patterns"))
            out.append(
                SourceConfig(
                    kind, None, port, baudrate, device, None, late, patterns, builtin, boards
                )
            )
        else:
            for k in ("port", "baudrate", "device", *_SERIAL_KEYS):
                if k in src:
                    raise p.fail((*key, k), f"only serial sources have a {k}")
            if "path" not in src:
                raise p.fail((*key, "path"), f"missing: a {kind} source needs a path (a glob)")
            path = p.file_path(p.text(src["path"], (*key, "path")))
            out.append(SourceConfig(kind, path, None, DEFAULT_BAUDRATE, None, kind, late))
    return tuple(out)


_SERIAL_KEYS = ("patterns", "builtin_patterns", "boards")
_PATTERN_KEYS = ("match", "op", "protocol", "time_format")


def _parse_patterns(p: _Parser, value: object, key: Key) -> tuple[ConsolePattern, ...]:
    """``[[sources.patterns]]``: each a regular expression and what a matching line becomes."""
    if not isinstance(value, list):
        raise p.fail(key, "must be an array of tables ([[sources.patterns]])")
    out = []
    for i, item in enumerate(value):
        pkey: Key = (*key, i)
        table = p.table(item, pkey)
        p.only(table, _PATTERN_KEYS, pkey)
        for k in ("match", "op"):
            if k not in table:
                raise p.fail((*pkey, k), "missing")
        match = table["match"]
        if not isinstance(match, str):
            raise p.fail((*pkey, "match"), f"must be a string, not {kind_of(match)}")
        op = table["op"]
        if not isinstance(op, str):
            raise p.fail((*pkey, "op"), f"must be a string, not {kind_of(op)}")
        protocol = time_format = None
        try:
            if "protocol" in table:
                protocol = fold(p.text(table["protocol"], (*pkey, "protocol")))
            if "time_format" in table:
                time_format = p.text(table["time_format"], (*pkey, "time_format"))
                if time_format != UNIX and "%" not in time_format:
                    raise PatternError(
                        "time_format",
                        f"must be a strptime format (such as '%Y-%m-%d %H:%M:%S') or {UNIX!r}",
                    )
            pattern = ConsolePattern(match, op, protocol, time_format)
            check(pattern)
        except PatternError as exc:
            raise p.fail((*pkey, exc.key), exc.reason) from None
        out.append(pattern)
    return tuple(out)


def _parse_boards(p: _Parser, value: object, key: Key) -> tuple[tuple[str, str], ...]:
    """``[sources.boards]``: a port (its name under /dev/serial/by-id, or its path; a glob or
    exact) → the device of the board found there."""
    table = p.table(value, key)
    out = []
    for port, device in table.items():
        if not port.strip():
            raise p.fail((*key, port), "a port name or glob must not be empty")
        out.append((port, p.text(device, (*key, port))))
    return tuple(out)


def _parse_groups(p: _Parser, value: object) -> dict[str, Group]:
    tables = p.table(value, ("groups",))
    groups: dict[str, Group] = {}
    for name, body in tables.items():
        key: Key = ("groups", name)
        reason = group_name_reason(name)
        if reason is not None:
            raise p.fail(key, reason)
        if name.lower() in groups:
            raise p.fail(
                key,
                f"group {name!r} differs only in case from {groups[name.lower()].name!r} "
                "(group names are case-insensitive)",
            )
        body = p.table(body, key)
        for k in body:
            if k != "rules":
                hint = f" (rules go under {key_path(*key, 'rules')})" if k in BY_NAME else ""
                raise p.fail((*key, k), f"unknown key {k!r}{hint or suggest(k, ['rules'])}")
        rules = p.table(body.get("rules", {}), (*key, "rules"))
        range_rules: dict[str, RangeRule] = {}
        allow_rules: dict[str, AllowRule] = {}
        for rule_name, rule_body in rules.items():
            rkey = (*key, "rules", rule_name)
            rule = BY_NAME.get(rule_name)
            if rule is None:
                raise p.fail(rkey, unknown_rule_reason(rule_name))
            table = p.table(rule_body, rkey)
            if rule.is_range:
                range_rules[rule_name] = _parse_range_rule(p, rule, table, rkey)
            else:
                allow_rules[rule_name] = _parse_allow_rule(p, rule, table, rkey)
        groups[name.lower()] = Group(name, range_rules, allow_rules)
    return groups


def _wrong_kind_key(p: _Parser, rule: RuleType, table: Mapping[str, Any], key: Key) -> None:
    own, other = (RANGE_KEYS, ALLOW_KEYS) if rule.is_range else (ALLOW_KEYS, RANGE_KEYS)
    for k in table:
        if k in other and k not in own:
            if rule.is_range:
                reason = f"{k!r} is an allow-list key; {rule.name} is a range rule"
            else:
                reason = f"{k!r} is a range-rule key; {rule.name} is an allow-list rule"
            raise p.fail((*key, k), reason)
    p.only(table, own, key)


def _parse_range_rule(p: _Parser, rule: RuleType, table: Mapping[str, Any], key: Key) -> RangeRule:
    _wrong_kind_key(p, rule, table, key)
    enabled = p.run((*key, "enabled"), check_bool, table.get("enabled", True))
    low = p.run((*key, "min"), check_threshold, table.get("min", 0))
    if "max" in table:
        high = p.run((*key, "max"), check_threshold, table["max"])
    elif enabled:
        raise p.fail((*key, "max"), "missing: an enabled range rule needs a max")
    else:
        high = low
    if low > high:
        raise p.fail((*key, "min"), f"min {low} is above max {high}")
    window = p.run((*key, "window"), check_window, table.get("window", "PT15M"))
    severity = p.run((*key, "severity"), check_severity, table.get("severity", "Low"))
    return RangeRule(rule.name, enabled, low, high, window, severity)


def _parse_allow_rule(p: _Parser, rule: RuleType, table: Mapping[str, Any], key: Key) -> AllowRule:
    _wrong_kind_key(p, rule, table, key)
    enabled = p.run((*key, "enabled"), check_bool, table.get("enabled", True))
    entries = p.run((*key, "allow"), check_allow_values, rule.id, table.get("allow", []))
    severity = p.run((*key, "severity"), check_severity, table.get("severity", "Low"))
    return AllowRule(rule.name, enabled, entries, severity)


def _parse_devices(p: _Parser, value: object) -> DeviceMap:
    table = p.table(value, ("devices",))
    exact: dict[str, str] = {}
    patterns: list[tuple[str, str]] = []
    for device, group in table.items():
        key = ("devices", device)
        if not device:
            raise p.fail(key, "a device id or pattern must not be empty")
        if not isinstance(group, str):
            raise p.fail(key, f"must be a group name (a string), not {kind_of(group)}")
        if not group.strip():
            raise p.fail(key, "the group name must not be empty")
        reason = group_name_reason(group)
        if reason is not None:
            raise p.fail(key, reason)
        if _GLOB_CHARS.intersection(device):
            patterns.append((device, group))
        else:
            exact[device] = group
    return DeviceMap(exact, tuple(patterns))
