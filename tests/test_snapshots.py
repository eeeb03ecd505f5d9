"""Snapshots of the dashboard, the alerts pane, an alert's detail, the help and the export dialog
at 80×24, 120×36 and 200×50, with time frozen (the engine's clock is a constant) and data replayed
from a fixed file, so nothing depends on the wall clock. Update with
``pytest tests/test_snapshots.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from engine.config import AllowRule, Config, DeviceMap, Group, RangeRule, SourceConfig
from engine.timestamps import parse_time
from tests.test_app import agent_event, append, refreshed, security_message, stamp, wait_for
from tui.app import IotwatchApp
from tui.bridge import Bridge
from tui.screens.dialogs import HelpDialog
from tui.screens.export import ExportDialog

SIZES = [(80, 24), (120, 36), (200, 50)]
sizes = pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
NOW = parse_time("2026-11-28T10:07:30Z")
MINUTE = 60_000_000


def _config() -> Config:
    rules = {
        name: RangeRule(name, True, 0, high, 60, severity)
        for name, high, severity in (
            ("ActiveConnectionsNotInAllowedRange", 6, "Low"),
            ("FailedLocalLoginsNotInAllowedRange", 2, "High"),
        )
    }
    allow = {
        "ProcessNotAllowed": AllowRule("ProcessNotAllowed", True, ("sensor-app", "busybox")),
        "LocalUserNotAllowed": AllowRule("LocalUserNotAllowed", True, ("operator",)),
    }
    lab_rules = {
        "ActiveConnectionsNotInAllowedRange": RangeRule(
            "ActiveConnectionsNotInAllowedRange", True, 0, 20, 60
        )
    }
    return Config(
        path=None,  # nothing to watch: the snapshot must not depend on a file's changes
        lateness=60,
        quiet=600,
        sources=(SourceConfig("security-messages", "agent.jsonl", format="security-messages"),),
        groups={"default": Group("default", rules, allow), "lab": Group("lab", lab_rules, {})},
        devices=DeviceMap({"lab-1": "lab", "spare-1": "default"}),
    )


def _records() -> list[dict[str, Any]]:
    """Seven minutes of three devices, with a brute force and an intruder on sensor-2; one
    stream, so alerts are raised in one order every time."""
    out = []
    start = NOW - 7 * MINUTE - 30_000_000
    for minute in range(8):
        for i, device in enumerate(("lab-1", "sensor-1", "sensor-2")):
            t = start + minute * MINUTE + i * 1_000_000
            conns = 2 + (minute + i) % 4 + (9 if device == "sensor-2" and minute in (3, 4) else 0)
            item = {"Direction": "Out", "RemoteAddress": "10.0.0.1", "Protocol": "tcp"}
            events = [
                agent_event(
                    "ConnectionCreate", stamp(t), {**item, "ExtraDetails": {"HitCount": conns}}
                ),
                agent_event("ProcessCreate", stamp(t + 1000), {"Executable": "/bin/sensor-app"}),
            ]
            if device == "sensor-2" and minute == 5:
                fail = {"UserName": "root", "Result": "Fail", "RemoteAddress": "203.0.113.9"}
                events += [agent_event("Login", stamp(t + 2000 + k), fail) for k in range(4)]
                ok = {"UserName": "support", "Result": "Success", "RemoteAddress": "203.0.113.9"}
                events.append(agent_event("Login", stamp(t + 9000), ok))
                events.append(
                    agent_event("ProcessCreate", stamp(t + 9500), {"Executable": "/tmp/.x/miner"})
                )
            out.append(security_message(device, *events))
    return out


@pytest.fixture
def frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bridge]:
    """An engine on a replayed file at a relative path, its clock standing at ``NOW``.

    The engine keeps the counters' history of the devices that a snapshot has seen, so the first
    minute goes in first (the clock still before it), a snapshot is taken, then the rest; then
    the clock is set to ``NOW``. Every step waits for the engine, so nothing depends on timing.
    """
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "agent.jsonl"
    path.touch()
    now = {"us": NOW - 8 * MINUTE}
    bridge = Bridge(_config(), str(tmp_path / "iotwatch.db"), clock=lambda: now["us"])
    bridge.start()
    records = _records()

    def stored_events() -> int:
        return int(bridge.query("SELECT count(*) FROM events")[0][0])

    def settle(predicate: Any) -> None:
        deadline = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < deadline, "the engine did not take the data"
            time.sleep(0.02)

    try:
        append(path, records[:3])  # the first minute: every device becomes known
        settle(lambda: stored_events() == 6)
        assert len(bridge.snapshot().result(10).counters) == 7
        append(path, records[3:])
        settle(lambda: stored_events() == 54)
        now["us"] = NOW
        # At NOW the wall clock completes the window after sensor-2's connection burst, which
        # resolves that alert: wait for it, so every snapshot shows the settled state.
        settle(
            lambda: bridge.query("SELECT count(*) FROM alerts WHERE state = 'resolved'")[0][0] == 1
        )
        yield bridge
    finally:
        bridge.stop()


def _settled(bridge: Bridge, alerts: int) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(
            pilot,
            lambda: (
                bridge.session is not None
                and all(s.state == "caught-up" for s in bridge.session.status)
                and len(bridge.query("SELECT id FROM alerts")) >= alerts
            ),
            what="the replayed data",
        )
        # Two refreshes once everything is in: the sources' events/s are then steady (0).
        await refreshed(pilot, 2)

    return run_before


EXPECTED_ALERTS = 4  # connections above max, failed logins above max, the user, the process


@sizes
def test_dashboard(frozen: Bridge, snap_compare: Any, size: tuple[int, int]) -> None:
    app = IotwatchApp(frozen, notify_alerts=False)
    assert snap_compare(app, terminal_size=size, run_before=_settled(frozen, EXPECTED_ALERTS))


@sizes
def test_alerts(frozen: Bridge, snap_compare: Any, size: tuple[int, int]) -> None:
    app = IotwatchApp(frozen, notify_alerts=False)
    settle = _settled(frozen, EXPECTED_ALERTS)

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@sizes
def test_alert_detail(frozen: Bridge, snap_compare: Any, size: tuple[int, int]) -> None:
    app = IotwatchApp(frozen, notify_alerts=False)
    settle = _settled(frozen, EXPECTED_ALERTS)

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        await settle(pilot)
        from tui.panes.alerts import AlertsTable
        from tui.screens.detail import AlertDetail

        table = app.query_one(AlertsTable)
        table.focus()
        table.move_cursor(row=table.row_count - 1)  # the oldest: connections above max
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, AlertDetail) and app.screen.alert is not None,
            what="the detail",
        )
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@sizes
def test_help(frozen: Bridge, snap_compare: Any, size: tuple[int, int]) -> None:
    app = IotwatchApp(frozen, notify_alerts=False)
    settle = _settled(frozen, EXPECTED_ALERTS)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpDialog), what="the help")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@sizes
def test_export_dialog(frozen: Bridge, snap_compare: Any, size: tuple[int, int]) -> None:
    """Opened from the alerts tab with a device filter: the filter is carried over, and the
    text term that is no export filter is listed."""
    app = IotwatchApp(frozen, notify_alerts=False)
    settle = _settled(frozen, EXPECTED_ALERTS)

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        await settle(pilot)
        app.query_one("#alert-text", Input).value = "d:sensor-2 miner"
        await refreshed(pilot)
        app.set_focus(None)
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="the dialog")
        # A fixed file: the default name holds the time, and the folder is the test's own.
        app.screen.query_one("#export-file", Input).value = "/srv/exports/fleet.sqlite"
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
