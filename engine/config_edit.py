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

:func:`write_config` rewrites the TOML file: ``[groups]`` (in catalogue order, as
``engine.azure_groups.groups_to_toml`` writes them), and ``[engine]`` and ``[devices]`` when they
changed; ``[database]`` and ``[[sources]]`` are kept as the file wrote them. **Comments and the
layout of the file are not kept** (TOML libraries that write do not carry them); the previous
file is kept next to it as ``FILE.bak``.
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

from engine.allowlist import IP_RULES, validate_entry
from engine.azure_groups import groups_to_toml
from engine.catalogue import BY_ID, BY_NAME, RuleType
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


def _timing(config: Config) -> tuple[int, int, int]:
    return (config.lateness, config.quiet, config.horizon)


def config_to_toml(config: Config, path: str, raw: Mapping[str, Any] | None = None) -> str:
    """The TOML text of ``config`` to be written at ``path``, keeping what ``raw`` (the file's
    current tables) says where it agrees with ``config``."""
    raw = dict(raw or {})
    base = os.path.dirname(path)
    data: dict[str, Any] = {}
    if _same(raw, "engine", path, config):
        data["engine"] = raw["engine"]
    elif _timing(config) != (DEFAULT_LATENESS, DEFAULT_QUIET, DEFAULT_HORIZON) or "engine" in raw:
        data["engine"] = {
            "lateness": format_duration(config.lateness),
            "horizon": format_duration(config.horizon),
            "quiet": format_duration(config.quiet),
        }
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


def write_config(config: Config, path: str | os.PathLike[str] | None = None) -> str:
    """Write ``config`` as TOML to ``path`` (default ``config.path``) and return the path.

    The previous file, if any, is copied to ``PATH.bak`` first; the new one replaces it
    atomically. Comments of the previous file are not kept. Raises ValueError when there is no
    path or the text would not read back as ``config``, OSError when the file cannot be written.
    """
    if path is None:
        path = config.path
    if path is None:
        raise ValueError("the configuration has no file to write")
    target = os.fspath(path)
    raw: dict[str, Any] = {}
    exists = os.path.exists(target)
    if exists:
        with (
            contextlib.suppress(OSError, UnicodeDecodeError, ValueError, RecursionError),
            open(target, "rb") as f,
        ):
            raw = tomllib.load(f)
    text = config_to_toml(config, target, raw)
    back = parse_config(tomllib.loads(text), target)
    if (back.groups, back.devices, _timing(back)) != (
        config.groups,
        config.devices,
        _timing(config),
    ):
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
