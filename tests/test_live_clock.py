"""Live evaluation by the wall clock (SPEC §4, live parts), with an injected clock."""

from __future__ import annotations

from pathlib import Path

from engine.evaluator import Evaluator
from engine.event import Event
from engine.timestamps import US, parse_time
from tests.conftest import config_from

CONFIG = """
[engine]
lateness = "PT1M"
quiet = "PT5M"

[devices]
"declared-dev" = "default"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 3
window = "PT1M"

[groups.default.rules.ProcessNotAllowed]
allow = ["ok"]
"""

D = "2026-11-28T"
MQTT = 8  # MqttD2CMessagesNotInAllowedRange


def at(hms: str) -> int:
    return parse_time(D + hms + "Z")


def d2c(hms: str, device: str = "d", weight: int = 1) -> Event:
    return Event(at(hms), device, "d2c", MQTT, value="mqtt", weight=weight)


def process(hms: str, exe: str, device: str = "d") -> Event:
    return Event(at(hms), device, "ProcessCreate", allow=20, value=exe)


def live(tmp: Path) -> tuple[Evaluator, object]:
    evaluator = Evaluator(config_from(tmp, CONFIG), incremental=True)
    # As if a hub and an agent source were configured: the wall clock completes both.
    evaluator.watermark.wall_lateness = {"IoT Hub": 60 * US, "Agent": 60 * US}
    stream = evaluator.add_stream("s")
    stream.holding = False  # caught up: waits for more
    return evaluator, stream


def brief(evaluator: Evaluator, device: str | None = "d") -> list[tuple]:
    """Range alerts of ``device`` (None: of every device)."""
    return sorted(
        (a.device, a.start, a.end, list(a.counts), a.state)
        for a in evaluator.book.alerts.values()
        if a.is_range and device in (None, a.device)
    )


def test_wall_clock_closes_windows_of_a_silent_device(tmp: Path) -> None:
    evaluator, stream = live(tmp)
    evaluator.advance(at("10:00:20"))
    evaluator.process(stream, [d2c("10:00:30")])
    evaluator.advance(at("10:01:59"))
    assert brief(evaluator) == []  # the 10:01 window ends at 10:02, after now - lateness
    evaluator.advance(at("10:03:00"))  # closes up to 10:02: the 10:01 window had nothing
    assert brief(evaluator) == [("d", at("10:01:00"), at("10:02:00"), [0], "open")]
    evaluator.advance(at("10:05:00"))
    assert brief(evaluator) == [("d", at("10:01:00"), at("10:04:00"), [0, 0, 0], "open")]


def test_declared_device_alerts_by_wall_clock_without_any_event_of_its_own(tmp: Path) -> None:
    evaluator, stream = live(tmp)
    evaluator.process(stream, [d2c("10:00:30"), d2c("10:01:30"), d2c("10:02:30")])
    evaluator.advance(at("10:04:00"))
    alerts = {a[0]: a for a in brief(evaluator, None)}
    assert alerts["declared-dev"] == (
        "declared-dev",
        at("10:01:00"),
        at("10:03:00"),
        [0, 0],
        "open",
    )
    assert "d" not in alerts


def test_event_in_a_window_the_wall_clock_judged_amends_it(tmp: Path) -> None:
    """Contract v2 (was: such an event was late and dropped). The wall clock judged 10:01 empty
    (below min); an event for it arrives within the horizon: it is counted, the window judged
    again, and the alert (same id) now says 5 > max, marked amended."""
    evaluator, stream = live(tmp)
    evaluator.process(stream, [d2c("10:00:30")])
    evaluator.advance(at("10:03:00"))
    assert brief(evaluator) == [("d", at("10:01:00"), at("10:02:00"), [0], "open")]
    (before,) = [a for a in evaluator.book.alerts.values() if a.is_range and a.device == "d"]
    assert evaluator.process(stream, [d2c("10:01:10", weight=5)]) == 0
    assert evaluator.expired == 0
    assert brief(evaluator) == [("d", at("10:01:00"), at("10:02:00"), [5], "open")]
    (after,) = [a for a in evaluator.book.alerts.values() if a.is_range and a.device == "d"]
    assert after is before and after.amended
    assert evaluator.book.amendments == [(after.id, at("10:03:00"), at("10:01:00"), 0, 5)]


def test_event_older_than_wall_clock_minus_horizon_is_expired(tmp: Path) -> None:
    evaluator, stream = live(tmp)
    evaluator.process(stream, [d2c("10:00:30")])
    evaluator.advance(at("11:00:00"))
    alerts = brief(evaluator)
    # horizon P1D by default; shrink it to an hour and an event from 09:59 is expired.
    evaluator.horizon = 3600 * US
    assert evaluator.process(stream, [d2c("09:59:59", weight=9, device="e")]) == 1
    assert evaluator.process(stream, [d2c("10:00:00", weight=9)]) == 0
    assert evaluator.devices["e"].first is None
    assert brief(evaluator) != alerts  # d's 10:00 window now holds 10


def test_a_backlog_stream_holds_windows_open_by_its_event_time(tmp: Path) -> None:
    evaluator, stream = live(tmp)
    backlog = evaluator.add_stream("backlog")  # still reading old data: holds the watermark
    evaluator.process(backlog, [d2c("09:00:00", device="old")])
    evaluator.process(stream, [d2c("10:00:30")])
    evaluator.advance(at("10:05:00"))
    assert brief(evaluator, None) == []  # held at 09:00 - lateness
    backlog.holding = False  # caught up
    evaluator.advance(at("10:05:00"))
    assert ("d", at("10:01:00"), at("10:04:00"), [0, 0, 0], "open") in brief(evaluator)


def test_allowlist_alert_resolves_by_wall_clock_after_quiet(tmp: Path) -> None:
    evaluator, stream = live(tmp)
    evaluator.advance(at("10:00:00"))
    evaluator.process(stream, [process("10:00:10", "/bin/bad")])
    (alert,) = [a for a in evaluator.book.alerts.values() if not a.is_range]
    assert alert.state == "open"
    evaluator.advance(at("10:05:09"))
    assert alert.state == "open"
    evaluator.advance(at("10:05:10"))  # end + quiet <= now
    assert alert.state == "resolved"


def test_above_max_raises_the_moment_the_count_crosses(tmp: Path) -> None:
    evaluator, stream = live(tmp)
    evaluator.advance(at("10:00:00"))
    evaluator.process(stream, [d2c("10:00:10", weight=3)])
    assert brief(evaluator) == []
    evaluator.process(stream, [d2c("10:00:11")])
    assert brief(evaluator) == [("d", at("10:00:00"), at("10:01:00"), [4], "open")]
