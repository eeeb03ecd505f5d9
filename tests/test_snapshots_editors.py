"""A snapshot of the allow-list editor at a fixed size with fixed data: the Lab group's outbound
IPs, the second entry highlighted, and an entry refused inline next to the input; at 80×24,
110×28 and 200×50. Update with
``pytest --snapshot-update`` after a deliberate change of the layout."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config import parse_config
from tests.test_editors import PaneApp
from tui.bridge import Bridge
from tui.panes.allowlists import AllowlistsPane

GROUPS = {
    "default": {"rules": {"ConnectionToIpNotAllowed": {"allow": ["10.0.0.0/8"]}}},
    "Lab": {
        "rules": {
            "ConnectionToIpNotAllowed": {
                "allow": ["10.0.0.0/8", "198.51.100.17", "2001:db8:100::/48"]
            },
            "ProcessNotAllowed": {"allow": ["sh", "/usr/bin/agent"], "severity": "High"},
        }
    },
}


@pytest.mark.parametrize("size", [(80, 24), (110, 28), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_allowlist_editor_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    # The pane only reads bridge.config until an edit is applied: no engine needs to run.
    config = parse_config({"groups": GROUPS}, "iotwatch.toml").replace(path=None)
    bridge = Bridge(config, ":memory:")

    async def run_before(pilot: Any) -> None:
        pane = pilot.app.query_one(AllowlistsPane)
        pane.show_list("lab", "ConnectionToIpNotAllowed")
        await pilot.pause()
        pane.editor.table.focus()
        pane.editor.table.move_cursor(row=1)
        pane.editor.input.value = "10.0.0.1/8"
        await pilot.pause()

    assert snap_compare(
        PaneApp(lambda: AllowlistsPane(bridge)), terminal_size=size, run_before=run_before
    )
