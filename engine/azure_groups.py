"""Azure ``deviceSecurityGroups`` JSON (api-version 2019-08-01) in and out, and groups as TOML.

Import reads one group object (``name``, ``properties``), a bare list of them or a list
response ``{"value": [...]}``. Of ``properties`` it reads ``timeWindowRules`` and
``allowlistRules``; ``thresholdRules`` and ``denylistRules`` are ignored (no rule type of the
catalogue uses them), as are read-only or unknown keys (``id``, ``displayName``, ``description``,
``systemData``, ``nextLink``). A group without ``name`` takes the last segment of its ``id``.
``type``, when present, must be ``Microsoft.Security/deviceSecurityGroups``; ``valueType``, when
present, must be ``IpCidr`` for the IP rules and ``String`` for the others. Every rule needs
``ruleType`` and ``isEnabled``; a time-window rule also ``minThreshold``, ``maxThreshold`` and
``timeWindowSize``, an allow-list rule also ``allowlistValues``. Values are validated as in the
TOML file. A disabled rule that carries Azure's blank settings (thresholds 0, window PT15M, or an
empty list) is dropped: it is the same as an absent rule, and dropping it keeps imported groups
(and their TOML) small.

Export lists all 20 rules of every group, in catalogue order; a rule absent from a group is written
the way Azure shows an untouched rule: disabled, thresholds 0, window PT15M, no values. Azure has no
per-rule severity, so severities are not exported; an imported rule has severity ``Low`` (but see
:func:`merge_groups`). The export carries no ``id``: that needs the IoT hub's resource id.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import tomli_w

from engine.allowlist import IP_RULES
from engine.catalogue import ALLOWLIST_RULES, BY_NAME, RANGE_RULES, RuleType
from engine.config import (
    DEFAULT_WINDOW,
    AllowRule,
    Config,
    ConfigError,
    Group,
    Invalid,
    Key,
    RangeRule,
    check_allow_values,
    check_bool,
    check_threshold,
    check_window,
    group_name_reason,
    key_path,
    kind_of,
    read_text,
    unknown_rule_reason,
    unreadable,
)
from engine.timestamps import format_duration

R = TypeVar("R", RangeRule, AllowRule)
T = TypeVar("T")
RESOURCE_TYPE = "Microsoft.Security/deviceSecurityGroups"
API_VERSION = "2019-08-01"


def _value_type(rule: RuleType) -> str:
    return "IpCidr" if rule.id in IP_RULES else "String"


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: Key, reason: str) -> ConfigError:
        return ConfigError(self.path, key_path(*key) or "(file)", reason)

    def need(self, obj: dict[str, Any], name: str, key: Key, what: str) -> Any:
        if name not in obj:
            raise self.fail((*key, name), f"missing: {what} needs {name}")
        return obj[name]

    def check(self, key: Key, check: Callable[..., T], *args: object) -> T:
        try:
            return check(*args)
        except Invalid as exc:
            where = key if exc.index is None else (*key, exc.index)
            raise self.fail(where, exc.reason) from None

    def obj(self, value: object, key: Key) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be an object, not {kind_of(value, True)}")
        return value

    def array(self, value: object, key: Key) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(key, f"must be an array, not {kind_of(value, True)}")
        return value


def load_azure_groups(path: str | os.PathLike[str]) -> list[Group]:
    """Read Azure ``deviceSecurityGroups`` JSON from ``path``; raises :class:`ConfigError`."""
    # utf-8-sig: PowerShell and the Azure CLI on Windows write a byte-order mark.
    name, text = read_text(path, "utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            name, f"line {exc.lineno}", f"invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except (RecursionError, ValueError) as exc:
        raise unreadable(name, "JSON", exc) from None
    return parse_azure_groups(data, name)


def parse_azure_groups(data: object, path: str) -> list[Group]:
    """Validate decoded Azure JSON; ``path`` names the source in errors."""
    r = _Reader(path)
    items: list[tuple[Key, object]]
    if isinstance(data, list):
        items = [((i,), g) for i, g in enumerate(data)]
    elif isinstance(data, dict) and "value" in data and "properties" not in data:
        value = r.array(data["value"], ("value",))
        items = [(("value", i), g) for i, g in enumerate(value)]
    elif isinstance(data, dict):
        items = [((), data)]
    else:
        raise r.fail(
            (),
            'expected a device security group object, a list of them or {"value": [...]}, '
            f"not {kind_of(data, True)}",
        )
    groups: list[Group] = []
    seen: dict[str, str] = {}
    for key, item in items:
        group = _parse_group(r, item, key)
        if group.key in seen:
            raise r.fail(
                (*key, "name"),
                f"group {group.name!r} appears twice (also as {seen[group.key]!r}; "
                "group names are case-insensitive)",
            )
        seen[group.key] = group.name
        groups.append(group)
    return groups


def _parse_group(r: _Reader, value: object, key: Key) -> Group:
    obj = r.obj(value, key)
    if "name" in obj:
        name = obj["name"]
        if not isinstance(name, str) or not name.strip():
            raise r.fail((*key, "name"), "must be a non-empty string")
    elif isinstance(obj.get("id"), str) and obj["id"].rstrip("/"):
        name = obj["id"].rstrip("/").rsplit("/", 1)[-1]
    else:
        raise r.fail((*key, "name"), "missing: a device security group needs a name")
    reason = group_name_reason(name)
    if reason is not None:
        raise r.fail((*key, "name"), reason)
    kind = obj.get("type", RESOURCE_TYPE)
    if not isinstance(kind, str) or kind.lower() != RESOURCE_TYPE.lower():
        shown = repr(kind) if isinstance(kind, str) else kind_of(kind, True)
        raise r.fail((*key, "type"), f"is {shown}, not a {RESOURCE_TYPE} resource")
    pkey = (*key, "properties")
    props = r.obj(r.need(obj, "properties", key, "a device security group"), pkey)
    range_rules: dict[str, RangeRule] = {}
    allow_rules: dict[str, AllowRule] = {}
    where: dict[str, str] = {}
    for list_name, want_range in (("timeWindowRules", True), ("allowlistRules", False)):
        lkey = (*pkey, list_name)
        for i, item in enumerate(r.array(props.get(list_name, []), lkey)):
            rkey = (*lkey, i)
            rule_obj = r.obj(item, rkey)
            rule_type = r.need(rule_obj, "ruleType", rkey, "a rule")
            rule = BY_NAME.get(rule_type) if isinstance(rule_type, str) else None
            if rule is None:
                raise r.fail((*rkey, "ruleType"), unknown_rule_reason(rule_type))
            if rule.is_range != want_range:
                other = "timeWindowRules" if rule.is_range else "allowlistRules"
                raise r.fail((*rkey, "ruleType"), f"{rule.name} belongs in {other}")
            if rule.name in where:
                raise r.fail(
                    (*rkey, "ruleType"), f"duplicate ruleType {rule.name} (also {where[rule.name]})"
                )
            where[rule.name] = key_path(*lkey, i)
            if want_range:
                parsed = _parse_range(r, rule, rule_obj, rkey)
                if parsed.enabled or (parsed.min, parsed.max, parsed.window) != (
                    0,
                    0,
                    DEFAULT_WINDOW,
                ):
                    range_rules[rule.name] = parsed
            else:
                allowed = _parse_allow(r, rule, rule_obj, rkey)
                if allowed.enabled or allowed.values:
                    allow_rules[rule.name] = allowed
    return Group(name, range_rules, allow_rules)


def _parse_range(r: _Reader, rule: RuleType, obj: dict[str, Any], key: Key) -> RangeRule:
    enabled = r.check(
        (*key, "isEnabled"), check_bool, r.need(obj, "isEnabled", key, "a rule"), True
    )
    low = r.check(
        (*key, "minThreshold"),
        check_threshold,
        r.need(obj, "minThreshold", key, "a time-window rule"),
        True,
    )
    high = r.check(
        (*key, "maxThreshold"),
        check_threshold,
        r.need(obj, "maxThreshold", key, "a time-window rule"),
        True,
    )
    if low > high:
        raise r.fail((*key, "minThreshold"), f"minThreshold {low} is above maxThreshold {high}")
    window = r.check(
        (*key, "timeWindowSize"),
        check_window,
        r.need(obj, "timeWindowSize", key, "a time-window rule"),
    )
    return RangeRule(rule.name, enabled, low, high, window)


def _parse_allow(r: _Reader, rule: RuleType, obj: dict[str, Any], key: Key) -> AllowRule:
    enabled = r.check(
        (*key, "isEnabled"), check_bool, r.need(obj, "isEnabled", key, "a rule"), True
    )
    if "valueType" in obj and obj["valueType"] != _value_type(rule):
        shown = obj["valueType"]
        shown = repr(shown) if isinstance(shown, str) else kind_of(shown, True)
        raise r.fail(
            (*key, "valueType"), f"is {shown}; {rule.name} takes {_value_type(rule)!r} values"
        )
    values = r.check(
        (*key, "allowlistValues"),
        check_allow_values,
        rule.id,
        r.need(obj, "allowlistValues", key, "an allow-list rule"),
        True,
    )
    return AllowRule(rule.name, enabled, values)


def dump_azure_groups(groups: Iterable[Group]) -> dict[str, Any]:
    """``{"value": [...]}`` with one Azure group object per group, listing all 20 rules."""
    return {"value": [group_to_azure(g) for g in groups]}


def group_to_azure(group: Group) -> dict[str, Any]:
    """One group as an Azure ``deviceSecurityGroups`` resource object."""
    window_rules = []
    for rule in RANGE_RULES:
        rr = group.range_rules.get(rule.name)
        window_rules.append(
            {
                "ruleType": rule.name,
                "isEnabled": rr.enabled if rr else False,
                "minThreshold": rr.min if rr else 0,
                "maxThreshold": rr.max if rr else 0,
                "timeWindowSize": format_duration(rr.window if rr else DEFAULT_WINDOW),
            }
        )
    allow_rules = []
    for rule in ALLOWLIST_RULES:
        ar = group.allow_rules.get(rule.name)
        allow_rules.append(
            {
                "ruleType": rule.name,
                "isEnabled": ar.enabled if ar else False,
                "valueType": _value_type(rule),
                "allowlistValues": list(ar.values) if ar else [],
            }
        )
    return {
        "name": group.name,
        "type": RESOURCE_TYPE,
        "properties": {
            "thresholdRules": [],
            "timeWindowRules": window_rules,
            "allowlistRules": allow_rules,
            "denylistRules": [],
        },
    }


def _check_unique(groups: Iterable[Group]) -> list[Group]:
    out: dict[str, Group] = {}
    for g in groups:
        if g.key in out:
            raise ValueError(f"group {g.name!r} differs only in case from {out[g.key].name!r}")
        out[g.key] = g
    return list(out.values())


def groups_to_toml(groups: Iterable[Group]) -> str:
    """``[groups.NAME.rules.RULE]`` tables that :func:`engine.config.parse_config` reads back.

    Rules are written in catalogue order, ``severity`` only when it is not ``Low``. Raises
    ValueError when two groups differ only in the case of their names.
    """
    tables: dict[str, Any] = {}
    for group in _check_unique(groups):
        rules: dict[str, Any] = {}
        for rule in RANGE_RULES:
            rr = group.range_rules.get(rule.name)
            if rr is not None:
                table: dict[str, Any] = {
                    "enabled": rr.enabled,
                    "min": rr.min,
                    "max": rr.max,
                    "window": format_duration(rr.window),
                }
                if rr.severity != "Low":
                    table["severity"] = rr.severity
                rules[rule.name] = table
        for rule in ALLOWLIST_RULES:
            ar = group.allow_rules.get(rule.name)
            if ar is not None:
                table = {"enabled": ar.enabled, "allow": list(ar.values)}
                if ar.severity != "Low":
                    table["severity"] = ar.severity
                rules[rule.name] = table
        tables[group.name] = {"rules": rules} if rules else {}
    return tomli_w.dumps({"groups": tables})


def merge_groups(config: Config, groups: Iterable[Group]) -> Config:
    """``config`` with ``groups`` replacing its same-named (case-insensitive) groups.

    A later group of ``groups`` replaces an earlier one of the same name. Azure JSON has no
    severities, so a replacing rule whose severity is ``Low`` keeps the severity the replaced
    group gave the same rule.
    """
    merged = dict(config.groups)
    for group in groups:
        old = config.groups.get(group.key)
        if old is not None:
            group = Group(
                group.name,
                {
                    n: _keep_severity(rule, old.range_rules.get(n))
                    for n, rule in group.range_rules.items()
                },
                {
                    n: _keep_severity(rule, old.allow_rules.get(n))
                    for n, rule in group.allow_rules.items()
                },
            )
        merged[group.key] = group
    return config.replace(groups=merged)


def _keep_severity(rule: R, old: R | None) -> R:
    if old is not None and rule.severity == "Low" and old.severity != "Low":
        return dataclasses.replace(rule, severity=old.severity)
    return rule
