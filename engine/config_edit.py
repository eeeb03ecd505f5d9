"""Edits of a configuration, as the console makes them: pure functions from a :class:`Config` to a
new, validated one, and :func:`write_config` to persist the result.

Every edit validates with the same checks as the TOML file (``engine.config``), so a refused edit
raises :class:`ConfigError` with the key and reason the file would give, e.g.
``groups.default.rules.MqttD2CMessagesNotInAllowedRange.min: min 10 is above max 5``. The file
named in the error is ``config.path``, or ``(console)`` for a configuration without a file.

Choices where the file format leaves room:

- Writing values into an allow-list rule that has no table creates the table, which turns the rule
  on (as a table without ``enabled = false`` does in the file); an existing rule keeps its
  ``enabled``. An entry already on the list is refused rather than written twice.
- A range rule edited for the first time starts from Azure's blank settings (disabled, ``min`` 0,
  ``max`` 0, ``PT15M``), so setting only ``enabled = true`` gives an enabled rule with max 0.
- Group names compare case-insensitively, as in the file; ``rename_group`` also re-points the
  ``[devices]`` entries that name the group. The ``default`` group cannot be renamed (unmapped
  devices belong to it by that name) and a group cannot be deleted here.

:func:`write_config` edits an existing TOML file in place with tomlkit (:func:`edit_toml`): only
the keys, list entries and tables whose meaning changed are written, so comments, blank lines,
key order, quoting and table style (``[[sources]]``, dotted headers, multi-line arrays) are kept,
and ``[database]`` and ``[[sources]]`` are never touched. A new table goes after the last table of
its group (before the comments that close it); a renamed group keeps its place. A new file, or
one that no longer reads as a configuration, is written whole (``[groups]`` in catalogue order,
as ``engine.azure_groups.groups_to_toml`` writes them). The previous file is kept next to it as
``FILE.bak``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

import tomli_w
import tomlkit
import tomlkit.exceptions
from tomlkit import container as tk_container
from tomlkit import items as tk_items

from engine.allowlist import IP_RULES, validate_entry
from engine.azure_groups import groups_to_toml
from engine.catalogue import ALLOWLIST_RULES, BY_ID, BY_NAME, RANGE_RULES, RuleType
from engine.config import (
    DEFAULT_BAUDRATE,
    DEFAULT_GROUP,
    DEFAULT_HORIZON,
    DEFAULT_LATENESS,
    DEFAULT_QUIET,
    DEFAULT_WINDOW,
    AllowRule,
    Config,
    ConfigError,
    Group,
    Invalid,
    RangeRule,
    check_bool,
    check_severity,
    check_threshold,
    check_window,
    group_name_reason,
    key_path,
    parse_config,
    unknown_rule_reason,
)
from engine.timestamps import format_duration

CONSOLE = "(console)"  # the "file" of errors about a configuration that has none


# --- helpers ------------------------------------------------------------------------------------


def _file(config: Config) -> str:
    return config.path or CONSOLE


def _fail(config: Config, key: tuple[str | int, ...], reason: str) -> ConfigError:
    return ConfigError(_file(config), key_path(*key), reason)


def _run(config: Config, key: tuple[str | int, ...], check: Any, *args: object) -> Any:
    try:
        return check(*args)
    except Invalid as exc:
        where = key if exc.index is None else (*key, exc.index)
        raise _fail(config, where, exc.reason) from None


def rule_type(rule: str | int) -> RuleType:
    """The catalogue entry of ``rule`` (a ruleType name or id); ValueError when unknown."""
    found = BY_ID.get(rule) if isinstance(rule, int) else BY_NAME.get(rule)
    if found is None:
        raise ValueError(unknown_rule_reason(rule))
    return found


def _group(config: Config, name: str) -> Group:
    """The group ``name`` (case-insensitive), or a new empty group spelled ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise _fail(config, ("groups",), "a group name must not be empty")
    found = config.groups.get(name.lower())
    return found if found is not None else Group(name)


def _with_group(config: Config, group: Group) -> Config:
    groups = dict(config.groups)
    groups[group.key] = group
    return config.replace(groups=groups)


def _rule_key(group: Group, rule: RuleType, *more: str | int) -> tuple[str | int, ...]:
    return ("groups", group.name, "rules", rule.name, *more)


def _allow_type(config: Config, group: Group, rule: str | int) -> RuleType:
    try:
        rt = rule_type(rule)
    except ValueError as exc:
        raise _fail(config, ("groups", group.name, "rules", str(rule)), str(exc)) from None
    if rt.is_range:
        raise _fail(config, _rule_key(group, rt), f"{rt.name} is a range rule, not an allow-list")
    return rt


def _range_type(config: Config, group: Group, rule: str | int) -> RuleType:
    try:
        rt = rule_type(rule)
    except ValueError as exc:
        raise _fail(config, ("groups", group.name, "rules", str(rule)), str(exc)) from None
    if not rt.is_range:
        raise _fail(config, _rule_key(group, rt), f"{rt.name} is an allow-list rule, not a range")
    return rt


# --- allow-lists --------------------------------------------------------------------------------


def entry_reason(rule: str | int, entry: object, existing: Iterable[str] = ()) -> str | None:
    """The inline reason why ``entry`` cannot go on ``rule``'s list (the config file's wording,
    e.g. ``allow-list entry '10.0.0.1/8' has host bits set (the network is 10.0.0.0/8)``), or
    None when it can. An entry already in ``existing`` is refused too."""
    rt = rule_type(rule)
    reason = validate_entry(rt.id, entry)
    shown = repr(entry) if isinstance(entry, str) else "value"
    if reason is not None:
        return f"allow-list entry {shown} {reason}"
    if entry in tuple(existing):
        return f"allow-list entry {shown} is already on the list"
    return None


def normalize_value(rule: str | int, value: str) -> str:
    """The entry that allows ``value`` as an event wrote it: for the IP rules, the bare address
    without surrounding spaces or zone index, an IPv4-mapped IPv6 address as IPv4; other values
    unchanged. A value that is no address is returned as it is (and is then refused)."""
    rt = rule_type(rule)
    if rt.id not in IP_RULES or not isinstance(value, str):
        return value
    text = value.strip().split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return value
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def set_allow_values(
    config: Config, group: str, rule: str | int, values: Iterable[str], enabled: bool | None = None
) -> Config:
    """``config`` with the allow-list of (``group``, ``rule``) set to ``values``."""
    g = _group(config, group)
    rt = _allow_type(config, g, rule)
    values = list(values)
    seen: set[str] = set()
    for i, entry in enumerate(values):
        reason = entry_reason(rt.name, entry)
        if reason is None and entry in seen:
            reason = f"allow-list entry {entry!r} is already on the list"
        if reason is not None:
            raise _fail(config, _rule_key(g, rt, "allow", i), reason)
        seen.add(entry)
    old = g.allow_rules.get(rt.name)
    if enabled is not None:
        _run(config, _rule_key(g, rt, "enabled"), check_bool, enabled)
        on = enabled
    else:
        on = old.enabled if old is not None else True
    new = AllowRule(rt.name, on, tuple(values), old.severity if old is not None else "Low")
    rules = dict(g.allow_rules)
    rules[rt.name] = new
    return _with_group(config, dataclasses.replace(g, allow_rules=rules))


def allow_values(config: Config, group: str, rule: str | int) -> tuple[str, ...]:
    """The entries of (``group``, ``rule``), empty when the rule has no table."""
    found = config.group(group).allow_rules.get(rule_type(rule).name)
    return found.values if found is not None else ()


def add_allow_value(config: Config, group: str, rule: str | int, value: str) -> Config:
    """``config`` with ``value`` appended to the allow-list of (``group``, ``rule``)."""
    return set_allow_values(config, group, rule, [*allow_values(config, group, rule), value])


def replace_allow_value(
    config: Config, group: str, rule: str | int, index: int, value: str
) -> Config:
    """``config`` with entry ``index`` of (``group``, ``rule``) replaced by ``value``."""
    values = list(allow_values(config, group, rule))
    if not 0 <= index < len(values):
        raise IndexError(f"no entry {index} in the list")
    values[index] = value
    return set_allow_values(config, group, rule, values)


def remove_allow_value(config: Config, group: str, rule: str | int, index: int) -> Config:
    """``config`` without entry ``index`` of (``group``, ``rule``)."""
    values = list(allow_values(config, group, rule))
    if not 0 <= index < len(values):
        raise IndexError(f"no entry {index} in the list")
    del values[index]
    return set_allow_values(config, group, rule, values)


def set_allow_enabled(config: Config, group: str, rule: str | int, enabled: bool) -> Config:
    """``config`` with the allow-list rule turned on or off (its entries are kept)."""
    return set_allow_values(config, group, rule, allow_values(config, group, rule), enabled)


# --- range rules --------------------------------------------------------------------------------


def set_range_rule(
    config: Config,
    group: str,
    rule: str | int,
    *,
    enabled: object = None,
    min: object = None,
    max: object = None,
    window: object = None,
    severity: object = None,
) -> Config:
    """``config`` with the given settings of range rule (``group``, ``rule``) changed.

    ``window`` is an ISO 8601 duration string (``"PT15M"``); thresholds are integers. A rule
    without a table starts from Azure's blank settings (disabled, 0, 0, PT15M). Settings are
    checked as in the file: thresholds 0 … 2147483647, ``min`` ≤ ``max``, window PT1M … P7D.
    """
    g = _group(config, group)
    rt = _range_type(config, g, rule)
    old = g.range_rules.get(rt.name) or RangeRule(rt.name, False, 0, 0, DEFAULT_WINDOW)
    on = (
        old.enabled
        if enabled is None
        else _run(config, _rule_key(g, rt, "enabled"), check_bool, enabled)
    )
    low = old.min if min is None else _run(config, _rule_key(g, rt, "min"), check_threshold, min)
    high = old.max if max is None else _run(config, _rule_key(g, rt, "max"), check_threshold, max)
    if low > high:
        raise _fail(config, _rule_key(g, rt, "min"), f"min {low} is above max {high}")
    size = (
        old.window
        if window is None
        else _run(config, _rule_key(g, rt, "window"), check_window, window)
    )
    sev = (
        old.severity
        if severity is None
        else _run(config, _rule_key(g, rt, "severity"), check_severity, severity)
    )
    rules = dict(g.range_rules)
    rules[rt.name] = RangeRule(rt.name, on, low, high, size, sev)
    return _with_group(config, dataclasses.replace(g, range_rules=rules))


def remove_rule(config: Config, group: str, rule: str | int) -> Config:
    """``config`` without the table of (``group``, ``rule``): the rule is disabled and blank."""
    g = _group(config, group)
    rt = rule_type(rule)
    if g.key not in config.groups:
        return config
    ranges = {k: v for k, v in g.range_rules.items() if k != rt.name}
    allows = {k: v for k, v in g.allow_rules.items() if k != rt.name}
    return _with_group(config, Group(g.name, ranges, allows))


# --- groups -------------------------------------------------------------------------------------


def _check_name(config: Config, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _fail(config, ("groups",), "a group name must not be empty")
    if name != name.strip():
        raise _fail(config, ("groups", name), "a group name must not start or end with spaces")
    reason = group_name_reason(name)
    if reason is not None:
        raise _fail(config, ("groups", name), reason)
    return name


def add_group(config: Config, name: str) -> Config:
    """``config`` with a new, empty group ``name`` (every rule disabled)."""
    name = _check_name(config, name)
    if name.lower() in config.groups:
        existing = config.groups[name.lower()].name
        raise _fail(
            config,
            ("groups", name),
            f"group {name!r} already exists"
            + (f" as {existing!r} (group names are case-insensitive)" if existing != name else ""),
        )
    return _with_group(config, Group(name))


def rename_group(config: Config, old: str, new: str) -> Config:
    """``config`` with group ``old`` renamed to ``new``; ``[devices]`` entries follow it."""
    new = _check_name(config, new)
    g = config.groups.get(old.lower()) if isinstance(old, str) else None
    if g is None:
        raise _fail(config, ("groups", str(old)), f"no group {old!r} to rename")
    if g.key == DEFAULT_GROUP and new.lower() != DEFAULT_GROUP:
        raise _fail(
            config,
            ("groups", g.name),
            "the default group keeps its name (devices that no entry maps belong to it)",
        )
    if new.lower() != g.key and new.lower() in config.groups:
        raise _fail(
            config,
            ("groups", new),
            f"group {config.groups[new.lower()].name!r} already exists (names are case-insensitive)",
        )
    groups = {k: v for k, v in config.groups.items() if k != g.key}
    groups[new.lower()] = dataclasses.replace(g, name=new)
    devices = config.devices
    exact = {d: (new if k == g.key else k) for d, k in devices.exact.items()}
    patterns = tuple((p, new if k == g.key else k) for p, k in devices.patterns)
    mapped = type(devices)(exact, patterns, devices.default)
    return config.replace(groups=groups, devices=mapped)


# --- writing ------------------------------------------------------------------------------------


def _groups_table(config: Config) -> dict[str, Any]:
    return tomllib.loads(groups_to_toml(config.groups.values())).get("groups", {})


def _devices_table(config: Config) -> dict[str, str]:
    def name(key: str) -> str:
        found = config.groups.get(key)
        return found.name if found is not None else key

    table = {d: name(k) for d, k in config.devices.exact.items()}
    table.update({p: name(k) for p, k in config.devices.patterns})
    return table


def _rel(path: str, base: str) -> str:
    if path == ":memory:":
        return path
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, os.path.abspath(base or "."))
    except ValueError:  # another drive
        return full
    return full if rel.startswith("..") else rel.replace(os.sep, "/")


def _sources_table(config: Config, base: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in config.sources:
        item: dict[str, Any] = {"type": s.type}
        if s.type == "serial":
            item["port"] = s.port
            if s.baudrate != DEFAULT_BAUDRATE:
                item["baudrate"] = s.baudrate
            if s.device is not None:
                item["device"] = s.device
            if not s.builtin_patterns:
                item["builtin_patterns"] = False
            if s.boards:
                item["boards"] = dict(s.boards)
            if s.patterns:
                item["patterns"] = [
                    {
                        k: v
                        for k, v in (
                            ("match", p.match),
                            ("op", p.op),
                            ("protocol", p.protocol),
                            ("time_format", p.time_format),
                        )
                        if v is not None
                    }
                    for p in s.patterns
                ]
        else:
            item["path"] = _rel(s.path or "", base)
        if s.lateness is not None:
            item["lateness"] = format_duration(s.lateness)
        out.append(item)
    return out


def _same(raw: Mapping[str, Any], key: str, path: str, config: Config) -> bool:
    """Whether the file's own ``key`` table still says what ``config`` says."""
    if key not in raw:
        return False
    try:
        parsed = parse_config({key: raw[key]}, path)
    except ConfigError:
        return False
    if key == "engine":
        return _timing(parsed) == _timing(config)
    return parsed.devices == config.devices


def _timing(config: Config) -> tuple[int, int, int, str | None]:
    """What ``[engine]`` says (the hub id too, so no write can drop it)."""
    return (config.lateness, config.quiet, config.horizon, config.hub)


def config_to_toml(config: Config, path: str, raw: Mapping[str, Any] | None = None) -> str:
    """The TOML text of ``config`` to be written at ``path``, keeping what ``raw`` (the file's
    current tables) says where it agrees with ``config``."""
    raw = dict(raw or {})
    base = os.path.dirname(path)
    data: dict[str, Any] = {}
    if _same(raw, "engine", path, config):
        data["engine"] = raw["engine"]
    elif (
        _timing(config) != (DEFAULT_LATENESS, DEFAULT_QUIET, DEFAULT_HORIZON, None)
        or "engine" in raw
    ):
        data["engine"] = {
            "lateness": format_duration(config.lateness),
            "horizon": format_duration(config.horizon),
            "quiet": format_duration(config.quiet),
        }
        if config.hub is not None:
            data["engine"]["hub"] = config.hub
    if "database" in raw:
        data["database"] = raw["database"]
    elif config.db_path is not None:
        data["database"] = {"path": _rel(config.db_path, base)}
    if "sources" in raw:
        data["sources"] = raw["sources"]
    elif config.sources:
        data["sources"] = _sources_table(config, base)
    if _same(raw, "devices", path, config):
        data["devices"] = raw["devices"]
    elif config.devices.exact or config.devices.patterns:
        data["devices"] = _devices_table(config)
    groups = _groups_table(config)
    if groups:
        data["groups"] = groups
    return tomli_w.dumps(data)


def _read_target(target: str) -> str | None:
    """The text of the file at ``target``, or None when it cannot be read as UTF-8."""
    try:
        with open(target, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _file_text(config: Config, target: str, old_text: str | None) -> str:
    """The new text of ``target``: ``old_text`` with only what differs from ``config`` edited
    (:func:`edit_toml`), or the whole file written afresh when there is no readable old file or
    the edit would not read back as ``config``."""
    raw: dict[str, Any] = {}
    if old_text is not None:
        with contextlib.suppress(ValueError, RecursionError):
            raw = tomllib.loads(old_text)
            text = edit_toml(old_text, config, target)
            if text is not None and _reads_back(text, target, config):
                return text
    return config_to_toml(config, target, raw)


def _reads_back(text: str, target: str, config: Config) -> bool:
    try:
        back = parse_config(tomllib.loads(text), target)
    except (ConfigError, ValueError, RecursionError):
        return False
    return (back.groups, back.devices, _timing(back)) == (
        config.groups,
        config.devices,
        _timing(config),
    )


def write_config(config: Config, path: str | os.PathLike[str] | None = None) -> str:
    """Write ``config`` as TOML to ``path`` (default ``config.path``) and return the path.

    An existing file is edited in place (:func:`edit_toml`): its comments, key order and table
    style are kept and only the lines of what changed are written. The previous file, if any, is
    copied to ``PATH.bak`` first; the new one replaces it atomically. Raises ValueError when there
    is no path or the text would not read back as ``config``, OSError when the file cannot be
    written.
    """
    if path is None:
        path = config.path
    if path is None:
        raise ValueError("the configuration has no file to write")
    target = os.fspath(path)
    exists = os.path.exists(target)
    text = _file_text(config, target, _read_target(target) if exists else None)
    if not _reads_back(text, target, config):
        raise ValueError(f"{target}: the written configuration would not read back the same")
    folder = os.path.dirname(os.path.abspath(target))
    if exists:
        shutil.copy2(target, target + ".bak")
    fd, tmp = tempfile.mkstemp(prefix=".iotwatch-", suffix=".toml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if exists:
            with contextlib.suppress(OSError):
                shutil.copymode(target + ".bak", tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


# --- editing the file in place ------------------------------------------------------------------


def edit_toml(text: str, config: Config, path: str) -> str | None:
    """``text`` (a configuration file) edited so that it reads as ``config``, changing only the
    keys, entries and tables that differ: comments, blank lines, key order, quoting and table
    style (``[[sources]]``, dotted headers, one-line or multi-line arrays) stay as they are.

    Compares ``[groups]``, ``[devices]`` and the ``[engine]`` timings; ``[database]`` and
    ``[[sources]]`` are never touched. Returns None when ``text`` is not a valid configuration
    (the caller then writes the file afresh).
    """
    try:
        old = parse_config(tomllib.loads(text), path)
        doc = tomlkit.parse(text)
    except (ConfigError, ValueError, RecursionError, tomlkit.exceptions.TOMLKitError):
        return None
    try:
        _edit_engine(doc, old, config)
        _edit_groups(doc, old, config)
        _edit_devices(doc, old, config)
    except (
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        AttributeError,
        AssertionError,
        tomlkit.exceptions.TOMLKitError,
    ):
        return None  # a layout this editor does not follow; the file is written afresh
    return tomlkit.dumps(doc)


def _is_trivia(key: object, item: object) -> bool:
    return key is None and isinstance(item, (tk_items.Whitespace, tk_items.Comment))


def _set_key(table: Any, key: str | tk_items.Key, value: Any) -> None:
    """Set ``key`` of ``table``: in place when it is there, else on a new line right after the
    table's last key (before the comments and blank lines that end the table)."""
    if key in table:
        table[key] = value
        return
    container = table.value if isinstance(table, tk_items.Table) else table
    if not isinstance(container, tk_container.Container):
        table[key] = value
        return
    body = container.body
    last = max(
        (i for i, (k, item) in enumerate(body) if k is not None and not _is_table(item)),
        default=None,
    )
    if last is None:
        table[key] = value
    else:
        container._insert_at(last + 1, key, value)


def _is_table(item: object) -> bool:
    return isinstance(item, (tk_items.Table, tk_items.AoT))


def _trailing_trivia(table: Any) -> list[tuple[Any, Any]]:
    """Pop the comments and blank lines that end ``table``'s body (they introduce what follows)."""
    if not isinstance(table, tk_items.Table):
        return []
    body = table.value.body
    n = len(body)
    while n > 0 and _is_trivia(*body[n - 1]):
        n -= 1
    if n == len(body):
        return []
    moved = body[n:]
    del body[n:]
    body.append((None, tk_items.Whitespace("\n")))
    return moved


def _last_table(parent: Any) -> Any:
    """The last table among ``parent``'s values, descending into super tables."""
    found = None
    for value in parent.values():
        if isinstance(value, tk_items.Table):
            found = value
    if found is not None and found.is_super_table():
        deeper = _last_table(found)
        return deeper if deeper is not None else found
    return found


def _add_table(
    parent: Any, key: str, table: Any, moved: list[tuple[Any, Any]] | None = None
) -> None:
    """Add ``table`` as ``parent[key]`` after ``parent``'s last table, taking over the comments and
    blank line that ended that table (a section comment stays above what it introduces), or
    ``moved`` when ``parent`` has no table yet."""
    last = _last_table(parent)
    if last is not None or moved is None:
        moved = _trailing_trivia(last)
    for k, item in moved:
        table.value._raw_append(k, item)
    parent[key] = table


def _remove_table(parent: Any, key: str) -> None:
    """Delete ``parent[key]``; the comments that closed it (introducing what follows) move to the
    end of the table before it."""
    table = parent[key]
    previous = None
    for k, value in parent.items():
        if k == key:
            break
        if isinstance(value, tk_items.Table):
            previous = value
    if isinstance(previous, tk_items.Table) and previous.is_super_table():
        previous = _last_table(previous)
    moved = _trailing_trivia(table)
    del parent[key]
    if not any(isinstance(item, tk_items.Comment) for _, item in moved):
        return
    if isinstance(previous, tk_items.Table):
        body = previous.value.body
        while body and _is_trivia(*body[-1]):
            body.pop()
        for k, item in moved:
            previous.value._raw_append(k, item)


def _range_table(rule: RangeRule) -> Any:
    table = tomlkit.table()
    if not rule.enabled:
        table["enabled"] = False
    if rule.min:
        table["min"] = rule.min
    table["max"] = rule.max
    table["window"] = format_duration(rule.window)
    if rule.severity != "Low":
        table["severity"] = rule.severity
    return table


def _allow_table(rule: AllowRule) -> Any:
    table = tomlkit.table()
    if not rule.enabled:
        table["enabled"] = False
    table["allow"] = list(rule.values)
    if rule.severity != "Low":
        table["severity"] = rule.severity
    return table


def _edit_list(table: Any, key: str, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """Make ``table[key]`` (an array holding ``old``) hold ``new``: one entry appended, removed or
    replaced is edited in the array itself, so a multi-line array keeps one entry a line."""
    array = table.get(key)
    if not isinstance(array, tk_items.Array) or list(array) != list(old):
        _set_key(table, key, list(new))
        return
    if len(new) == len(old) + 1 and new[: len(old)] == old:
        array.append(new[-1])
    elif len(new) == len(old) - 1:
        at = next((i for i in range(len(new)) if new[i] != old[i]), len(new))
        if old[:at] + old[at + 1 :] != new:
            _set_key(table, key, list(new))
            return
        del array[at]
    elif len(new) == len(old) and sum(a != b for a, b in zip(old, new, strict=True)) == 1:
        at = next(i for i in range(len(new)) if new[i] != old[i])
        array[at] = new[at]
    else:
        _set_key(table, key, list(new))


def _edit_rule(table: Any, old: RangeRule | AllowRule, new: RangeRule | AllowRule) -> None:
    """Change the keys of rule ``table`` whose meaning differs between ``old`` and ``new``."""
    if old.enabled != new.enabled:
        _set_key(table, "enabled", new.enabled)
    if isinstance(old, RangeRule) and isinstance(new, RangeRule):
        if old.min != new.min:
            _set_key(table, "min", new.min)
        if old.max != new.max or (new.enabled and "max" not in table):
            _set_key(table, "max", new.max)
        if old.window != new.window:
            _set_key(table, "window", format_duration(new.window))
    elif isinstance(old, AllowRule) and isinstance(new, AllowRule):
        if old.values != new.values:
            _edit_list(table, "allow", old.values, new.values)
    else:
        raise TypeError("a rule changed kind")
    if old.severity != new.severity:
        _set_key(table, "severity", new.severity)


def _edit_group(doc: Any, old: Group | None, new: Group) -> None:
    """Edit the tables of group ``new`` (``old`` as the file has it, None when it has none)."""
    before = old.range_rules | old.allow_rules if old is not None else {}
    after = new.range_rules | new.allow_rules
    if old is not None and before == after:
        return
    groups = doc.get("groups")
    if groups is None:
        groups = tomlkit.table(is_super_table=True)
        doc["groups"] = groups
    if new.name not in groups:  # an empty group is a [groups.NAME] header of its own
        _add_table(groups, new.name, tomlkit.table(is_super_table=bool(after)))
    group = groups[new.name]
    if not after and "rules" not in group:
        return
    moved = None
    if "rules" not in group:
        moved = _trailing_trivia(group)  # the first rule follows the group's own header
        group["rules"] = tomlkit.table(is_super_table=True)
    rules = group["rules"]
    for name in before.keys() - after.keys():
        _remove_table(rules, name)
    for name in [r.name for r in (*RANGE_RULES, *ALLOWLIST_RULES) if r.name in after]:
        rule = after[name]
        if name not in before:
            table = _range_table(rule) if isinstance(rule, RangeRule) else _allow_table(rule)
            _add_table(rules, name, table, moved)
            moved = None
        elif before[name] != rule:
            _edit_rule(rules[name], before[name], rule)


def _forget_headers(table: Any) -> None:
    """Drop the header text parsed for ``table`` and the tables under it."""
    if isinstance(table, tk_items.Table):
        table.display_name = None
        for value in table.value.values():
            _forget_headers(value)


def _same_rules(a: Group, b: Group) -> bool:
    return (a.range_rules, a.allow_rules) == (b.range_rules, b.allow_rules)


def _edit_groups(doc: Any, old: Config, new: Config) -> None:
    """Rename, remove, add and edit group tables; a renamed group keeps its place and comments."""
    renamed: dict[str, Group] = {}  # new key -> the group as the file spells it
    for key, group in old.groups.items():
        if key in new.groups and new.groups[key].name == group.name:
            continue
        target = next(
            (
                n
                for n in new.groups.values()
                if n.name != group.name
                and (n.key == key or n.key not in old.groups)
                and n.key not in renamed
                and _same_rules(n, group)
            ),
            None,
        )
        groups = doc["groups"]
        if target is not None and isinstance(groups, tk_items.Table):
            table = groups[group.name]
            groups.value._replace(group.name, target.name, table)
            _forget_headers(table)  # headers are then written from the keys: the new name
            renamed[target.key] = target
        else:
            _remove_table(groups, group.name)
    for key, group in new.groups.items():
        before = renamed.get(key)
        if before is None and key in old.groups and old.groups[key].name == group.name:
            before = old.groups[key]
        _edit_group(doc, before, group)


def _edit_devices(doc: Any, old: Config, new: Config) -> None:
    if old.devices == new.devices:
        return
    want = _devices_table(new)
    if "devices" not in doc:
        table = tomlkit.table()
        for device, group in want.items():
            table[tk_items.SingleKey(device, tk_items.KeyType.Basic)] = group
        doc["devices"] = table
        return
    table = doc["devices"]
    for device in [d for d in table if d not in want]:
        del table[device]
    for device, group in want.items():
        current = table.get(device)
        if device not in table:  # quoted, as device ids are in the documentation's examples
            _set_key(table, tk_items.SingleKey(device, tk_items.KeyType.Basic), group)
        elif not isinstance(current, str) or current.lower() != group.lower():
            _set_key(table, device, group)


def _edit_engine(doc: Any, old: Config, new: Config) -> None:
    if _timing(old) == _timing(new):
        return
    if "engine" not in doc:
        doc["engine"] = tomlkit.table()
    table = doc["engine"]
    for key, before, after in zip(
        ("lateness", "quiet", "horizon"),
        (old.lateness, old.quiet, old.horizon),
        (new.lateness, new.quiet, new.horizon),
        strict=True,
    ):
        if before != after:
            _set_key(table, key, format_duration(after))
    if old.hub != new.hub:
        if new.hub is None:
            table.pop("hub", None)
        else:
            _set_key(table, "hub", new.hub)
