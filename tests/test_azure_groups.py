"""Azure deviceSecurityGroups JSON in and out, groups as TOML, and merging (SPEC §3)."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from engine.azure_groups import (
    RESOURCE_TYPE,
    dump_azure_groups,
    groups_to_toml,
    load_azure_groups,
    merge_groups,
    parse_azure_groups,
)
from engine.catalogue import ALLOWLIST_RULES, RANGE_RULES
from engine.config import AllowRule, ConfigError, Group, RangeRule, parse_config

MQTT = "MqttD2CMessagesNotInAllowedRange"
CONN = "ActiveConnectionsNotInAllowedRange"
TO_IP = "ConnectionToIpNotAllowed"
PROC = "ProcessNotAllowed"
READ_ONLY = ("displayName", "description")


def window_rule(rule: str, enabled: bool = False, lo: int = 0, hi: int = 0, size: str = "PT15M"):
    return {
        "ruleType": rule,
        "displayName": f"{rule} display",
        "description": f"{rule} description",
        "isEnabled": enabled,
        "minThreshold": lo,
        "maxThreshold": hi,
        "timeWindowSize": size,
    }


def allow_rule(rule: str, enabled: bool = False, values: list[str] | None = None) -> dict:
    value_type = "IpCidr" if "Ip" in rule else "String"
    return {
        "ruleType": rule,
        "displayName": f"{rule} display",
        "isEnabled": enabled,
        "valueType": value_type,
        "allowlistValues": values or [],
    }


def azure_group(name: str = "samplesecuritygroup") -> dict[str, Any]:
    """A GET response in the shape Azure returns, with a few rules set."""
    windows = [window_rule(r.name) for r in RANGE_RULES]
    windows[0] = window_rule(windows[0]["ruleType"], True, 1, 20, "PT1H")
    windows[7] = window_rule(MQTT, True, 0, 500, "PT15M")
    windows[14] = window_rule(CONN, False, 2, 30, "PT5M")
    allows = [allow_rule(r.name) for r in ALLOWLIST_RULES]
    allows[0] = allow_rule(TO_IP, True, ["10.0.0.0/8", "2001:db8::/32"])
    allows[3] = allow_rule(PROC, False, ["ok"])
    return {
        "id": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Devices/iotHubs/hub"
        f"/providers/Microsoft.Security/deviceSecurityGroups/{name}",
        "name": name,
        "type": RESOURCE_TYPE,
        "properties": {
            "thresholdRules": [],
            "timeWindowRules": windows,
            "allowlistRules": allows,
            "denylistRules": [],
        },
    }


def strip_read_only(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k not in READ_ONLY}


def rules_by_type(group_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    props = group_json["properties"]
    return {
        r["ruleType"]: strip_read_only(r)
        for r in props["timeWindowRules"] + props["allowlistRules"]
    }


def sample_groups() -> list[Group]:
    return [
        Group(
            "Default",
            {
                MQTT: RangeRule(MQTT, True, 1, 500, 900),
                CONN: RangeRule(CONN, False, 3, 9, 86400),
            },
            {
                TO_IP: AllowRule(TO_IP, True, ("10.0.0.0/8", "::ffff:192.168.0.0/120")),
                PROC: AllowRule(PROC, True, ("ok", "/usr/bin/python3", "C:\\Tools\\x.exe")),
                "LocalUserNotAllowed": AllowRule("LocalUserNotAllowed", False, ("root",)),
            },
        ),
        Group("lab rack 2"),
    ]


# --- import shapes -------------------------------------------------------------------------------


def test_import_reads_time_window_and_allowlist_rules() -> None:
    [group] = parse_azure_groups(azure_group(), "g.json")
    assert group.name == "samplesecuritygroup"
    assert group.range_rules[MQTT] == RangeRule(MQTT, True, 0, 500, 900)
    assert group.range_rules["AmqpC2DMessagesNotInAllowedRange"].window == 3600
    assert group.range_rules[CONN] == RangeRule(CONN, False, 2, 30, 300)
    assert group.allow_rules[TO_IP].values == ("10.0.0.0/8", "2001:db8::/32")
    assert group.allow_rules[TO_IP].allows("10.1.1.1")
    assert group.allow_rules[PROC] == AllowRule(PROC, False, ("ok",))


def test_import_drops_disabled_rules_with_azure_blank_settings() -> None:
    [group] = parse_azure_groups(azure_group(), "g.json")
    assert set(group.range_rules) == {"AmqpC2DMessagesNotInAllowedRange", MQTT, CONN}
    assert set(group.allow_rules) == {TO_IP, PROC}


@pytest.mark.parametrize("shape", ["object", "list", "value"])
def test_import_accepts_one_group_a_bare_list_or_a_list_response(shape: str) -> None:
    g = azure_group()
    data: Any = {"object": g, "list": [g], "value": {"value": [g], "nextLink": None}}[shape]
    assert parse_azure_groups(data, "g.json") == parse_azure_groups(azure_group(), "g.json")


def test_import_takes_the_name_from_the_id_when_name_is_missing() -> None:
    g = azure_group("fromid")
    del g["name"]
    assert parse_azure_groups(g, "g.json")[0].name == "fromid"


def test_import_ignores_threshold_and_denylist_rules_and_unknown_keys() -> None:
    g = azure_group()
    g["properties"]["denylistRules"] = [{"ruleType": "Whatever", "denylistValues": ["x"]}]
    g["properties"]["thresholdRules"] = [{"ruleType": "Other", "minThreshold": "x"}]
    g["systemData"] = {"createdBy": "me"}
    g["properties"]["somethingNew"] = 1
    assert parse_azure_groups(g, "g.json") == parse_azure_groups(azure_group(), "g.json")


def test_import_of_missing_rule_lists_gives_an_empty_group() -> None:
    assert parse_azure_groups({"name": "x", "properties": {}}, "g.json") == [Group("x")]


def test_load_azure_groups_reads_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"value": [azure_group()]}).encode())
    assert load_azure_groups(path) == parse_azure_groups(azure_group(), "x")


# --- export and round trips ----------------------------------------------------------------------


def test_export_lists_all_20_rules_per_group() -> None:
    out = dump_azure_groups(sample_groups())
    assert [g["name"] for g in out["value"]] == ["Default", "lab rack 2"]
    for g in out["value"]:
        assert g["type"] == RESOURCE_TYPE
        props = g["properties"]
        assert [r["ruleType"] for r in props["timeWindowRules"]] == [r.name for r in RANGE_RULES]
        assert [r["ruleType"] for r in props["allowlistRules"]] == [r.name for r in ALLOWLIST_RULES]
        assert props["thresholdRules"] == [] and props["denylistRules"] == []


def test_export_writes_absent_rules_as_azure_shows_untouched_ones() -> None:
    empty = dump_azure_groups([Group("x")])["value"][0]["properties"]
    assert empty["timeWindowRules"][0] == {
        "ruleType": "AmqpC2DMessagesNotInAllowedRange",
        "isEnabled": False,
        "minThreshold": 0,
        "maxThreshold": 0,
        "timeWindowSize": "PT15M",
    }
    assert empty["allowlistRules"][0] == {
        "ruleType": TO_IP,
        "isEnabled": False,
        "valueType": "IpCidr",
        "allowlistValues": [],
    }
    assert empty["allowlistRules"][3]["valueType"] == "String"


def test_round_trip_azure_json_to_group_to_azure_json() -> None:
    source = azure_group()
    out = dump_azure_groups(parse_azure_groups(source, "g.json"))
    assert json.loads(json.dumps(out)) == out
    [group_out] = out["value"]
    assert group_out["name"] == source["name"]
    expected = rules_by_type(source)
    got = rules_by_type(group_out)
    # Every rule Azure listed comes back exactly (read-only texts aside).
    assert {k: got[k] for k in expected} == expected


def test_round_trip_azure_export_to_import_is_equal() -> None:
    groups = sample_groups()
    text = json.dumps(dump_azure_groups(groups))
    assert parse_azure_groups(json.loads(text), "g.json") == groups


def test_round_trip_azure_export_file_to_load(tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(dump_azure_groups(sample_groups()), indent=2))
    assert load_azure_groups(path) == sample_groups()


def test_round_trip_config_to_toml_to_config() -> None:
    groups = sample_groups()
    groups[0] = Group(
        groups[0].name,
        {**groups[0].range_rules, MQTT: RangeRule(MQTT, True, 1, 500, 900, "High")},
        {**groups[0].allow_rules, PROC: AllowRule(PROC, True, ("ok",), "Medium")},
    )
    text = groups_to_toml(groups)
    config = parse_config(tomllib.loads(text), "iotwatch.toml")
    assert config.groups == {g.name.lower(): g for g in groups}


def test_round_trip_spec_example_toml_groups(tmp_path: Path) -> None:
    data = {
        "groups": {
            "default": {
                "rules": {
                    MQTT: {"enabled": True, "min": 1, "max": 500, "window": "PT15M"},
                    TO_IP: {"allow": ["10.0.0.0/8", "2001:db8::/32"]},
                }
            }
        }
    }
    config = parse_config(data, "iotwatch.toml")
    again = parse_config(tomllib.loads(groups_to_toml(config.groups.values())), "x.toml")
    assert again.groups == config.groups
    via_azure = parse_azure_groups(dump_azure_groups(config.groups.values()), "g.json")
    assert {g.key: g for g in via_azure} == config.groups


def test_groups_to_toml_refuses_names_differing_only_in_case() -> None:
    with pytest.raises(ValueError, match="differs only in case"):
        groups_to_toml([Group("lab"), Group("LAB")])


# --- merging -------------------------------------------------------------------------------------


def test_azure_groups_replace_same_named_groups_case_insensitively() -> None:
    toml = {
        "groups": {
            "Default": {"rules": {MQTT: {"max": 5, "severity": "High"}, PROC: {"allow": ["a"]}}},
            "keep": {"rules": {CONN: {"max": 1}}},
        }
    }
    config = parse_config(toml, "iotwatch.toml")
    [imported] = parse_azure_groups(azure_group("DEFAULT"), "g.json")
    merged = merge_groups(config, [imported, Group("new")])
    assert set(merged.groups) == {"default", "keep", "new"}
    assert merged.groups["keep"] == config.groups["keep"]
    replaced = merged.group("default")
    assert replaced.name == "DEFAULT"
    assert set(replaced.range_rules) == set(imported.range_rules)
    assert replaced.allow_rules[PROC].values == ("ok",)
    # Azure has no severities: the replaced group's severity of the same rule is kept.
    assert replaced.range_rules[MQTT] == RangeRule(MQTT, True, 0, 500, 900, "High")
    assert config.group("default").range_rules[MQTT].max == 5  # the original is untouched


# --- validation ----------------------------------------------------------------------------------


def mutate(path: str, value: Any) -> dict[str, Any]:
    """A list response whose element at ``path`` (keys and indexes joined by '/') is ``value``."""
    doc: dict[str, Any] = {"value": [azure_group()]}
    parts = [int(p) if p.isdigit() else p for p in path.split("/")]
    target: Any = doc
    for part in parts[:-1]:
        target = target[part]
    if value is DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return doc


DELETE = object()
TW = "value/0/properties/timeWindowRules"
AL = "value/0/properties/allowlistRules"
K_TW = "value[0].properties.timeWindowRules"
K_AL = "value[0].properties.allowlistRules"


@pytest.mark.parametrize(
    ("path", "value", "key", "reason"),
    [
        (
            f"{TW}/7/minThreshold",
            501,
            f"{K_TW}[7].minThreshold",
            "minThreshold 501 is above maxThreshold 500",
        ),
        (f"{TW}/3/maxThreshold", -1, f"{K_TW}[3].maxThreshold", "must not be negative (-1)"),
        (
            f"{TW}/3/maxThreshold",
            2.5,
            f"{K_TW}[3].maxThreshold",
            "must be an integer, not a number",
        ),
        (
            f"{TW}/3/maxThreshold",
            True,
            f"{K_TW}[3].maxThreshold",
            "must be an integer, not a boolean",
        ),
        (
            f"{TW}/3/maxThreshold",
            DELETE,
            f"{K_TW}[3].maxThreshold",
            "missing: a time-window rule needs maxThreshold",
        ),
        (
            f"{TW}/3/timeWindowSize",
            "PT30S",
            f"{K_TW}[3].timeWindowSize",
            "window PT30S is outside PT1M..P7D",
        ),
        (
            f"{TW}/3/timeWindowSize",
            "P8D",
            f"{K_TW}[3].timeWindowSize",
            "window P8D is outside PT1M..P7D",
        ),
        (
            f"{TW}/3/timeWindowSize",
            "PT0.5H",
            f"{K_TW}[3].timeWindowSize",
            "'PT0.5H' is not an ISO 8601 duration of whole seconds (e.g. 'PT15M')",
        ),
        (
            f"{TW}/3/isEnabled",
            "true",
            f"{K_TW}[3].isEnabled",
            "must be true or false, not a string",
        ),
        (f"{TW}/3/isEnabled", DELETE, f"{K_TW}[3].isEnabled", "missing: a rule needs isEnabled"),
        (
            f"{TW}/3/ruleType",
            "MqttD2CMessagesNotInAllowedRang",
            f"{K_TW}[3].ruleType",
            f"unknown ruleType 'MqttD2CMessagesNotInAllowedRang' (did you mean '{MQTT}'?)",
        ),
        (f"{TW}/3/ruleType", "Nope", f"{K_TW}[3].ruleType", "unknown ruleType 'Nope'"),
        (f"{TW}/3/ruleType", 7, f"{K_TW}[3].ruleType", "ruleType must be a string, not an integer"),
        (f"{TW}/3/ruleType", TO_IP, f"{K_TW}[3].ruleType", f"{TO_IP} belongs in allowlistRules"),
        (f"{AL}/1/ruleType", MQTT, f"{K_AL}[1].ruleType", f"{MQTT} belongs in timeWindowRules"),
        (
            f"{TW}/3/ruleType",
            MQTT,
            f"{K_TW}[7].ruleType",
            f"duplicate ruleType {MQTT} (also {K_TW}[3])",
        ),
        (
            f"{AL}/0/allowlistValues",
            ["10.0.0.0/8", "10.1.0.0/8"],
            f"{K_AL}[0].allowlistValues[1]",
            "allow-list entry '10.1.0.0/8' has host bits set (the network is 10.0.0.0/8)",
        ),
        (
            f"{AL}/0/allowlistValues",
            ["not-an-ip"],
            f"{K_AL}[0].allowlistValues[0]",
            "allow-list entry 'not-an-ip' is not an IP address or CIDR",
        ),
        (
            f"{AL}/0/allowlistValues",
            "10.0.0.0/8",
            f"{K_AL}[0].allowlistValues",
            "must be an array of strings, not a string",
        ),
        (
            f"{AL}/0/allowlistValues",
            DELETE,
            f"{K_AL}[0].allowlistValues",
            "missing: an allow-list rule needs allowlistValues",
        ),
        (
            f"{AL}/0/valueType",
            "String",
            f"{K_AL}[0].valueType",
            f"is 'String'; {TO_IP} takes 'IpCidr' values",
        ),
        (
            f"{AL}/3/valueType",
            "IpCidr",
            f"{K_AL}[3].valueType",
            f"is 'IpCidr'; {PROC} takes 'String' values",
        ),
        (f"{AL}/0", "x", f"{K_AL}[0]", "must be an object, not a string"),
        (
            "value/0/properties/timeWindowRules",
            {},
            K_TW,
            "must be an array, not an object",
        ),
        ("value/0/properties", [], "value[0].properties", "must be an object, not an array"),
        (
            "value/0/properties",
            DELETE,
            "value[0].properties",
            "missing: a device security group needs properties",
        ),
        (
            "value/0/type",
            "Microsoft.Security/iotSecuritySolutions",
            "value[0].type",
            "is 'Microsoft.Security/iotSecuritySolutions', not a "
            "Microsoft.Security/deviceSecurityGroups resource",
        ),
        ("value/0/name", "", "value[0].name", "must be a non-empty string"),
        ("value/0", 3, "value[0]", "must be an object, not an integer"),
        ("value", {}, "value", "must be an array, not an object"),
    ],
)
def test_invalid_azure_json_is_refused_naming_file_key_and_reason(
    path: str, value: Any, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        data = mutate(path, value if value is DELETE else copy.deepcopy(value))
        parse_azure_groups(data, "groups.json")
    err = info.value
    assert (err.file, err.key, err.reason) == ("groups.json", key, reason)
    assert str(err) == f"groups.json: {key}: {reason}"


def test_missing_group_name_is_refused() -> None:
    g = azure_group()
    del g["name"], g["id"]
    with pytest.raises(ConfigError) as info:
        parse_azure_groups([g], "g.json")
    assert str(info.value) == "g.json: [0].name: missing: a device security group needs a name"


def test_group_names_differing_only_in_case_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_azure_groups([azure_group("Lab"), azure_group("lab")], "g.json")
    assert info.value.key == "[1].name"
    assert info.value.reason == (
        "group 'lab' appears twice (also as 'Lab'; group names are case-insensitive)"
    )


def test_a_top_level_that_is_not_a_group_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_azure_groups("x", "g.json")
    assert info.value.key == "(file)"


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text('{\n  "name": "x",\n  "properties": {,}\n}\n')
    with pytest.raises(ConfigError) as info:
        load_azure_groups(path)
    assert info.value.key == "line 3"
    assert info.value.reason.startswith("invalid JSON: ")
    assert "\n" not in str(info.value)


def test_missing_azure_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    with pytest.raises(ConfigError) as info:
        load_azure_groups(path)
    assert str(info.value) == f"{path}: (file): no such file"
