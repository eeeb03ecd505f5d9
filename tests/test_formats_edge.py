"""Hostile and unusual records: quarantined with a reason, never a crash (SPEC §2, §7)."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine.config import Config
from engine.formats.serial import encode_frame
from engine.jsonstream import JsonStream
from tests.conftest import agent_event, run_replay, security_message


def decode(*records: object) -> JsonStream:
    stream = JsonStream()
    stream.feed(b"".join(orjson.dumps(r) + b"\n" for r in records))
    stream.finish()
    return stream


GOOD = {"time": "2026-11-28T10:00:00Z", "deviceId": "d", "op": "method"}


def test_op_and_protocol_of_wrong_type_are_quarantined() -> None:
    stream = decode(
        GOOD,
        {**GOOD, "op": ["d2c"]},
        {**GOOD, "op": {"x": 1}},
        {**GOOD, "op": "d2c", "protocol": ["mqtt"]},
        {**GOOD, "op": "d2c", "protocol": {"a": 1}},
    )
    reasons = [b.reason for b in stream.bad]
    assert reasons == [
        "wrong type: op is not a string",
        "wrong type: op is not a string",
        "wrong type: protocol is not a string",
        "wrong type: protocol is not a string",
    ]
    assert len(stream.events) == 1


def test_counts_with_non_ascii_digits_are_quarantined() -> None:
    hub = decode({**GOOD, "count": "²"})
    agent = decode(
        security_message(
            "d",
            agent_event(
                "Login",
                "2026-11-28T10:00:00Z",
                {"Result": "Fail", "ExtraDetails": {"HitCount": "٣"}},
            ),
        )
    )
    assert [b.reason for b in hub.bad + agent.bad] == [
        "bad value: count is not a whole number",
        "bad value: ExtraDetails.HitCount is not a whole number",
    ]
    assert hub.events == agent.events == []


def test_event_with_empty_payload_makes_its_device_known() -> None:
    stream = decode(security_message("d", agent_event("Heartbeat", "2026-11-28T10:00:00Z")))
    (event,) = stream.events
    assert (event.device, event.name, event.rule, event.allow) == ("d", "Heartbeat", 0, 0)


def test_serial_capture_is_sniffed_by_its_leading_zero_byte(tmp_path: Path) -> None:
    message = {
        "DeviceId": "board",
        "Events": [
            {
                "Name": "ProcessCreate",
                "TimestampUTC": "2026-11-28T10:00:00Z",
                "Payload": [{"Executable": "/bin/x"}],
            }
        ],
    }
    capture = tmp_path / "board.bin"
    capture.write_bytes(encode_frame(message) + b"boot ok\n" + encode_frame(message))
    _, summary = run_replay(Config.default(), [capture])
    assert (summary.records, summary.events, summary.console) == (2, 2, 1)
