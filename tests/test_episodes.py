"""Range episodes under any arrival order, and rule changes while running (SPEC §4)."""

from __future__ import annotations

from pathlib import Path

from engine.config import Config
from engine.evaluator import Evaluator
from engine.event import Event
from engine.timestamps import US, parse_time
from tests.conftest import config_from

MQTT = 8


def at(hms: str) -> int:
    return parse_time(f"2026-11-28T{hms}Z")


def d2c(hms: str, weight: int = 1, device: str = "a") -> Event:
    return Event(at(hms), device, "d2c", MQTT, value="mqtt", weight=weight)


def config(tmp: Path, lo: int = 1, hi: int = 3, window: str = "PT2M") -> Config:
    return config_from(
        tmp,
        f"""
[engine]
lateness = "PT1M"
[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = {lo}
max = {hi}
window = "{window}"
""",
    )


def ranges(evaluator: Evaluator) -> list[tuple]:
    return sorted(
        (a.device, a.start, a.end, list(a.counts), a.state)
        for a in evaluator.book.alerts.values()
        if a.is_range
    )


def test_early_alert_joins_the_run_that_grows_into_it(tmp_path: Path) -> None:
    # Window 10:04 goes above max first (one stream), then 10:02 (another stream) while 10:00 is
    # already final and out: one run 10:00-10:06, not a second alert for 10:04.
    evaluator = Evaluator(config(tmp_path))
    s1, s2 = evaluator.add_stream("s1"), evaluator.add_stream("s2")
    evaluator.process(s2, [d2c("10:01:30", 7)])
    evaluator.process(s1, [d2c("10:02:00"), d2c("10:04:00", 3)])
    evaluator.process(s2, [d2c("10:02:00"), d2c("10:03:00"), d2c("10:04:00")])
    evaluator.process(s2, [d2c("10:03:45")])
    alerts = evaluator.finish()
    assert [(a.start, a.end, a.counts) for a in alerts] == [
        (at("10:00:00"), at("10:06:00"), [7, 4, 4])
    ]


def live(tmp: Path) -> tuple[Evaluator, object]:
    evaluator = Evaluator(config(tmp, lo=1, hi=3, window="PT1M"), incremental=True)
    evaluator.watermark.wall_lateness = {"IoT Hub": 60 * US}
    stream = evaluator.add_stream("s")
    stream.holding = False
    return evaluator, stream


def test_changed_limits_apply_from_the_next_window(tmp_path: Path) -> None:
    evaluator, stream = live(tmp_path)
    evaluator.advance(at("10:00:00"))
    evaluator.process(stream, [d2c("10:00:10", 2)])
    evaluator.advance(at("10:00:30"))
    evaluator.reconfigure(config(tmp_path, lo=1, hi=1, window="PT1M"))
    # The current window keeps max 3: 3 is in range there. The next window has max 1.
    evaluator.process(stream, [d2c("10:00:40"), d2c("10:01:10", 2)])
    assert ranges(evaluator) == [("a", at("10:01:00"), at("10:02:00"), [2], "open")]


def test_disabled_rule_stops_after_the_current_window(tmp_path: Path) -> None:
    evaluator, stream = live(tmp_path)
    evaluator.advance(at("10:00:00"))
    evaluator.process(stream, [d2c("10:00:10", 5)])
    assert ranges(evaluator) == [("a", at("10:00:00"), at("10:01:00"), [5], "open")]
    evaluator.reconfigure(Config.default())
    evaluator.process(stream, [d2c("10:01:10", 50)])  # not evaluated any more
    evaluator.advance(at("10:03:00"))
    assert ranges(evaluator) == [("a", at("10:00:00"), at("10:01:00"), [5], "resolved")]


def test_new_window_size_starts_at_the_next_boundary(tmp_path: Path) -> None:
    evaluator, stream = live(tmp_path)
    evaluator.advance(at("10:00:00"))
    evaluator.process(stream, [d2c("10:00:10")])
    evaluator.advance(at("10:00:20"))
    evaluator.reconfigure(config(tmp_path, lo=1, hi=3, window="PT5M"))
    # The 1-minute rule goes on until the 5-minute rule's first whole window, at 10:05.
    evaluator.process(stream, [d2c("10:00:50"), d2c("10:02:00", 9), d2c("10:05:10", 4)])
    assert ranges(evaluator) == [
        ("a", at("10:02:00"), at("10:03:00"), [9], "open"),
        ("a", at("10:05:00"), at("10:10:00"), [4], "open"),
    ]


def test_a_rule_change_takes_effect_from_the_window_after_its_moment(tmp_path: Path) -> None:
    """The boundary is the window after the moment of the change, as given (a restart applies
    a logged change at its own moment, not at the restored wall clock)."""
    evaluator, stream = live(tmp_path)
    evaluator.advance(at("10:00:00"))
    evaluator.process(stream, [d2c("10:00:10")])
    evaluator.reconfigure(config(tmp_path, lo=1, hi=9, window="PT1M"), now=at("10:03:30"))
    old = evaluator.devices["a"].tracks[MQTT].previous
    assert old is not None and old.stop * old.size == at("10:04:00")
    assert evaluator.devices["a"].tracks[MQTT].start * old.size == at("10:04:00")
