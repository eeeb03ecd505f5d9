"""The console under contract v2: a withdrawn alert stays visible (struck through, filterable), an
amended alert says so with the windows that changed, the counters show amended counts.

A real engine (a ``Bridge`` with an injected wall clock) on a temporary database; a hub source
file the test appends to, as a log shipper would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Select

from engine.config import load_config
from tests.test_app import append, console, d2c, db_rows, refreshed, screen_text, wait_for
from tui.bridge import Bridge
from tui.panes.alerts import AlertsPane, AlertsTable
from tui.screens.detail import AlertDetail

US = 1_000_000
T0 = 1_795_860_000 * US  # 2026-11-28T10:00:00Z
SIZE = (140, 40)

CONFIG = """
[engine]
lateness = "PT1M"

[[sources]]
type = "hub-events"
path = "hub.jsonl"

[devices]
"quiet" = "default"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 1
max = 3
window = "PT1M"
"""


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def live(tmp_path: Path) -> Any:
    (tmp_path / "hub.jsonl").touch()
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    clock = Clock(T0)
    bridge = Bridge(load_config(tmp_path / "iotwatch.toml"), str(tmp_path / "i.db"), clock=clock)
    bridge.start()
    try:
        yield bridge, tmp_path, clock
    finally:
        bridge.stop()


def alerts(db: str) -> list[tuple[Any, ...]]:
    return db_rows(
        db, "SELECT id, device, start_us, counts, state, amended FROM alerts ORDER BY id"
    )


async def test_withdrawn_and_amended_alerts_in_the_console(live: Any) -> None:
    bridge, folder, clock = live
    db = bridge.db
    hub = folder / "hub.jsonl"
    app = console(bridge)
    async with app.run_test(size=SIZE) as pilot:
        append(hub, [d2c("busy", T0 + 5 * US)])
        await wait_for(pilot, lambda: db_rows(db, "SELECT count(*) FROM events")[0][0] == 1)
        clock.now = T0 + 190 * US  # 10:03:10: the 10:01 windows are judged, empty: below min
        await wait_for(pilot, lambda: len(alerts(db)) >= 2, what="the below-min alerts")
        (quiet_id, *_rest) = next(a for a in alerts(db) if a[1] == "quiet")
        # quiet's 10:01 data arrives late: its only out-of-range window is in range now.
        append(hub, [d2c("quiet", T0 + 70 * US, count=2)])
        await wait_for(
            pilot,
            lambda: any(a[0] == quiet_id and a[4] == "withdrawn" for a in alerts(db)),
            what="the withdrawn alert",
        )
        # busy's 10:01 data arrives late too, above max: its below-min alert is amended.
        append(hub, [d2c("busy", T0 + 80 * US, count=7)])
        await wait_for(
            pilot,
            lambda: any(a[1] == "busy" and a[3] == "[7]" and a[5] for a in alerts(db)),
            what="the amended alert",
        )
        busy_id = next(a[0] for a in alerts(db) if a[1] == "busy" and a[4] != "withdrawn")
        # The counters show each window's count as it stands: busy's amended 10:01 holds 7.
        snapshot = bridge.snapshot().result(5)
        (counter,) = [c for c in snapshot.counters if c.device == "busy"]
        assert counter.history[-2:] == (1, 7) and counter.start == T0 + 180 * US

        await pilot.press("2")
        pane = app.query_one(AlertsPane)
        table = app.query_one(AlertsTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="both alerts listed")
        withdrawn = table.get_row(str(quiet_id))[1]
        assert withdrawn.plain.startswith("⊘ withdrawn")
        assert "strike" in str(withdrawn.style) or any(
            "strike" in str(s.style) for s in withdrawn.spans
        )
        assert table.get_row(str(busy_id))[1].plain.endswith("±")
        assert "1 withdrawn" in screen_text(app)

        state = pane.query_one("#alert-state", Select)
        state.value = "withdrawn"
        await wait_for(pilot, lambda: table.row_count == 1, what="the withdrawn filter")
        assert pane.rows.keys() == {str(quiet_id)}
        state.value = "current"
        await wait_for(pilot, lambda: pane.rows.keys() == {str(busy_id)}, what="current only")
        state.value = "amended"
        await refreshed(pilot)
        assert set(pane.rows) == {str(busy_id), str(quiet_id)}  # both were changed by late data

        state.value = "all"
        await wait_for(pilot, lambda: table.row_count == 2)
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        assert isinstance(app.screen, AlertDetail)
        await wait_for(pilot, lambda: "Amendments" in screen_text(app), what="the amendments")
        text = screen_text(app)
        assert "amended by late data" in text
        assert "window 11-28 10:01:00: 0 → 7" in text
        await pilot.press("escape")
        table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "withdrawn —" in screen_text(app), what="withdrawn detail")
        assert "late data left no window of it out of range" in screen_text(app)
