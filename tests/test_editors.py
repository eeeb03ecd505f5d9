"""The allow-list and rules editors on a real engine (Bridge over a temporary database), and the
pure configuration edits behind them (engine.config_edit)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from textual.app import App, ComposeResult
from textual.widget import Widget
from textual.widgets import Footer, Input

from engine.azure_groups import dump_azure_groups
from engine.catalogue import CONNECTION_TO_IP, RANGE_RULES
from engine.config import Config, ConfigError, load_config
from engine.config_edit import (
    add_allow_value,
    add_group,
    entry_reason,
    normalize_value,
    remove_allow_value,
    rename_group,
    replace_allow_value,
    set_range_rule,
    write_config,
)
from engine.evaluator import Plan
from engine.session import Session
from tui.bridge import Bridge
from tui.panes.allowlists import AllowlistsPane, ConfirmAddValue
from tui.panes.rules import RulesPane
from tui.screens.dialogs import ConfirmDialog
from tui.widgets import TextPrompt
from tui.widgets.kv_editor import ListEditor

T = TypeVar("T")
SIZE = (130, 40)
MQTT_D2C = "MqttD2CMessagesNotInAllowedRange"
OUT_IPS = "ConnectionToIpNotAllowed"

CONFIG = """\
# a comment that console edits keep
[engine]
lateness = "PT1M"
quiet = "PT5M"

[database]
path = "iotwatch.db"

[[sources]]
type = "hub-events"
path = "hub-*.jsonl"

[devices]
"d" = "default"
"lab-*" = "Lab"

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 0
max = 5
window = "PT1M"

[groups.default.rules.ConnectionToIpNotAllowed]
allow = ["10.0.0.0/8"]

[groups.Lab.rules.ProcessNotAllowed]
allow = ["sh", "/usr/bin/agent"]
severity = "High"
"""


class PaneApp(App[None]):
    """A bare app that mounts one pane (the console's shell mounts it in a tab)."""

    def __init__(self, make: Callable[[], Widget]) -> None:
        super().__init__()
        self.make = make

    def compose(self) -> ComposeResult:
        yield self.make()
        yield Footer()


def write_config_file(folder: Path, text: str = CONFIG) -> Path:
    path = folder / "iotwatch.toml"
    path.write_text(text)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = {"time": now, "deviceId": "d", "op": "d2c", "protocol": "mqtt"}
    (folder / "hub-1.jsonl").write_text(json.dumps(event) + "\n")
    return path


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    config = load_config(write_config_file(tmp_path))
    assert config.db_path is not None
    b = Bridge(config, config.db_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def on_engine(bridge: Bridge, fn: Callable[[Session], T]) -> T:
    """``fn(session)`` on the session's loop, awaited without blocking the UI."""

    async def run() -> T:
        assert bridge.session is not None
        return fn(bridge.session)

    return await asyncio.wrap_future(bridge.call(run()))


async def settle(pilot: Any) -> None:
    """Wait for the panes' workers (engine calls, file writes) and the screen to catch up."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def wait_screen(pilot: Any, kind: type[T]) -> T:
    """Let the app run until a screen of ``kind`` is on top; that screen."""
    deadline = time.monotonic() + 10
    while not isinstance(pilot.app.screen, kind):
        assert time.monotonic() < deadline, f"no {kind.__name__} came up"
        await pilot.pause(0.05)
    return pilot.app.screen


async def type_into(pilot: Any, widget: Input, text: str) -> None:
    widget.focus()
    widget.value = ""
    await pilot.pause()
    await pilot.press(*text)


@pytest.fixture
async def allowlists(bridge: Bridge) -> AsyncIterator[tuple[Any, AllowlistsPane]]:
    app = PaneApp(lambda: AllowlistsPane(bridge))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        yield pilot, app.query_one(AllowlistsPane)


# -- allow-lists ----------------------------------------------------------------------------------


async def test_invalid_cidr_shows_reason_inline_and_changes_nothing(
    bridge: Bridge, allowlists: tuple[Any, AllowlistsPane]
) -> None:
    pilot, pane = allowlists
    before = bridge.config
    path = Path(before.path or "")
    text = path.read_text()
    editor = pane.editor
    assert editor.values == ("10.0.0.0/8",)

    await type_into(pilot, editor.input, "10.0.0.1/8")
    assert editor.reason == (
        "allow-list entry '10.0.0.1/8' has host bits set (the network is 10.0.0.0/8)"
    )
    await pilot.press("enter")
    await settle(pilot)
    assert bridge.config is before
    assert editor.values == ("10.0.0.0/8",)
    assert editor.input.value == "10.0.0.1/8"  # kept, to be corrected

    await type_into(pilot, editor.input, "10.0.0.300")
    assert editor.reason == "allow-list entry '10.0.0.300' is not an IP address or CIDR"
    await type_into(pilot, editor.input, "10.0.0.0/8")
    assert editor.reason == "allow-list entry '10.0.0.0/8' is already on the list"
    await pilot.press("enter")
    await settle(pilot)
    assert bridge.config is before
    assert path.read_text() == text
    assert not path.with_name(path.name + ".bak").exists()


async def test_valid_cidr_reaches_the_engine_and_the_file(
    bridge: Bridge, allowlists: tuple[Any, AllowlistsPane]
) -> None:
    pilot, pane = allowlists
    path = Path(bridge.config.path or "")
    editor = pane.editor
    await type_into(pilot, editor.input, "192.168.0.0/16")
    assert editor.reason == ""
    await pilot.press("enter")
    await settle(pilot)

    assert pane.last_outcome is not None and pane.last_outcome.saved == str(path)
    assert bridge.config.group("default").allow_rules[OUT_IPS].values == (
        "10.0.0.0/8",
        "192.168.0.0/16",
    )
    assert editor.values == ("10.0.0.0/8", "192.168.0.0/16")
    assert editor.input.value == ""

    def allowed(session: Session) -> tuple[bool, bool]:
        assert session.evaluator is not None
        plan = Plan(session.evaluator.config, "default")
        _rule, allows, _severity = plan.allow[CONNECTION_TO_IP]
        return allows("192.168.7.7"), allows("172.16.0.1")

    assert await on_engine(bridge, allowed) == (True, False)
    # Persisted: the file reads back with the entry; the previous file is kept as .bak.
    saved = load_config(path)
    assert saved.group("default").allow_rules[OUT_IPS].values[-1] == "192.168.0.0/16"
    assert saved.groups == bridge.config.groups and saved.devices == bridge.config.devices
    assert path.with_name(path.name + ".bak").read_text() == CONFIG
    text = path.read_text()
    assert 'path = "hub-*.jsonl"' in text and 'path = "iotwatch.db"' in text
    # Only the edited line changed: the comment, order and [[sources]] table stay.
    assert text == CONFIG.replace(
        'allow = ["10.0.0.0/8"]', 'allow = ["10.0.0.0/8", "192.168.0.0/16"]'
    )


async def test_edit_and_remove_entries_with_keys(
    bridge: Bridge, allowlists: tuple[Any, AllowlistsPane]
) -> None:
    pilot, pane = allowlists
    pane.show_list("Lab", "ProcessNotAllowed")
    await pilot.pause()
    editor = pane.editor
    assert editor.values == ("sh", "/usr/bin/agent")
    editor.table.focus()
    await pilot.press("down", "e")
    assert editor.editing == 1 and editor.input.value == "/usr/bin/agent"
    await type_into(pilot, editor.input, "/usr/bin/")
    assert "ends with a path separator" in editor.reason
    await type_into(pilot, editor.input, "/opt/agent")
    await pilot.press("enter")
    await settle(pilot)
    lab = bridge.config.group("lab").allow_rules["ProcessNotAllowed"]
    assert lab.values == ("sh", "/opt/agent") and lab.severity == "High"
    assert editor.editing is None

    # d asks first: Escape (or n) keeps the entry, y removes it.
    editor.table.focus()
    await pilot.press("up", "d")
    assert isinstance(pane.app.screen, ConfirmDialog)
    assert "sh" in pane.app.screen.body.plain
    await pilot.press("escape")
    await settle(pilot)
    assert bridge.config.group("lab").allow_rules["ProcessNotAllowed"].values == (
        "sh",
        "/opt/agent",
    )
    await pilot.press("d")
    assert isinstance(pane.app.screen, ConfirmDialog)
    await pilot.press("enter")  # the focus starts on Cancel: enter keeps the entry
    await settle(pilot)
    assert editor.values == ("sh", "/opt/agent")
    await pilot.press("d", "y")
    await settle(pilot)
    assert bridge.config.group("lab").allow_rules["ProcessNotAllowed"].values == ("/opt/agent",)
    assert editor.values == ("/opt/agent",)

    # a adds: it focuses the input.
    editor.table.focus()
    await pilot.press("a")
    assert editor.input.has_focus
    await pilot.press(*"busybox", "enter")
    await settle(pilot)
    assert bridge.config.group("lab").allow_rules["ProcessNotAllowed"].values == (
        "/opt/agent",
        "busybox",
    )


async def test_bindings_have_ids_and_show_in_the_footer(
    allowlists: tuple[Any, AllowlistsPane],
) -> None:
    pilot, pane = allowlists
    pane.editor.table.focus()
    await pilot.pause()
    shown = {
        b.binding.id: b.binding.description
        for b in pilot.app.active_bindings.values()
        if b.binding.show and b.binding.id
    }
    for binding_id in ("list_editor.add", "list_editor.edit", "list_editor.remove"):
        assert binding_id in shown
    assert "allowlists.toggle" in shown


async def test_add_value_from_an_alert_after_confirmation(
    bridge: Bridge, allowlists: tuple[Any, AllowlistsPane]
) -> None:
    pilot, pane = allowlists
    # Cancelled: nothing changes.
    pane.add_value("Default", OUT_IPS, "::ffff:203.0.113.9")
    await pilot.pause()
    dialog = pilot.app.screen
    assert isinstance(dialog, ConfirmAddValue) and dialog.entry == "203.0.113.9"
    await pilot.press("n")
    await settle(pilot)
    assert bridge.config.group("default").allow_rules[OUT_IPS].values == ("10.0.0.0/8",)

    # A value that can be no entry: the reason is shown, y does nothing.
    pane.add_value("default", OUT_IPS, "not-an-ip[/x]")
    await pilot.pause()
    dialog = pilot.app.screen
    assert isinstance(dialog, ConfirmAddValue)
    assert dialog.reason == "allow-list entry 'not-an-ip[/x]' is not an IP address or CIDR"
    await pilot.press("y")
    await pilot.pause()
    assert pilot.app.screen is dialog
    await pilot.press("escape")
    await pilot.pause()

    # Confirmed: the mapped address goes on the list, in the engine and the file.
    pane.add_value("DEFAULT", OUT_IPS, " ::ffff:203.0.113.9 ")
    await pilot.pause()
    await pilot.press("y")
    await settle(pilot)
    assert not isinstance(pilot.app.screen, ConfirmAddValue)
    values = bridge.config.group("default").allow_rules[OUT_IPS].values
    assert values == ("10.0.0.0/8", "203.0.113.9")
    assert load_config(bridge.config.path or "").group("default").allow_rules[OUT_IPS].values == (
        values
    )
    assert pane.editor.values == values

    # A user in a group without a rule table: the table is created (the rule turns on).
    pane.add_value("lab", "LocalUserNotAllowed", "ci-runner", confirm=False)
    await settle(pilot)
    rule = bridge.config.group("lab").allow_rules["LocalUserNotAllowed"]
    assert rule.values == ("ci-runner",) and rule.enabled


async def test_toggle_rule_and_new_group(
    bridge: Bridge, allowlists: tuple[Any, AllowlistsPane]
) -> None:
    pilot, pane = allowlists
    pane.editor.table.focus()
    await pilot.press("t")
    await settle(pilot)
    rule = bridge.config.group("default").allow_rules[OUT_IPS]
    assert not rule.enabled and rule.values == ("10.0.0.0/8",)
    await pilot.press("t")
    await settle(pilot)
    assert bridge.config.group("default").allow_rules[OUT_IPS].enabled

    await pilot.press("n")
    await pilot.pause()
    assert isinstance(pilot.app.screen, TextPrompt)
    await pilot.press(*"lab", "enter")  # taken (as 'Lab'): refused in the prompt
    await pilot.pause()
    assert isinstance(pilot.app.screen, TextPrompt)
    prompt_input = pilot.app.screen.query_one(Input)
    prompt_input.value = ""
    await pilot.press(*"Bench", "enter")
    await settle(pilot)
    assert "bench" in bridge.config.groups and bridge.config.groups["bench"].name == "Bench"
    assert pane.group == "bench"


# -- rules ----------------------------------------------------------------------------------------


@pytest.fixture
async def rules(bridge: Bridge) -> AsyncIterator[tuple[Any, RulesPane]]:
    app = PaneApp(lambda: RulesPane(bridge))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        yield pilot, app.query_one(RulesPane)


def _row(name: str) -> int:
    return [r.name for r in RANGE_RULES].index(name)


async def _device_known(bridge: Bridge) -> None:
    def has_track(session: Session) -> bool:
        ev = session.evaluator
        return ev is not None and "d" in ev.devices and bool(ev.devices["d"].tracks)

    deadline = time.monotonic() + 10
    while not await on_engine(bridge, has_track):
        assert time.monotonic() < deadline, "the engine never saw device d"
        await asyncio.sleep(0.05)


async def test_range_rule_change_takes_effect_from_the_next_window(
    bridge: Bridge, rules: tuple[Any, RulesPane]
) -> None:
    pilot, pane = rules
    await _device_known(bridge)
    pane.table.focus()
    pane.table.move_cursor(row=_row(MQTT_D2C))
    await pilot.press("e")
    assert pane.rule == MQTT_D2C
    max_input = pane.query_one("#rl-max", Input)
    assert max_input.has_focus and max_input.value == "5"
    await type_into(pilot, max_input, "9")
    assert pane.reason == ""
    await pilot.press("enter")
    await settle(pilot)

    rule = bridge.config.group("default").range_rules[MQTT_D2C]
    assert (rule.enabled, rule.min, rule.max, rule.window) == (True, 0, 9, 60)

    def tracks(session: Session) -> tuple[int, int | None, int, int]:
        assert session.evaluator is not None
        track = session.evaluator.devices["d"].tracks[_row(MQTT_D2C) + 1]
        previous = track.previous.max if track.previous is not None else None
        return track.max, previous, track.next * track.size, session.clock()

    new_max, old_max, starts, now = await on_engine(bridge, tracks)
    assert new_max == 9 and old_max == 5  # the old track finishes the current window
    assert now < starts <= now + 60_000_000  # the new max counts from the next window
    assert load_config(bridge.config.path or "").group("default").range_rules[MQTT_D2C].max == 9


async def test_invalid_rule_values_are_refused_with_the_file_message(
    bridge: Bridge, rules: tuple[Any, RulesPane]
) -> None:
    pilot, pane = rules
    before = bridge.config
    key = f"groups.default.rules.{MQTT_D2C}"
    pane.table.move_cursor(row=_row(MQTT_D2C))
    await pilot.pause()
    min_input = pane.query_one("#rl-min", Input)
    max_input = pane.query_one("#rl-max", Input)
    window_input = pane.query_one("#rl-window", Input)

    await type_into(pilot, min_input, "10")
    assert pane.reason == f"{key}.min: min 10 is above max 5"
    await pilot.press("enter")
    await settle(pilot)
    assert bridge.config is before

    await type_into(pilot, min_input, "0")
    await type_into(pilot, max_input, "-1")
    assert pane.reason == f"{key}.max: must not be negative (-1)"
    await type_into(pilot, max_input, "1.5")
    assert pane.reason == f"{key}.max: must be an integer, not a float"
    await type_into(pilot, max_input, "lots")
    assert pane.reason == f"{key}.max: must be an integer, not a string"
    await type_into(pilot, max_input, "")
    assert pane.reason == f"{key}.max: missing: an enabled range rule needs a max"
    await type_into(pilot, max_input, "7")
    await type_into(pilot, window_input, "PT30S")
    assert pane.reason == f"{key}.window: window PT30S is outside PT1M..P7D"
    await type_into(pilot, window_input, "P1M")
    assert pane.reason == (
        f"{key}.window: 'P1M' is not an ISO 8601 duration of whole seconds (e.g. 'PT15M')"
    )
    await pilot.press("enter")
    await settle(pilot)
    assert bridge.config is before

    # The same values in the file give the same messages.
    for table, message in (
        ("min = 10\nmax = 5", "min 10 is above max 5"),
        ("max = -1", "must not be negative (-1)"),
        ('max = 5\nwindow = "PT30S"', "window PT30S is outside PT1M..P7D"),
    ):
        path = Path(before.path or "").with_name("bad.toml")
        path.write_text(f"[groups.default.rules.{MQTT_D2C}]\n{table}\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert err.value.reason == message


async def test_toggle_range_rule(bridge: Bridge, rules: tuple[Any, RulesPane]) -> None:
    pilot, pane = rules
    pane.table.focus()
    # A rule without a table: space loads it into the form, enabled, to get a max first.
    pane.table.move_cursor(row=_row("FileUploadsNotInAllowedRange"))
    await pilot.press("space")
    await settle(pilot)
    assert "FileUploadsNotInAllowedRange" not in bridge.config.group("default").range_rules
    assert pane.query_one("#rl-max", Input).has_focus
    await type_into(pilot, pane.query_one("#rl-max", Input), "4")
    await pilot.press("enter")
    await settle(pilot)
    rule = bridge.config.group("default").range_rules["FileUploadsNotInAllowedRange"]
    assert (rule.enabled, rule.max) == (True, 4)
    # (Only the last edit disables a rule: see test_engine_reconfigure_after_disabling_a_rule.)
    pane.table.focus()
    pane.table.move_cursor(row=_row(MQTT_D2C))
    await pilot.press("space")
    await settle(pilot)
    assert not bridge.config.group("default").range_rules[MQTT_D2C].enabled
    assert pane.last_outcome is not None and pane.last_outcome.ok


async def test_rename_group(bridge: Bridge, rules: tuple[Any, RulesPane]) -> None:
    pilot, pane = rules
    pane.show_group("lab")
    await pilot.pause()
    pane.table.focus()
    await pilot.press("r")
    await pilot.pause()
    prompt = pilot.app.screen
    assert isinstance(prompt, TextPrompt)
    prompt.query_one(Input).value = "Bench"
    await pilot.press("enter")
    await settle(pilot)
    assert "lab" not in bridge.config.groups and bridge.config.groups["bench"].name == "Bench"
    assert bridge.config.devices.group_of("lab-3") == "bench"
    assert pane.group == "bench"


async def test_azure_export_then_import_round_trips(
    bridge: Bridge, rules: tuple[Any, RulesPane], tmp_path: Path
) -> None:
    pilot, pane = rules
    original = bridge.config.groups
    target = tmp_path / "out" / "groups.json"

    pane.table.focus()
    await pilot.press("x")
    await pilot.pause()
    prompt = pilot.app.screen
    assert isinstance(prompt, TextPrompt)
    prompt.query_one(Input).value = str(target)
    await pilot.press("enter")
    await settle(pilot)
    assert orjson.loads(target.read_bytes()) == dump_azure_groups(original.values())
    # Exporting over an existing file asks first.
    await pilot.press("x")
    await pilot.pause()
    pilot.app.screen.query_one(Input).value = str(target)
    await pilot.press("enter")
    await wait_screen(pilot, ConfirmDialog)
    target.write_text("kept")
    await pilot.press("n")
    await settle(pilot)
    assert target.read_text() == "kept"
    await pilot.press("x")
    await pilot.pause()
    pilot.app.screen.query_one(Input).value = str(target)
    await pilot.press("enter")
    await wait_screen(pilot, ConfirmDialog)
    await pilot.press("y")
    await settle(pilot)
    assert orjson.loads(target.read_bytes()) == dump_azure_groups(original.values())

    # Change the running rules, then import the export: the groups come back as they were.
    pane.table.move_cursor(row=_row(MQTT_D2C))
    await pilot.pause()
    await type_into(pilot, pane.query_one("#rl-max", Input), "7")
    await pilot.press("enter")
    await settle(pilot)
    assert bridge.config.group("default").range_rules[MQTT_D2C].max == 7

    pane.table.focus()
    await pilot.press("m")
    await pilot.pause()
    prompt = pilot.app.screen
    assert isinstance(prompt, TextPrompt)
    prompt.query_one(Input).value = str(target)
    await pilot.press("enter")
    # It would replace the changed group default: asked first; Escape keeps it as it is.
    confirm = await wait_screen(pilot, ConfirmDialog)
    assert "default" in confirm.body.plain and "lab" not in confirm.body.plain.lower()
    await pilot.press("escape")
    await settle(pilot)
    assert bridge.config.group("default").range_rules[MQTT_D2C].max == 7
    pane.table.focus()
    await pilot.press("m")
    await pilot.pause()
    pilot.app.screen.query_one(Input).value = str(target)
    await pilot.press("enter")
    await wait_screen(pilot, ConfirmDialog)
    await pilot.press("y")
    await settle(pilot)
    assert bridge.config.groups == original  # severities kept by merge_groups
    assert load_config(bridge.config.path or "").groups == original
    assert pane.query_one("#rl-max", Input).value == "5"

    # A broken file is refused with the one-line message; the configuration stays.
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "properties": {"timeWindowRules": [{"ruleType": 1}]}}')
    worker = pane.import_azure(str(bad))
    await settle(pilot)
    assert worker.result is None and bridge.config.groups == original


def test_engine_reconfigure_after_disabling_a_rule(tmp_path: Path) -> None:
    from engine.evaluator import Evaluator
    from engine.event import Event

    config = _config(tmp_path)
    evaluator = Evaluator(config)
    stream = evaluator.add_stream("s")
    evaluator.process(stream, [Event(1_800_000_000_000_000, "d", "d2c", 8, value="mqtt")])
    off = set_range_rule(config, "default", MQTT_D2C, enabled=False)
    evaluator.reconfigure(off)
    evaluator.reconfigure(add_group(off, "other"))  # any later edit


# -- engine.config_edit ---------------------------------------------------------------------------


def _config(tmp_path: Path) -> Config:
    return load_config(write_config_file(tmp_path))


def test_edits_are_pure_and_validated(tmp_path: Path) -> None:
    config = _config(tmp_path)
    new = add_allow_value(config, "DEFAULT", OUT_IPS, "2001:db8::/32")
    assert config.group("default").allow_rules[OUT_IPS].values == ("10.0.0.0/8",)
    assert new.group("default").allow_rules[OUT_IPS].values == ("10.0.0.0/8", "2001:db8::/32")
    assert new.group("default").allow_rules[OUT_IPS].allows("2001:db8::1")

    with pytest.raises(ConfigError) as err:
        add_allow_value(config, "default", OUT_IPS, "2001:db8::1/32")
    assert err.value.key == f"groups.default.rules.{OUT_IPS}.allow[1]"
    assert err.value.reason.endswith("has host bits set (the network is 2001:db8::/32)")

    replaced = replace_allow_value(new, "default", OUT_IPS, 0, "10.1.0.0/16")
    assert replaced.group("default").allow_rules[OUT_IPS].values[0] == "10.1.0.0/16"
    removed = remove_allow_value(replaced, "default", OUT_IPS, 1)
    assert removed.group("default").allow_rules[OUT_IPS].values == ("10.1.0.0/16",)

    with pytest.raises(ConfigError, match=r"min 3 is above max 2"):
        set_range_rule(config, "default", MQTT_D2C, min=3, max=2)
    blank = set_range_rule(config, "lab", "FileUploadsNotInAllowedRange", enabled=True, max=3)
    rule = blank.group("lab").range_rules["FileUploadsNotInAllowedRange"]
    assert (rule.enabled, rule.min, rule.max, rule.window) == (True, 0, 3, 900)
    assert blank.group("lab").allow_rules == config.group("lab").allow_rules

    with pytest.raises(ConfigError, match=r"already exists as 'Lab'"):
        add_group(config, "LAB")
    with pytest.raises(ConfigError, match=r"default group keeps its name"):
        rename_group(config, "default", "other")
    renamed = rename_group(config, "lab", "Bench")
    assert renamed.devices.group_of("lab-1") == "bench" and "lab" not in renamed.groups

    assert entry_reason("ProcessNotAllowed", "a\x1bb") == (
        "allow-list entry 'a\\x1bb' contains a control character"
    )
    assert normalize_value(OUT_IPS, " fe80::1%eth0 ") == "fe80::1"
    assert normalize_value(OUT_IPS, "::ffff:10.1.2.3") == "10.1.2.3"
    assert normalize_value("LocalUserNotAllowed", " root") == " root"


def test_write_config_round_trips_and_keeps_a_backup(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = Path(config.path or "")
    edited = rename_group(add_group(config, "New"), "lab", "Bench")
    edited = set_range_rule(edited, "default", MQTT_D2C, window="PT5M")
    assert write_config(edited) == str(path)
    back = load_config(path)
    assert back.groups == edited.groups
    assert back.devices == edited.devices
    assert (back.sources, back.db_path) == (config.sources, config.db_path)
    assert path.with_name("iotwatch.toml.bak").read_text() == CONFIG
    # Written to a new file: sources and database relative to it.
    other = tmp_path / "copy.toml"
    write_config(edited, other)
    copy = load_config(other)
    assert (copy.sources, copy.db_path, copy.groups) == (
        config.sources,
        config.db_path,
        edited.groups,
    )
    assert not other.with_name("copy.toml.bak").exists()
    with pytest.raises(ValueError):
        write_config(Config.default())


def test_list_editor_is_a_widget() -> None:
    # The editor is reusable on its own (the allow-lists pane is one user).
    editor = ListEditor(lambda value, others: None)
    assert editor.values == ()
