"""Console line patterns: the getting-started firmware's lines become hub events, user patterns
with named groups, bad patterns refused at load, and rules counting what a console said.

The real transcript is the MXChip AZ3166 console of the getting-started quickstart (see
tests/data/README.md for its source)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import catalogue as c
from engine.capture import CaptureStream
from engine.config import ConfigError, SourceConfig
from engine.event import ConsoleLine
from engine.formats.console import (
    BUILTIN,
    BUILTIN_PATTERNS,
    ConsolePattern,
    ConsolePatterns,
    PatternError,
    check,
    mark_of,
)
from engine.timestamps import US, parse_time
from tests.conftest import config_from, run_replay

DATA = Path(__file__).resolve().parent / "data"
TRANSCRIPT = DATA / "mxchip-az3166-getting-started-console.capture.bin"
HOST = parse_time("2026-11-28T10:00:00Z")

# What each line of the real transcript becomes: (start of the line, mark).
TRANSCRIPT_MARKS = [
    ("    Device id: mydevice", "device mydevice"),
    ("SUCCESS: Connected to IoT Hub", "connect mqtt"),
    ("Sending property: $iothub/twin/PATCH/properties/reported/?$rid=3", "twin-update"),
    ("Sending property: $iothub/twin/PATCH/properties/reported/?$rid=5", "twin-update"),
    ("Sending property: $iothub/twin/PATCH/properties/reported/?$rid=7", "twin-update"),
    ('Telemetry message sent: {"humidity"', "d2c mqtt"),
    ('Telemetry message sent: {"magnetometerX"', "d2c mqtt"),
    ('Telemetry message sent: {"accelerometerX"', "d2c mqtt"),
    ('Telemetry message sent: {"gyroscopeX"', "d2c mqtt"),
    ("Receive direct method: setLedState", "method"),
    ('Device twin property sent: {"ledState":true}', "twin-update"),
]


def decode(data: bytes, device: str | None = "board", patterns=BUILTIN) -> CaptureStream:
    stream = CaptureStream(HOST, device, patterns=patterns)
    stream.feed(data)
    stream.finish()
    return stream


def lines_of(stream: CaptureStream) -> list[ConsoleLine]:
    return stream.take_console()


# -- the built-in patterns ------------------------------------------------------------------------


def test_every_line_of_the_real_transcript_becomes_what_it_says() -> None:
    stream = decode(TRANSCRIPT.read_bytes())
    lines = lines_of(stream)
    marked = [(ln.text, ln.event) for ln in lines if ln.event]
    assert len(marked) == len(TRANSCRIPT_MARKS)
    for (text, event), (start, expected) in zip(marked, TRANSCRIPT_MARKS, strict=True):
        assert text.startswith(start) and event == expected, (text, event)
    # The twin document fetched at start is a read, not an update; the rest is just text.
    (fetched,) = [ln for ln in lines if ln.text.startswith("Receive properties: ")]
    assert fetched.text.startswith('Receive properties: {"desired"') and fetched.event is None
    assert all(ln.time == HOST for ln in lines)
    events, bad = stream.take()
    assert bad == []
    rules = [(e.name, e.rule, e.value) for e in events]
    assert rules == [
        ("connect", c.CONNECT, "mqtt"),
        *[("twin-update", c.TWIN_UPDATES, None)] * 3,
        *[("d2c", c.D2C["mqtt"], "mqtt")] * 4,
        ("method", c.DIRECT_METHODS, None),
        ("twin-update", c.TWIN_UPDATES, None),
    ]
    # The source's device wins over the id the board printed; times are the receive time.
    assert {e.device for e in events} == {"board"}
    assert all(e.time == HOST and e.host_timed and e.weight == 1 for e in events)
    assert stream.records == len(events) == stream.patterned == 10


def test_without_a_device_the_board_s_own_device_id_is_used() -> None:
    stream = decode(TRANSCRIPT.read_bytes(), device=None)
    events, _ = stream.take()
    assert {e.device for e in events} == {"mydevice"}
    assert stream.unattributed == 0


def test_lines_before_any_device_are_left_as_text() -> None:
    stream = decode(b"Telemetry message sent: {}.\r\n", device=None)
    assert stream.take() == ([], [])
    assert stream.unattributed == 1 and stream.records == 0


@pytest.mark.parametrize("pattern", BUILTIN_PATTERNS, ids=lambda p: p.example[:40])
def test_each_built_in_pattern_matches_its_firmware_line(pattern: ConsolePattern) -> None:
    hit = BUILTIN.match(pattern.example)
    assert hit is not None and hit[0].pattern is pattern
    assert pattern.source  # where the firmware prints it


@pytest.mark.parametrize(
    ("line", "mark"),
    [
        # shared/src/azure_iot_nx_client.c (the firmware since 2021-09)
        ("Received command: setLedState", "method"),
        ('Receive properties: {"telemetryInterval":10,"$version":3}', "twin-update"),
        ('Receive properties: {"desired":{"$version":1},"reported":{}}', None),
        ("Disconnected from IoT Hub", "disconnect mqtt"),
        # core/src/azure_iot_nx/azure_iot_nx_client.c (2021)
        ("Connected to IoT Hub", "connect mqtt"),
        ('Receive twin writeable property: {"telemetryInterval":5}', "twin-update"),
        ('Receive twin properties: {"desired":{}}', None),
        ('Device twin writeable property sent: {"telemetryInterval":{"value":5}}', "twin-update"),
        ("Connection failure from IoT Hub (0x00020002)", "disconnect mqtt"),
        ("Reconnecting to IoT Hub...", "disconnect mqtt"),
        # the legacy MQTT client and its apps
        ("Sending telemetry with float value", "d2c mqtt"),
        ('Sending message {"temperature":23.50}', None),  # telemetry or twin: the line before
        ("Received direct method=setLedState, rid=4, message=true", "method"),
        ("Direct method=setLedState invoked", None),  # the same invocation again
        ("Received C2D message, properties='', message='hi'", "c2d mqtt"),
        ("Reporting writeable property telemetryInterval as 10", "twin-update"),
        ("Received device twin desired property", "twin-update"),
        ("SUCCESS: MQTT Hub client initialized", "connect mqtt"),
        ("ERROR: MQTT disconnected, reconnecting...", "disconnect mqtt"),
        # not events
        ("LED is turned ON", None),
        ("\tPayload: true", None),
        ("Initializing Azure IoT Hub client", None),
        ("", None),
    ],
)
def test_firmware_lines_across_versions(line: str, mark: str | None) -> None:
    assert mark_of(BUILTIN, line) == mark


def test_a_frame_in_the_middle_of_a_line_leaves_the_line_whole() -> None:
    from engine.formats.serial import encode_frame

    frame = encode_frame({"DeviceId": "b", "Events": []})
    stream = decode(b"Telemetry mess" + frame + b'age sent: {"t":1}.\r\n')
    events, _ = stream.take()
    assert [(e.name, e.value) for e in events] == [("d2c", "mqtt")]


# -- user patterns ---------------------------------------------------------------------------------

USER = """
[[sources]]
type = "serial"
port = "/dev/ttyACM0"
device = "bench-1"

[[sources.patterns]]
match = 'OUT (?P<device>[\\w-]+) x(?P<count>\\d+) via (?P<protocol>\\w+)(?: at (?P<time>\\S+))?'
op = "d2c"

[[sources.patterns]]
match = 'cmd (?P<status>\\d+)'
op = "method"

[[sources.patterns]]
match = '(?i)purged'
op = "purge"

[[sources.patterns]]
match = '(a)\\1 upload'
op = "upload"

[[sources.patterns]]
match = 'Telemetry message sent: \\{"big"'
op = "d2c"
protocol = "amqp"

[[sources.patterns]]
match = 'boot (?P<time>\\d+(?:\\.\\d+)?)'
op = "connect"
protocol = "Https"
time_format = "unix"
"""


def test_a_user_pattern_with_named_groups(tmp_path: Path) -> None:
    config = config_from(tmp_path, USER)
    (source,) = config.sources
    patterns = source.console_patterns()
    assert patterns is not None and patterns.hub
    text = (
        b"OUT lab-7 x5 via AmqpWs at 2026-11-28T09:59:00Z\r\n"  # all its groups
        b"OUT lab-8 x2 via mqtt at 2031-01-01T00:00:00Z\r\n"  # a time in the future: host time
        b"OUT lab-9 x2 via mqtt at yesterday\r\n"  # an unreadable time: host time
        b"OUT lab-7 x99999999999 via mqtt\r\n"  # a count beyond int32: quarantined
        b"OUT lab-7 x3 via carrier-pigeon\r\n"  # \\w+ stops at the dash: an unknown protocol
        b"cmd 401003\r\n"  # unauthorized, counted as a method too
        b"cmd 200\r\n"
        b"PURGED the queue\r\n"  # a global flag: matched on its own, in its place
        b"aa upload\r\n"  # a numbered back-reference: the same
        b'Telemetry message sent: {"big":1}.\r\n'  # the user's pattern before the built-in
        b'Telemetry message sent: {"small":1}.\r\n'  # the built-in
        b"boot 1795600000.25\r\n"  # Unix seconds, Https folded to http
    )
    stream = decode(text, device=source.device, patterns=patterns)
    events, bad = stream.take()
    got = [
        (e.device, e.name, e.rule, e.value, e.weight, e.time, e.host_timed, e.unauthorized)
        for e in events
    ]
    assert got == [
        (
            "lab-7",
            "d2c",
            c.D2C["amqp"],
            "amqp",
            5,
            parse_time("2026-11-28T09:59:00Z"),
            False,
            False,
        ),
        ("lab-8", "d2c", c.D2C["mqtt"], "mqtt", 2, HOST, True, False),
        ("lab-9", "d2c", c.D2C["mqtt"], "mqtt", 2, HOST, True, False),
        ("bench-1", "method", c.DIRECT_METHODS, None, 1, HOST, True, True),
        ("bench-1", "method", c.DIRECT_METHODS, None, 1, HOST, True, False),
        ("bench-1", "purge", c.QUEUE_PURGES, None, 1, HOST, True, False),
        ("bench-1", "upload", c.FILE_UPLOADS, None, 1, HOST, True, False),
        ("bench-1", "d2c", c.D2C["amqp"], "amqp", 1, HOST, True, False),
        ("bench-1", "d2c", c.D2C["mqtt"], "mqtt", 1, HOST, True, False),
        ("bench-1", "connect", c.CONNECT, "http", 1, 1795600000250000, False, False),
    ]
    assert [b.reason for b in bad] == [
        "console pattern: weight out of range: count",
        "console pattern: unknown protocol",
    ]
    assert bad[0].raw == b"OUT lab-7 x99999999999 via mqtt"
    marks = [ln.event for ln in stream.take_console()]
    assert marks[0] == "d2c amqp ×5"
    assert marks[3] == "✖ console pattern: weight out of range: count"
    assert stream.records == len(events) + len(bad)


def test_user_patterns_keep_their_order_whether_combined_or_not() -> None:
    patterns = ConsolePatterns(
        [
            ConsolePattern(r"(?i)x", "method"),  # alone (a global flag)
            ConsolePattern(r"x(?P<count>\d)", "upload"),  # combined, after it
            ConsolePattern(r"(y)\1", "purge"),  # alone
            ConsolePattern(r"y", "twin-update"),
        ],
        (),
    )
    assert [mark_of(patterns, t) for t in ("x1", "X", "yy", "y", "z")] == [
        "method",
        "method",
        "purge",
        "twin-update",
        None,
    ]


def test_group_names_in_a_set_or_a_comment_are_not_renamed() -> None:
    patterns = ConsolePatterns(
        [
            ConsolePattern(r"[(?P<x>]+ (?P<count>\d+)", "upload"),
            ConsolePattern(r"a(?#(?P<device>)b (?P<device>\w+)", "method"),
        ],
        (),
    )
    stream = decode(b"<P( 3\r\nab dev-2\r\n", device="d", patterns=patterns)
    events, _ = stream.take()
    assert [(e.name, e.weight, e.device) for e in events] == [
        ("upload", 3, "d"),
        ("method", 1, "dev"),
    ]


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ("match = 'Sent (?P<count>\\d+ messages'\nop = 'd2c'\nprotocol = 'mqtt'", "match",
         "bad regular expression: missing ), unterminated subpattern at position 5"),
        ("match = '(?P<dev>\\w+)'\nop = 'method'", "match", "unknown group name 'dev'"),
        ("match = 'x'\nop = 'd2c'\nprotocol = 'coap'", "protocol", "unknown protocol 'coap'"),
        ("match = 'x'\nop = 'reboot'", "op", "unknown op 'reboot'"),
        ("match = ''\nop = 'method'", "match", "must be a non-empty regular expression"),
        ("match = 'x'\nop = 'device'", "match", "a device pattern needs a (?P<device>...) group"),
        ("match = '(?P<time>\\d+)'\nop = 'method'\ntime_format = 'iso'", "time_format",
         "must be a strptime format"),
        ("match = 'x'\nop = 'method'\ntime_format = '%s'", "time_format", "no (?P<time>...)"),
        ("match = 'x'\nop = 'method'\nname = 'y'", "name", "unknown key 'name'"),
        ("op = 'method'", "match", "missing"),
        ("match = 3\nop = 'method'", "match", "must be a string, not an integer"),
    ],
)  # fmt: skip
def test_a_bad_pattern_is_refused_naming_file_key_and_reason(
    tmp_path: Path, table: str, key: str, reason: str
) -> None:
    text = f'[[sources]]\ntype = "serial"\nport = "/dev/ttyACM0"\n[[sources.patterns]]\n{table}\n'
    with pytest.raises(ConfigError) as err:
        config_from(tmp_path, text)
    assert err.value.key == f"sources[0].patterns[0].{key}"
    assert reason in err.value.reason
    assert str(err.value).startswith(str(tmp_path / "iotwatch.toml"))


@pytest.mark.parametrize(
    ("source", "key", "reason"),
    [
        ('port = "/dev/serial/by-id/usb-*"\ndevice = "b"', "device", "a glob port finds several"),
        ('port = "/dev/ttyACM0"\nboards = {x = "b"}', "boards", "only a glob port"),
        ('port = "/dev/ttyACM0"\nbuiltin_patterns = "no"', "builtin_patterns", "true or false"),
        ('port = "/dev/ttyACM*"\nboards = {"ttyACM0" = 3}', "boards.ttyACM0", "must be a string"),
    ],
)
def test_serial_keys_are_checked(tmp_path: Path, source: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from(tmp_path, f'[[sources]]\ntype = "serial"\n{source}\n')
    assert err.value.key == f"sources[0].{key}" and reason in err.value.reason


def test_file_sources_have_no_patterns(tmp_path: Path) -> None:
    text = '[[sources]]\ntype = "hub-log"\npath = "x"\nbuiltin_patterns = false\n'
    with pytest.raises(ConfigError, match="only serial sources have a builtin_patterns"):
        config_from(tmp_path, text)


def test_a_bad_pattern_exits_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "iotwatch.toml"
    config.write_text(
        '[[sources]]\ntype = "serial"\nport = "/dev/ttyACM0"\n'
        "[[sources.patterns]]\nmatch = 'sent (?P<count>[0-9+'\nop = 'd2c'\nprotocol = 'mqtt'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for args in (["run", "--headless"], ["replay", f"serial-capture:{TRANSCRIPT}"]):
        run = subprocess.run(
            [sys.executable, "-m", "tui.cli", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert run.returncode == 2, run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line == (
            f"iotwatch: {config}: sources[0].patterns[0].match: bad regular expression: "
            "unterminated character set at position 15"
        )


def test_check_names_the_key() -> None:
    with pytest.raises(PatternError) as err:
        check(ConsolePattern("(", "method"))
    assert err.value.key == "match"


# -- counted by the rules ----------------------------------------------------------------------------

RULES = """
[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
max = 3
window = "PT15M"

[groups.default.rules.DirectMethodInvokesNotInAllowedRange]
max = 5
window = "PT15M"

[groups.default.rules.TwinUpdatesNotInAllowedRange]
max = 3
window = "PT15M"
"""


def test_console_text_alone_raises_a_d2c_range_alert(tmp_path: Path) -> None:
    capture = tmp_path / "bench-board-1.capture"
    capture.write_bytes(TRANSCRIPT.read_bytes())
    stamp = parse_time("2026-11-28T10:07:00Z") / US
    os.utime(capture, (stamp, stamp))
    alerts, summary = run_replay(config_from(tmp_path, RULES), [f"serial-capture:{capture}"])
    got = [(a["rule"], a["device"], a["start"], a["counts"]) for a in alerts]
    assert got == [
        ("MqttD2CMessagesNotInAllowedRange", "bench-board-1", "2026-11-28T10:00:00Z", [4]),
        ("TwinUpdatesNotInAllowedRange", "bench-board-1", "2026-11-28T10:00:00Z", [4]),
    ]
    assert summary.events == 10 and summary.records == 10
    # Turned off, the same text counts nothing.
    off = RULES + '[[sources]]\ntype = "serial"\nport = "/dev/x"\nbuiltin_patterns = false\n'
    alerts, summary = run_replay(config_from(tmp_path, off), [f"serial-capture:{capture}"])
    assert alerts == [] and summary.events == 0


def test_a_message_without_a_protocol_takes_its_connection_s(tmp_path: Path) -> None:
    """A d2c pattern that names no protocol: the device's latest connection at or before the
    message's time decides (here the firmware's own ``SUCCESS: Connected to IoT Hub``: MQTT)."""
    capture = tmp_path / "bench-board-1.capture"
    capture.write_bytes(
        b"queued 9 readings\r\n"  # printed before the connection, received at the same time
        b"SUCCESS: Connected to IoT Hub\r\n"
        b"queued 5 readings\r\n"
    )
    stamp = parse_time("2026-11-28T10:07:00Z") / US
    os.utime(capture, (stamp, stamp))
    config = config_from(
        tmp_path,
        RULES + '[[sources]]\ntype = "serial"\nport = "/dev/x"\n'
        "[[sources.patterns]]\nmatch = 'queued (?P<count>\\d+) readings'\nop = 'd2c'\n",
    )
    stream = decode(capture.read_bytes(), patterns=config.capture_patterns())
    events, _ = stream.take()
    assert [(e.name, e.rule, e.value, e.weight) for e in events] == [
        ("d2c", c.D2C_UNKNOWN, None, 9),
        ("connect", c.CONNECT, "mqtt", 1),
        ("d2c", c.D2C_UNKNOWN, None, 5),
    ]
    alerts, _ = run_replay(config, [f"serial-capture:{capture}"])
    # All three lines share the capture's time, so the connection covers both messages.
    assert [(a["rule"], a["counts"]) for a in alerts] == [
        ("MqttD2CMessagesNotInAllowedRange", [14])
    ]


def test_serial_source_config_compiles_patterns_once() -> None:
    a = SourceConfig("serial", port="/dev/a")
    b = SourceConfig("serial", port="/dev/b")
    assert a.console_patterns() is b.console_patterns() is BUILTIN
    off = SourceConfig("serial", port="/dev/c", builtin_patterns=False)
    assert off.console_patterns() is None


# -- the simulated board ---------------------------------------------------------------------------


def test_the_simulated_board_prints_what_the_patterns_count() -> None:
    from collections import Counter

    from engine.simulators.board import capture

    stream = decode(capture(7, HOST, 3600, "sim-1", "rtc"), device="sim-1")
    events, bad = stream.take()
    assert bad == []
    ops = Counter(e.name for e in events)
    assert ops["d2c"] > 720  # a line every 5 s, and bursts
    assert ops["method"] >= 3 and ops["twin-update"] >= ops["method"] + 3
    assert ops["connect"] >= 1
    marks = Counter(ln.event for ln in stream.take_console() if ln.event)
    assert marks["device sim-1"] == 1 and marks["disconnect mqtt"] >= 1


def test_the_simulated_board_still_sends_the_frames_it_always_sent() -> None:
    """Its new console chatter draws from a generator of its own: the sample session's capture
    (made before the board printed getting-started lines) has the same frames."""
    from engine.formats.serial import Frame, split
    from engine.simulators.board import capture

    sample = Path(__file__).resolve().parent.parent / "sample_data" / "session" / "board-1.capture"
    start = parse_time("2026-11-28T09:30:00Z")
    new = capture(17, start, 3600, "bench-board-1", "rtc", faults=True)
    frames = [i.message for i in split(new) if isinstance(i, Frame)]
    assert frames == [i.message for i in split(sample.read_bytes()) if isinstance(i, Frame)]


def test_serial_keys_survive_the_configuration_round_trip(tmp_path: Path) -> None:
    """The console's editors (and the store's configuration log) write the configuration back:
    patterns, builtin_patterns and boards come back as they were."""
    from engine.config_edit import config_to_toml

    text = USER + (
        '\n[[sources]]\ntype = "serial"\nport = "/dev/serial/by-id/usb-*"\n'
        'builtin_patterns = false\n[sources.boards]\n"usb-A*" = "bench-a"\n'
    )
    config = config_from(tmp_path, text)
    again = config_from(tmp_path, config_to_toml(config, str(tmp_path / "iotwatch.toml")))
    assert again.sources == config.sources
    assert again.sources[1].boards == (("usb-A*", "bench-a"),)
    assert again.sources[0].patterns[0].match.startswith("OUT (?P<device>")
