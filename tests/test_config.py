"""The TOML configuration (SPEC §3): parsing, defaults, device mapping and validation."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from engine.catalogue import D2C
from engine.config import (
    AllowRule,
    Config,
    ConfigError,
    DeviceMap,
    Group,
    RangeRule,
    SourceConfig,
    load_config,
    parse_config,
)

SPEC_EXAMPLE = """
[engine]
lateness = "PT1M"     # allowed out-of-orderness of one stream
quiet = "PT1H"        # an allow-list alert closes after this long without a new occurrence

[database]
path = "iotwatch.db"

[[sources]]
type = "hub-log"              # hub-log | hub-events | security-messages | serial
path = "logs/**/*.json"       # file sources: a glob; every matching file is tailed

[[sources]]
type = "serial"
port = "/dev/ttyACM0"         # or a pyserial URL: socket://, rfc2217://, loop://
baudrate = 115200
device = "bench-board-1"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
enabled = true                # default true when the table is present
min = 1
max = 500
window = "PT15M"              # ISO 8601, whole seconds, from PT1M to P7D

[groups.default.rules.ConnectionToIpNotAllowed]
allow = ["10.0.0.0/8", "2001:db8::/32"]

[devices]                     # device -> security group; an exact id also declares the device
"sensor-42" = "default"
"lab-*" = "lab"               # glob; an exact id wins over patterns, then the first pattern
"""

MQTT = "MqttD2CMessagesNotInAllowedRange"
TO_IP = "ConnectionToIpNotAllowed"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "iotwatch.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def refused(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert str(err) == f"{path}: {err.key}: {err.reason}"
    assert "\n" not in str(err)
    return err


# --- the SPEC example and defaults ---------------------------------------------------------------


def test_spec_example_loads(tmp_path: Path) -> None:
    config = load(tmp_path, SPEC_EXAMPLE)
    base = str(tmp_path)
    assert config.path == str(tmp_path / "iotwatch.toml")
    assert config.lateness == 60
    assert config.quiet == 3600
    assert config.db_path == os.path.join(base, "iotwatch.db")
    assert config.sources == (
        SourceConfig(
            "hub-log", os.path.join(base, "logs/**/*.json"), None, 115200, None, "hub-log"
        ),
        SourceConfig("serial", None, "/dev/ttyACM0", 115200, "bench-board-1", None),
    )
    default = config.group("default")
    assert default.range_rules == {MQTT: RangeRule(MQTT, True, 1, 500, 900, "Low")}
    assert default.allow_rules == {
        TO_IP: AllowRule(TO_IP, True, ("10.0.0.0/8", "2001:db8::/32"), "Low")
    }
    assert default.allow_rules[TO_IP].matcher.allows("10.9.9.9")
    assert config.devices.declared == frozenset({"sensor-42"})
    assert config.devices.group_of("sensor-42") == "default"
    assert config.devices.group_of("lab-7") == "lab"


def test_relative_paths_are_relative_to_the_config_file_folder() -> None:
    data = {"database": {"path": "x.db"}, "sources": [{"type": "hub-log", "path": "logs/*"}]}
    config = parse_config(data, os.path.join("conf", "iotwatch.toml"))
    assert config.db_path == os.path.join("conf", "x.db")
    assert config.sources[0].path == os.path.join("conf", "logs/*")
    bare = parse_config(data, "iotwatch.toml")
    assert bare.db_path == "x.db"
    absolute = parse_config({"database": {"path": os.path.abspath("y.db")}}, "c/iotwatch.toml")
    assert absolute.db_path == os.path.abspath("y.db")


def test_empty_file_is_the_default_configuration(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.lateness == 60
    assert config.quiet == 3600
    assert config.db_path is None
    assert config.sources == ()
    assert config.groups == {}
    assert config.devices.group_of("anything") == "default"


def test_default_config_has_everything_disabled() -> None:
    config = Config.default()
    assert config.path is None
    assert config.groups == {}
    group = config.group("default")
    assert group.range_rules == {}
    assert group.allow_rules == {}
    assert group.range_rule(MQTT) is None
    assert group.allow_rule(TO_IP) is None


def test_engine_durations(tmp_path: Path) -> None:
    config = load(tmp_path, '[engine]\nlateness = "PT0S"\nquiet = "P1DT2H"\n')
    assert (config.lateness, config.quiet) == (0, 93600)


def test_horizon_defaults_to_one_day_and_is_read(tmp_path: Path) -> None:
    assert load(tmp_path, "").horizon == 86400
    assert load(tmp_path, '[engine]\nhorizon = "PT1M"\nlateness = "PT1M"\n').horizon == 60
    assert load(tmp_path, '[engine]\nhorizon = "P30D"\n').horizon == 30 * 86400


def test_a_source_may_set_its_own_lateness(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [[sources]]
        type = "security-messages"
        path = "agents/*.jsonl"
        lateness = "PT6H"

        [[sources]]
        type = "hub-log"
        path = "logs/*.json"
        """,
    )
    agent, hub = config.sources
    assert (agent.lateness, hub.lateness) == (6 * 3600, None)
    assert (config.lateness_of(agent), config.lateness_of(hub)) == (6 * 3600, 60)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[engine]\nhorizon = "PT59S"\n', "engine.horizon", "must be from PT1M to P30D"),
        ('[engine]\nhorizon = "P31D"\n', "engine.horizon", "must be from PT1M to P30D"),
        (
            '[engine]\nhorizon = "PT10M"\nlateness = "PT11M"\n',
            "engine.horizon",
            "lateness PT11M is beyond the horizon PT10M (an event is counted only within the"
            " horizon, so its window could never wait that long)",
        ),
        (
            '[engine]\nlateness = "P2D"\n',
            "engine.lateness",
            "lateness P2D is beyond the horizon P1D (an event is counted only within the"
            " horizon, so its window could never wait that long)",
        ),
        (
            '[[sources]]\ntype = "hub-log"\npath = "x"\nlateness = "P2D"\n',
            "sources[0].lateness",
            "lateness P2D is beyond the horizon P1D (an event is counted only within the"
            " horizon, so its window could never wait that long)",
        ),
        (
            '[[sources]]\ntype = "serial"\nport = "x"\nlateness = "P8D"\n',
            "sources[0].lateness",
            "must be at most P7D",
        ),
        (
            '[[sources]]\ntype = "hub-log"\npath = "x"\nlateness = 60\n',
            "sources[0].lateness",
            "must be an ISO 8601 duration string such as 'PT15M', not an integer",
        ),
    ],
)
def test_horizon_and_lateness_are_validated(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    err = refused(tmp_path, text)
    assert (err.key, err.reason) == (key, reason)


def test_range_rule_defaults_enabled_min_0_window_pt15m_severity_low(tmp_path: Path) -> None:
    config = load(tmp_path, f"[groups.default.rules.{MQTT}]\nmax = 5\n")
    assert config.group("default").range_rules[MQTT] == RangeRule(MQTT, True, 0, 5, 900, "Low")


def test_disabled_range_rule_may_omit_max(tmp_path: Path) -> None:
    config = load(tmp_path, f"[groups.default.rules.{MQTT}]\nenabled = false\nmin = 3\n")
    rule = config.group("default").range_rules[MQTT]
    assert rule == RangeRule(MQTT, False, 3, 3, 900, "Low")
    assert config.group("default").range_rule(MQTT) is None


def test_allow_rule_defaults_enabled_and_empty(tmp_path: Path) -> None:
    config = load(tmp_path, f"[groups.default.rules.{TO_IP}]\n")
    rule = config.group("default").allow_rules[TO_IP]
    assert rule == AllowRule(TO_IP, True, (), "Low")
    assert not rule.allows("10.0.0.1")


def test_severity_per_rule_is_case_insensitive_and_canonical(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""
        [groups.default.rules.{MQTT}]
        max = 5
        severity = "high"
        [groups.default.rules.{TO_IP}]
        severity = "Informational"
        """,
    )
    assert config.group("default").range_rules[MQTT].severity == "High"
    assert config.group("default").allow_rules[TO_IP].severity == "Informational"


def test_rules_absent_from_a_group_are_disabled(tmp_path: Path) -> None:
    config = load(tmp_path, f"[groups.default.rules.{MQTT}]\nmax = 5\n")
    group = config.group("default")
    assert group.range_rule(MQTT) is not None
    assert group.range_rule(D2C["mqtt"]) is not None
    assert group.range_rule(D2C["http"]) is None
    assert group.range_rule("HttpD2CMessagesNotInAllowedRange") is None
    assert group.allow_rule("ProcessNotAllowed") is None


def test_empty_group_table_defines_a_group_with_every_rule_disabled(tmp_path: Path) -> None:
    config = load(tmp_path, "[groups.lab]\n[groups.ops.rules]\n")
    assert config.groups == {"lab": Group("lab"), "ops": Group("ops")}


# --- device map ----------------------------------------------------------------------------------


def test_device_map_exact_id_wins_over_patterns(tmp_path: Path) -> None:
    config = load(tmp_path, '[devices]\n"lab-*" = "lab"\n"lab-1" = "special"\n')
    assert config.devices.group_of("lab-1") == "special"
    assert config.devices.group_of("lab-2") == "lab"


def test_device_map_first_pattern_in_file_order_wins(tmp_path: Path) -> None:
    config = load(tmp_path, '[devices]\n"lab-1*" = "first"\n"lab-*" = "second"\n"*" = "third"\n')
    assert config.devices.group_of("lab-12") == "first"
    assert config.devices.group_of("lab-2") == "second"
    assert config.devices.group_of("ops-1") == "third"
    reversed_order = load(tmp_path, '[devices]\n"*" = "third"\n"lab-1*" = "first"\n')
    assert reversed_order.devices.group_of("lab-12") == "third"


def test_unmapped_devices_belong_to_group_default(tmp_path: Path) -> None:
    config = load(tmp_path, '[devices]\n"lab-*" = "lab"\n')
    assert config.devices.group_of("sensor-1") == "default"
    assert config.group_for("sensor-1").name == "default"


def test_device_patterns_are_globs_matched_case_sensitively(tmp_path: Path) -> None:
    config = load(tmp_path, '[devices]\n"lab-?" = "a"\n"cam[0-9]" = "b"\n"Sensor" = "c"\n')
    assert config.devices.group_of("lab-1") == "a"
    assert config.devices.group_of("lab-12") == "default"
    assert config.devices.group_of("LAB-1") == "default"
    assert config.devices.group_of("cam7") == "b"
    assert config.devices.group_of("sensor") == "default"
    assert config.devices.declared == frozenset({"Sensor"})


def test_group_names_compare_case_insensitively(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f"""
        [groups.Lab.rules.{MQTT}]
        max = 7
        [devices]
        "lab-*" = "LAB"
        """,
    )
    assert set(config.groups) == {"lab"}
    assert config.groups["lab"].name == "Lab"
    assert config.devices.group_of("lab-1") == "lab"
    assert config.group("lAb").range_rules[MQTT].max == 7
    assert config.group_for("lab-1").range_rules[MQTT].max == 7


def test_device_in_a_group_no_table_defines_gets_an_empty_group(tmp_path: Path) -> None:
    config = load(tmp_path, '[devices]\n"x" = "nowhere"\n')
    group = config.group_for("x")
    assert group.name == "nowhere"
    assert group.range_rules == {} and group.allow_rules == {}


def test_device_map_lookups_are_cached_and_stable() -> None:
    devices = DeviceMap({"a": "G1"}, (("b*", "G2"),))
    for _ in range(3):
        assert devices.group_of("a") == "g1"
        assert devices.group_of("bb") == "g2"
        assert devices.group_of("c") == "default"


# --- validation: one-line "FILE: KEY: REASON" ----------------------------------------------------

RULE = "groups.default.rules"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        # min above max
        (
            f"[{RULE}.{MQTT}]\nmin = 5\nmax = 3\n",
            f"{RULE}.{MQTT}.min",
            "min 5 is above max 3",
        ),
        # negative thresholds
        (
            f"[{RULE}.{MQTT}]\nmin = -1\nmax = 3\n",
            f"{RULE}.{MQTT}.min",
            "must not be negative (-1)",
        ),
        (f"[{RULE}.{MQTT}]\nmax = -3\n", f"{RULE}.{MQTT}.max", "must not be negative (-3)"),
        # non-integer thresholds
        (f"[{RULE}.{MQTT}]\nmax = 2.5\n", f"{RULE}.{MQTT}.max", "must be an integer, not a float"),
        (
            f"[{RULE}.{MQTT}]\nmax = true\n",
            f"{RULE}.{MQTT}.max",
            "must be an integer, not a boolean",
        ),
        (f'[{RULE}.{MQTT}]\nmax = "5"\n', f"{RULE}.{MQTT}.max", "must be an integer, not a string"),
        (
            f"[{RULE}.{MQTT}]\nmax = 2147483648\n",
            f"{RULE}.{MQTT}.max",
            "must be at most 2147483647 (2147483648)",
        ),
        (
            f"[{RULE}.{MQTT}]\nmin = 1\n",
            f"{RULE}.{MQTT}.max",
            "missing: an enabled range rule needs a max",
        ),
        # window bounds and whole seconds
        (
            f'[{RULE}.{MQTT}]\nmax = 1\nwindow = "PT59S"\n',
            f"{RULE}.{MQTT}.window",
            "window PT59S is outside PT1M..P7D",
        ),
        (
            f'[{RULE}.{MQTT}]\nmax = 1\nwindow = "P7DT1S"\n',
            f"{RULE}.{MQTT}.window",
            "window P7DT1S is outside PT1M..P7D",
        ),
        (
            f'[{RULE}.{MQTT}]\nmax = 1\nwindow = "PT1.5M"\n',
            f"{RULE}.{MQTT}.window",
            "'PT1.5M' is not an ISO 8601 duration of whole seconds (e.g. 'PT15M')",
        ),
        (
            f'[{RULE}.{MQTT}]\nmax = 1\nwindow = "P1M"\n',
            f"{RULE}.{MQTT}.window",
            "'P1M' is not an ISO 8601 duration of whole seconds (e.g. 'PT15M')",
        ),
        (
            f"[{RULE}.{MQTT}]\nmax = 1\nwindow = 900\n",
            f"{RULE}.{MQTT}.window",
            "must be an ISO 8601 duration string such as 'PT15M', not an integer",
        ),
        # other range-rule values
        (
            f'[{RULE}.{MQTT}]\nmax = 1\nenabled = "yes"\n',
            f"{RULE}.{MQTT}.enabled",
            "must be true or false, not a string",
        ),
        (
            f'[{RULE}.{MQTT}]\nmax = 1\nseverity = "Critical"\n',
            f"{RULE}.{MQTT}.severity",
            "severity 'Critical' is not one of Low, Medium, High, Informational",
        ),
        # malformed CIDR, naming the entry
        (
            f'[{RULE}.{TO_IP}]\nallow = ["10.0.0.0/8", "10.0.0.1/8"]\n',
            f"{RULE}.{TO_IP}.allow[1]",
            "allow-list entry '10.0.0.1/8' has host bits set (the network is 10.0.0.0/8)",
        ),
        (
            f'[{RULE}.{TO_IP}]\nallow = ["10.0.0.0/33"]\n',
            f"{RULE}.{TO_IP}.allow[0]",
            "allow-list entry '10.0.0.0/33' is not an IP address or CIDR",
        ),
        (
            f'[{RULE}.LocalUserNotAllowed]\nallow = ["root", ""]\n',
            f"{RULE}.LocalUserNotAllowed.allow[1]",
            "allow-list entry '' is empty",
        ),
        (
            f"[{RULE}.ProcessNotAllowed]\nallow = [1]\n",
            f"{RULE}.ProcessNotAllowed.allow[0]",
            "allow-list entry an integer is not a string",
        ),
        (
            f'[{RULE}.ProcessNotAllowed]\nallow = "ok"\n',
            f"{RULE}.ProcessNotAllowed.allow",
            "must be an array of strings, not a string",
        ),
        # unknown ruleType, with and without a suggestion
        (
            f"[{RULE}.MqttD2CMessagesNotInAllowedRage]\nmax = 1\n",
            f"{RULE}.MqttD2CMessagesNotInAllowedRage",
            f"unknown ruleType 'MqttD2CMessagesNotInAllowedRage' (did you mean '{MQTT}'?)",
        ),
        (
            f"[{RULE}.mqttd2cmessagesnotinallowedrange]\nmax = 1\n",
            f"{RULE}.mqttd2cmessagesnotinallowedrange",
            f"unknown ruleType 'mqttd2cmessagesnotinallowedrange' (did you mean '{MQTT}'?)",
        ),
        (f"[{RULE}.Xyzzy]\n", f"{RULE}.Xyzzy", "unknown ruleType 'Xyzzy'"),
        # a range key on an allow rule and vice versa
        (
            f"[{RULE}.{TO_IP}]\nmax = 5\n",
            f"{RULE}.{TO_IP}.max",
            f"'max' is a range-rule key; {TO_IP} is an allow-list rule",
        ),
        (
            f'[{RULE}.{MQTT}]\nmax = 5\nallow = ["x"]\n',
            f"{RULE}.{MQTT}.allow",
            f"'allow' is an allow-list key; {MQTT} is a range rule",
        ),
        # unknown keys anywhere
        ("latenes = 1\n", "latenes", "unknown key 'latenes'"),
        ("[engin]\n", "engin", "unknown key 'engin' (did you mean 'engine'?)"),
        (
            '[engine]\nlatness = "PT1M"\n',
            "engine.latness",
            "unknown key 'latness' (did you mean 'lateness'?)",
        ),
        ('[database]\nfile = "x.db"\n', "database.file", "unknown key 'file'"),
        (
            f"[{RULE}.{MQTT}]\nmax = 5\nwindw = 'PT1M'\n",
            f"{RULE}.{MQTT}.windw",
            "unknown key 'windw' (did you mean 'window'?)",
        ),
        (
            f"[groups.default.{MQTT}]\nmax = 5\n",
            f"groups.default.{MQTT}",
            f"unknown key '{MQTT}' (rules go under groups.default.rules)",
        ),
        (
            '[[sources]]\ntype = "hub-log"\npath = "x"\nglob = "y"\n',
            "sources[0].glob",
            "unknown key 'glob'",
        ),
        # sources
        (
            '[[sources]]\ntype = "hub-logs"\npath = "x"\n',
            "sources[0].type",
            "unknown source type 'hub-logs' (expected one of hub-log, hub-events, "
            "hub-messages, security-messages, serial) (did you mean 'hub-log'?)",
        ),
        (
            '[[sources]]\npath = "x"\n',
            "sources[0].type",
            "missing (one of hub-log, hub-events, hub-messages, security-messages, serial)",
        ),
        (
            '[[sources]]\ntype = "hub-log"\npath = "a"\n[[sources]]\ntype = "hub-events"\n',
            "sources[1].path",
            "missing: a hub-events source needs a path (a glob)",
        ),
        (
            '[[sources]]\ntype = "security-messages"\npath = ""\n',
            "sources[0].path",
            "must not be empty",
        ),
        (
            '[[sources]]\ntype = "serial"\nbaudrate = 9600\n',
            "sources[0].port",
            "missing: a serial source needs a port",
        ),
        (
            '[[sources]]\ntype = "serial"\nport = "loop://"\nbaudrate = 0\n',
            "sources[0].baudrate",
            "must be an integer from 50 to 10000000, not 0",
        ),
        (
            '[[sources]]\ntype = "serial"\nport = "loop://"\nbaudrate = "fast"\n',
            "sources[0].baudrate",
            "must be an integer from 50 to 10000000, not a string",
        ),
        (
            '[[sources]]\ntype = "serial"\nport = "loop://"\nbaudrate = true\n',
            "sources[0].baudrate",
            "must be an integer from 50 to 10000000, not a boolean",
        ),
        (
            '[[sources]]\ntype = "serial"\nport = "loop://"\npath = "x"\n',
            "sources[0].path",
            "only file sources have a path; serial uses port",
        ),
        (
            '[[sources]]\ntype = "hub-log"\npath = "x"\nport = "COM3"\n',
            "sources[0].port",
            "only serial sources have a port",
        ),
        ('[sources]\ntype = "hub-log"\n', "sources", "must be an array of tables ([[sources]])"),
        # device map
        (
            '[devices]\n"lab-*" = 3\n',
            'devices."lab-*"',
            "must be a group name (a string), not an integer",
        ),
        ('[devices]\nsensor = ""\n', "devices.sensor", "the group name must not be empty"),
        (
            '[devices]\n"a\\nb" = 1\n',
            'devices."a\\nb"',
            "must be a group name (a string), not an integer",
        ),
        # group names differing only in case
        (
            f"[groups.lab.rules.{TO_IP}]\n[groups.Lab.rules.{TO_IP}]\n",
            "groups.Lab",
            "group 'Lab' differs only in case from 'lab' (group names are case-insensitive)",
        ),
        ("[groups]\ndefault = 1\n", "groups.default", "must be a table, not an integer"),
        (
            f"[groups.default.rules]\n{MQTT} = 1\n",
            f"{RULE}.{MQTT}",
            "must be a table, not an integer",
        ),
        # engine and database values
        ('[engine]\nlateness = "P8D"\n', "engine.lateness", "must be at most P7D"),
        ('[engine]\nquiet = "PT0S"\n', "engine.quiet", "must be from PT1S to P365D"),
        (
            "[engine]\nquiet = 60\n",
            "engine.quiet",
            "must be an ISO 8601 duration string such as 'PT15M', not an integer",
        ),
        ("[database]\npath = 1\n", "database.path", "must be a string, not an integer"),
        ("engine = 1\n", "engine", "must be a table, not an integer"),
    ],
)
def test_invalid_configuration_is_refused_naming_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    err = refused(tmp_path, text)
    assert (err.key, err.reason) == (key, reason)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    err = refused(tmp_path, '[engine]\nlateness = "PT1M"\nquiet = \n')
    assert err.key == "line 3"
    assert err.reason.startswith("invalid TOML: ")


def test_toml_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    err = refused(tmp_path, "[engine]\n[engine]\n")
    assert err.key.startswith("line ") or err.key == "end of file"
    assert err.reason.startswith("invalid TOML: ")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: (file): no such file"


def test_invalid_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "iotwatch.toml"
    path.write_bytes(b'[engine]\nlateness = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.key, info.value.reason) == ("line 2", "not valid UTF-8")


def test_config_error_is_one_line_file_key_reason() -> None:
    err = ConfigError("f.toml", "a.b", "bad\nthing")
    assert str(err) == "f.toml: a.b: bad thing"
    assert (err.file, err.key, err.reason) == ("f.toml", "a.b", "bad\nthing")


def test_allow_rule_matcher_is_compiled_once_and_ignored_by_equality() -> None:
    a = AllowRule(TO_IP, True, ("10.0.0.0/8",))
    b = AllowRule(TO_IP, True, ("10.0.0.0/8",))
    assert a == b
    assert a.matcher is a.matcher
    assert a.allows("10.0.0.1") and not a.allows("11.0.0.1")
    with pytest.raises(ValueError):
        AllowRule(TO_IP, True, ("nonsense",))
