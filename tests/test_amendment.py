"""SPEC §4 "Amendment": an event counted into a window that was already judged judges it again at
once, and the (rule, device)'s alerts are brought up to date — grow, shrink, split, merge,
reopen, resolve or withdraw — keeping the ids of the alerts that continue (contract v2).

Driven through the incremental (live) evaluator with an injected wall clock. Rule: MQTT D2C,
min 1, max 3, one-minute windows; the wall clock completes a window a minute after its end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.alert import Alert
from engine.evaluator import Evaluator
from engine.event import Event
from engine.timestamps import US, parse_time
from tests.conftest import config_from

MQTT = 8

CONFIG = """
[engine]
lateness = "PT1M"
horizon = "PT1H"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 3
window = "PT1M"
"""


def at(hms: str) -> int:
    return parse_time(f"2026-11-28T{hms}Z")


class Live:
    """An incremental evaluator with one caught-up hub stream and a wall clock."""

    def __init__(self, tmp: Path) -> None:
        self.ev = Evaluator(config_from(tmp, CONFIG), incremental=True)
        self.ev.watermark.wall_lateness = {"IoT Hub": 60 * US}
        self.stream = self.ev.add_stream("hub", "hub-events")
        self.stream.holding = False
        self.changes: list[tuple[str, int]] = []
        self.ev.book.listener = lambda change, alert: self.changes.append((change, alert.id))

    def send(self, hms: str, weight: int = 1) -> None:
        self.ev.process(
            self.stream, [Event(at(hms), "d", "d2c", MQTT, value="mqtt", weight=weight)]
        )

    def wall(self, hms: str) -> None:
        self.ev.advance(at(hms))

    def alerts(self) -> list[tuple[int, str, str, list[int], str]]:
        """(id, start, end, counts, state) of every alert that is not withdrawn."""
        return sorted(
            (a.id, _hm(a.start), _hm(a.end), list(a.counts), a.state)
            for a in self.ev.book.alerts.values()
        )

    def alert(self, aid: int) -> Alert:
        return self.ev.book.alerts[aid]

    def took(self) -> list[tuple[str, int]]:
        out, self.changes = self.changes, []
        return out


def _hm(us: int) -> str:
    return f"{us // US // 3600 % 24:02d}:{us // US // 60 % 60:02d}"


@pytest.fixture
def live(tmp_path: Path) -> Live:
    return Live(tmp_path)


def test_amendment_grows_an_alert(live: Live) -> None:
    live.send("10:00:10")
    live.send("10:01:10", 5)  # above max, raised early
    live.send("10:02:10", 2)
    live.wall("10:04:00")  # 10:01 and 10:02 judged: [5], then 2 in range → resolved
    [(aid, *_)] = live.alerts()
    assert live.alerts() == [(aid, "10:01", "10:02", [5], "resolved")]
    live.send("10:02:20", 2)  # 10:02 now holds 4 > max; the window after (10:03) is incomplete
    assert live.alerts() == [(aid, "10:01", "10:03", [5, 4], "open")]
    assert live.alert(aid).amended
    assert live.ev.book.amendments[-1] == (aid, at("10:04:00"), at("10:02:00"), 2, 4)


def test_amendment_shrinks_then_withdraws_an_alert(live: Live) -> None:
    live.send("10:00:10")
    live.wall("10:04:00")  # 10:01 and 10:02 judged empty: below min
    [(aid, *_)] = live.alerts()
    assert live.alerts() == [(aid, "10:01", "10:03", [0, 0], "open")]
    live.send("10:02:30")  # 10:02 in range now
    assert live.alerts() == [(aid, "10:01", "10:02", [0], "resolved")]
    live.took()
    live.send("10:01:30")  # 10:01 in range too: nothing out of range is left
    assert live.alerts() == []
    withdrawn = live.ev.book.dirty[aid]
    assert withdrawn.state == "withdrawn" and withdrawn.amended and withdrawn.into is None
    assert live.took() == [("withdrawn", aid)]


def test_amendment_splits_an_alert_the_left_part_keeps_the_id(live: Live) -> None:
    live.send("10:00:10")
    live.wall("10:05:00")  # 10:01, 10:02, 10:03 judged empty
    [(aid, *_)] = live.alerts()
    assert live.alerts() == [(aid, "10:01", "10:04", [0, 0, 0], "open")]
    live.send("10:02:30", 2)
    (left, right) = live.alerts()
    assert left == (aid, "10:01", "10:02", [0], "resolved")
    assert right[1:] == ("10:03", "10:04", [0], "open") and right[0] > aid
    assert live.alert(aid).amended and live.alert(right[0]).amended


def test_amendment_merges_two_alerts_the_older_id_continues(live: Live) -> None:
    live.send("10:00:10")
    live.send("10:01:10", 4)
    live.send("10:02:10", 2)
    live.send("10:03:10", 4)
    live.send("10:04:10", 2)
    live.wall("10:06:00")
    (first, second) = live.alerts()
    assert first[1:] == ("10:01", "10:02", [4], "resolved")
    assert second[1:] == ("10:03", "10:04", [4], "resolved")
    live.took()
    live.send("10:02:20", 5)  # the window between them: 7 > max
    assert live.alerts() == [(first[0], "10:01", "10:04", [4, 7, 4], "resolved")]
    gone = live.ev.book.dirty[second[0]]
    assert gone.state == "withdrawn" and gone.into == first[0]
    assert sorted(live.took()) == sorted([("updated", first[0]), ("withdrawn", second[0])])


def test_amendment_reopens_a_resolved_alert(live: Live) -> None:
    live.send("10:00:10")
    live.send("10:01:10", 4)
    live.send("10:02:10", 2)
    live.wall("10:04:00")  # 10:01 out, 10:02 in range and complete → resolved
    [(aid, *_)] = live.alerts()
    assert live.alert(aid).state == "resolved"
    live.send("10:02:20", 3)  # 10:02: 5 > max; the window after it (10:03) is not complete
    assert live.alerts() == [(aid, "10:01", "10:03", [4, 5], "open")]


def test_amendment_of_an_early_fired_window(live: Live) -> None:
    live.send("10:00:10")
    live.send("10:05:10", 4)  # the incomplete 10:05 window crosses max: raised at once
    [(aid, *_)] = live.alerts()
    assert live.alerts() == [(aid, "10:05", "10:06", [4], "open")]
    live.send("10:05:20", 2)  # more in the same incomplete window: the count as it stands
    assert live.alerts() == [(aid, "10:05", "10:06", [6], "open")]
    assert not live.alert(aid).amended  # an incomplete window is still being counted
    live.wall("10:07:00")  # judged: 10:01..10:04 empty → below min, joins the run
    assert live.alerts() == [(aid, "10:01", "10:06", [0, 0, 0, 0, 6], "open")]
    live.send("10:06:10")  # 10:06 in range: the run ends with 10:05
    live.wall("10:08:00")
    assert live.alerts() == [(aid, "10:01", "10:06", [0, 0, 0, 0, 6], "resolved")]
    live.send("10:05:30")  # judged already: amended
    assert live.alerts() == [(aid, "10:01", "10:06", [0, 0, 0, 0, 7], "resolved")]
    assert live.alert(aid).amended


def test_first_window_moves_earlier_when_an_earlier_event_arrives(live: Live) -> None:
    live.send("10:03:10")
    live.send("10:04:10")
    live.wall("10:07:00")  # 10:03 (first, partial) and 10:04 in range, 10:05 empty → out
    [(aid, *_)] = live.alerts()
    assert live.alerts() == [(aid, "10:05", "10:06", [0], "open")]
    live.send("10:00:30")  # the device is known from 10:00: 10:01, 10:02 empty, 10:03 holds 1
    (kept, new) = live.alerts()
    assert kept == (aid, "10:05", "10:06", [0], "open")
    assert new[1:] == ("10:01", "10:03", [0, 0], "resolved")
    assert live.alert(new[0]).amended


def test_an_event_beyond_the_horizon_amends_nothing(live: Live) -> None:
    live.send("10:00:10")
    live.wall("11:30:00")  # horizon PT1H: anything before 10:30 is expired
    before = live.alerts()
    assert live.ev.process(live.stream, [Event(at("10:10:00"), "d", "d2c", MQTT, weight=9)]) == 1
    assert live.alerts() == before


def test_judged_counts_are_dropped_behind_the_horizon(live: Live) -> None:
    """The memory kept for amendments is bounded by the horizon, not by the session's age."""
    live.send("10:00:10")
    for minute in range(1, 600, 7):
        live.send(f"{10 + minute // 60:02d}:{minute % 60:02d}:10")
        live.wall(f"{10 + (minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:30")
    track = live.ev.devices["d"].tracks[MQTT]
    assert len(track.judged) <= 60 + 16 + 2  # horizon PT1H of 1-minute windows, trimmed in steps
    assert track.base * track.size >= at("18:00:00")
