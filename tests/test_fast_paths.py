"""The decoders' fast paths (msgspec) against the decoders themselves, the single source of truth.

A fast path takes one plain line, decodes the common, valid record shape in C and appends its
events; anything it does not accept exactly it leaves alone, and the decoder decides. So for
arbitrary and mutated records: a line the fast path takes yields exactly the events the decoder
yields for it, and no bad record; a line it leaves appends nothing. And a whole stream, fed in
arbitrary pieces, gives the same events, the same bad records (reasons included), the same
record count and offset with the fast paths as without them.

Example counts are modest (the whole suite must stay well under 15 minutes on 2 cores); set
``FUZZ_EXAMPLES=2000`` to dig deeper.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.event import Event
from engine.jsonstream import _FAST, JsonStream
from tests.test_fuzz_decoders import FORMATS, default_recursion_limit, mutant

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
DIFF = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- values the decoders look at, spelled every way that matters ------------------------------

# Times: the separators, fraction lengths and zones RFC 3339 allows and a few it does not; leap
# seconds, ordinal dates, times outside the plausible range (before 2000, years ahead).
times = st.builds(
    lambda date, sep, hms, frac, zone: f"{date}{sep}{hms}{frac}{zone}",
    st.sampled_from(
        ["2026-11-28", "2026-02-29", "1999-12-31", "2000-01-01", "2999-01-01", "2026-332"]
    ),
    st.sampled_from(["T", "t", " ", "_"]),
    st.sampled_from(["10:00:00", "23:59:60", "24:00:00", "10:61:00", "9:00:00", "10:00"]),
    st.sampled_from(["", ".1", ".123", ".123456", ".1234567", ".999999999", ".", ".12a"]),
    st.sampled_from(["Z", "z", "", "+01:00", "-00:00", "+0100", "+24:00", " Z", "+01"]),
)
short_text = st.text(alphabet=st.sampled_from("aZ0 -_/.:é\x00\u202e"), max_size=6)
json_ints = st.one_of(
    st.integers(-5, 2_000),
    st.sampled_from([401, 401003, 4010, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    json_ints,
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([1.0, 5.0, 401.0, -0.0, 1e300]),
    short_text,
    times,
    st.sampled_from(["401", " 401 ", "401003", "7", "0", "-1", "1e3", "", "٣"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3)
    ),
    max_leaves=6,
)

# Number and string spellings orjson reads differently from msgspec, or not at all.
LITERALS = [
    b"1e999",
    b"-1e999",
    b"1E2",
    b"1.0",
    b"-0",
    b"-0.0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"9" * 400,
    b'"\\ud800"',
    b'"\\u0041"',
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"caf\xc3\xa9"',
    b'"\x7f"',
    b'"\\u0000"',
    b"[" * 1100 + b"]" * 1100,
    b"[" * 600 + b"]" * 600,
    b"NaN",
    b"01",
]


def json_text(value: Any) -> bytes:
    """``value`` as JSON; bytes are JSON text already (a nested record, a raw literal)."""
    return value if isinstance(value, bytes) else orjson.dumps(value)


def as_string(text: bytes) -> bytes:
    """JSON text inside a JSON string, as resource logs hold ``properties``."""
    return orjson.dumps(text.decode("utf-8", "replace"))


@st.composite
def record_line(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> bytes:
    """One line of a JSON object built from ``fields`` (name -> strategy of its values): each
    field present or not, its value a likely one or anything, spelled as orjson writes it or
    as a raw literal; sometimes a key escaped, repeated, or unknown."""
    members: list[tuple[bytes, bytes]] = []
    for name, likely in fields.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # missing
        roll = draw(st.integers(0, 19))
        if roll == 0:
            value = draw(st.sampled_from(LITERALS))
        elif roll <= 3:
            value = json_text(draw(json_values))
        else:
            value = json_text(draw(likely))
        key = json_text(name)
        if draw(st.integers(0, 29)) == 0:
            key = b'"' + name[:1].encode() + b"\\u%04x" % ord(name[1]) + name[2:].encode() + b'"'
        members.append((key, value))
        if draw(st.integers(0, 29)) == 0:  # the same key again: the last one counts
            members.append((key, json_text(draw(st.one_of(likely, json_values)))))
    if draw(st.integers(0, 9)) == 0:
        members.insert(
            draw(st.integers(0, len(members))),
            (
                json_text(draw(short_text)),
                draw(st.one_of(st.sampled_from(LITERALS), json_values.map(json_text))),
            ),
        )
    body = b",".join(k + b":" + v for k, v in members)
    ws = draw(st.sampled_from([b"", b" ", b"\r", b"\t "]))
    return b"{" + body + b"}" + ws


HUB_EVENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "time": times,
    "deviceId": st.sampled_from(["d1", "cam-ü", "", " ", "x" * 40]),
    "moduleId": st.one_of(st.none(), st.just("m")),
    "op": st.sampled_from(
        ["d2c", "c2d", "c2d-reject", "method", "upload", "purge", "twin-update", "D2C", "x"]
    ),
    "protocol": st.sampled_from(
        ["mqtt", "Mqtt", "MqttWs", "AmqpWs", "amqp_ws", "https", " MQTT ", "HTTP", "tcp", ""]
    ),
    "status": st.one_of(json_ints, st.sampled_from(["401", "401003", " 401", "200", "x"])),
    "count": st.one_of(json_ints, st.sampled_from(["5", " 5", "05", "-1", "1.5", "99999999999"])),
}

HUB_LOG_PROPERTIES: dict[str, st.SearchStrategy[Any]] = {
    "deviceId": st.sampled_from(["d1", "cam-ü", "", "x" * 40]),
    "protocol": st.one_of(st.sampled_from(["Mqtt", "AmqpWs", "HTTP", "tcp", ""]), st.none()),
    "statusCode": st.one_of(st.none(), json_ints, st.sampled_from(["401003", "4XX", " 401"])),
    "authType": st.just('{"scope":"device","type":"sas","issuer":"iothub"}'),
    "messageSize": st.sampled_from(["120", 120]),
    "RequestSize": json_ints,
    "sdkVersion": st.just("azure-iot-device/2.13.0"),
}
_properties = record_line(HUB_LOG_PROPERTIES)
HUB_LOG_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "time": times,
    "category": st.sampled_from(
        ["DeviceTelemetry", "devicetelemetry", "Connections", "DirectMethods", "Routes", ""]
    ),
    "operationName": st.sampled_from(["ingress", "deviceConnect", "send", "Send", "update"]),
    "properties": st.one_of(_properties, _properties.map(as_string)),
    "resultType": st.one_of(st.none(), json_ints, st.sampled_from(["Success", "401003", ""])),
    "resourceId": st.just("/SUBSCRIPTIONS/X/IOTHUBS/HUB"),
    "level": st.sampled_from(["Information", "Error"]),
    "durationMs": st.sampled_from(["0", 12]),
    "location": st.just("westeurope"),
}
_log_record = record_line(HUB_LOG_FIELDS)
_log_batch = st.lists(_log_record, max_size=3).map(
    lambda rs: b'{"records":[' + b",".join(rs) + b"]}"
)

LINES: dict[str, st.SearchStrategy[bytes]] = {
    "hub-events": record_line(HUB_EVENT_FIELDS),
    "hub-log": st.one_of(_log_record, _log_record, _log_batch),
}


@st.composite
def lines_of(draw: st.DrawFn, fmt: str) -> list[bytes]:
    """Lines of ``fmt``: arbitrary records, valid ones, and valid ones mutated."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 3))
        if kind <= 1:
            out.append(draw(LINES[fmt]))
        else:
            valid = draw(FORMATS[fmt])
            out.append(json_text(valid) if kind == 2 else draw(mutant(valid, False)))
    return out


def slow_decode(fmt: str, line: bytes) -> tuple[list[Event], list[Any], int, list[Any]]:
    """What the decoder alone makes of one line: events, bad records, records, hub records."""
    stream = JsonStream(fmt, fast=False)
    stream.feed(line + b"\n")
    stream.finish()
    events, bad = stream.take()
    return events, bad, stream.records, stream.take_hub()


def check_lines(
    fmt: str, fast: Callable[[bytes, int, list[Event]], int], lines: list[bytes]
) -> None:
    for line in lines:
        line = line.replace(b"\n", b" ")
        out: list[Event] = []
        with default_recursion_limit():
            taken = fast(line, 0, out)
            events, bad, records, hub = slow_decode(fmt, line)
        if taken:
            assert (out, taken) == (events, records), line
            assert bad == [] and hub == [], (line, bad, hub)
        else:
            assert out == [], line


def check_stream(fmt: str, lines: list[bytes], cuts: list[int]) -> None:
    text = b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines)
    results = []
    for fast in (True, False):
        stream = JsonStream(fmt, fast=fast)
        start = 0
        with default_recursion_limit():
            for cut in [*sorted(c % (len(text) + 1) for c in cuts), len(text)]:
                stream.feed(text[start:cut])
                start = max(start, cut)
            stream.finish()
        events, bad = stream.take()
        results.append((events, bad, stream.take_hub(), stream.records, stream.offset))
    assert results[0] == results[1]


@DIFF
@given(lines_of("hub-events"))
def test_hub_events_fast_path_takes_only_what_the_decoder_accepts(lines: list[bytes]) -> None:
    check_lines("hub-events", _FAST["hub-events"], lines)


@DIFF
@given(lines_of("hub-events"), st.lists(st.integers(0, 10_000), max_size=4))
def test_hub_events_stream_is_the_same_with_and_without_fast_path(
    lines: list[bytes], cuts: list[int]
) -> None:
    check_stream("hub-events", lines, cuts)


@DIFF
@given(lines_of("hub-log"))
def test_hub_log_fast_path_takes_only_what_the_decoder_accepts(lines: list[bytes]) -> None:
    check_lines("hub-log", _FAST["hub-log"], lines)


@DIFF
@given(lines_of("hub-log"), st.lists(st.integers(0, 10_000), max_size=4))
def test_hub_log_stream_is_the_same_with_and_without_fast_path(
    lines: list[bytes], cuts: list[int]
) -> None:
    check_stream("hub-log", lines, cuts)


def test_common_records_take_the_fast_path() -> None:
    """The shapes real feeds write go through the fast path (else it would be dead weight)."""
    common = {
        "hub-events": (
            b'{"time":"2026-11-28T08:00:13.141Z","deviceId":"cam-00462","moduleId":null,'
            b'"op":"d2c","protocol":"MqttWs","status":200,"count":3}'
        ),
        "hub-log": (
            b'{"time":"2026-11-28T08:00:00.9302547Z","resourceId":"/SUBSCRIPTIONS/X/IOTHUBS/H",'
            b'"operationName":"deviceConnect","category":"Connections","level":"Error",'
            b'"resultType":"401003","resultDescription":"IotHubUnauthorized","durationMs":"7",'
            b'"callerIpAddress":"203.0.113.4","correlationId":"8e2f","location":"westeurope",'
            b'"properties":"{\\"deviceId\\":\\"sensor-1\\",\\"protocol\\":\\"Mqtt\\",'
            b'\\"authType\\":null,\\"maskedIpAddress\\":\\"10.0.XXX.XXX\\",'
            b'\\"statusCode\\":\\"401003\\"}"}'
        ),
    }
    for fmt, line in common.items():
        out: list[Event] = []
        assert _FAST[fmt](line, 0, out) == 1, fmt
        assert out == slow_decode(fmt, line)[0] != [], fmt
    batch = b'{"records":[' + common["hub-log"] + b"," + common["hub-log"] + b"]}"
    out = []
    assert _FAST["hub-log"](batch, 0, out) == 2
    assert out == slow_decode("hub-log", batch)[0]
