"""Console edits of ``iotwatch.toml`` keep the file: comments, key order, quoting, blank lines and
table style (``[[sources]]`` arrays of tables, dotted headers, multi-line arrays) survive, and only
the lines of what changed differ (engine.config_edit.write_config, edited with tomlkit)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config import Config, DeviceMap, load_config
from engine.config_edit import (
    add_allow_value,
    add_group,
    remove_allow_value,
    remove_rule,
    rename_group,
    replace_allow_value,
    set_allow_enabled,
    set_range_rule,
    write_config,
)
from tests.test_securityalert import HUB

D2C = "MqttD2CMessagesNotInAllowedRange"
PROC = "ProcessNotAllowed"

COMMENTED = """\
# iotwatch configuration of the bench (hand-written; the console keeps these lines)

[engine]
quiet = "PT10M"              # a quiet sensor closes its alert after ten minutes
lateness = "PT1M"            # keys in this order on purpose

[database]
path = "bench.db"

# two inputs
[[sources]]
type = "hub-events"
path = "hub-*.jsonl"         # rotated files

[[sources]]
type = "serial"
port = "loop://"
device = "bench-board-1"

[devices]
"sensor-12" = "default"      # never powered: declared, so its silence shows
'lab-*' = "lab"

# --- default ------------------------------------------------------------------------------

[groups.default.rules.MqttD2CMessagesNotInAllowedRange]
min = 5                      # a reading a minute
max = 40
window = "PT15M"

[groups.default.rules.ProcessNotAllowed]
allow = ["/usr/bin/sensord", "busybox"]  # the agent's own

# --- lab ----------------------------------------------------------------------------------

[groups.lab.rules.ProcessNotAllowed]
allow = [
    "/bin/sensor-app",       # the app
    "python3",
]
severity = "High"
"""


def _diff(before: str, after: str) -> list[str]:
    """The changed lines, each prefixed by ``-`` or ``+``."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def _declare(config: Config, device: str, group: str) -> Config:
    dm = config.devices
    return config.replace(devices=DeviceMap({**dm.exact, device: group}, dm.patterns, dm.default))


EDITS: list[tuple[str, Callable[[Config], Config], list[str]]] = [
    (
        "range threshold",
        lambda c: set_range_rule(c, "default", D2C, max=50),
        ["-max = 40", "+max = 50"],
    ),
    (
        "range window and severity",
        lambda c: set_range_rule(c, "default", D2C, window="PT1H", severity="High"),
        ['-window = "PT15M"', '+window = "PT1H"', '+severity = "High"'],
    ),
    (
        "new range rule: after the group's last rule, before the next section's comment",
        lambda c: set_range_rule(c, "default", "QueuePurgesNotInAllowedRange", enabled=True, max=1),
        [
            "+[groups.default.rules.QueuePurgesNotInAllowedRange]",
            "+max = 1",
            '+window = "PT15M"',
            "+",
        ],
    ),
    (
        "allow-list entry appended to a one-line array",
        lambda c: add_allow_value(c, "default", PROC, "toybox"),
        [
            '-allow = ["/usr/bin/sensord", "busybox"]  # the agent\'s own',
            '+allow = ["/usr/bin/sensord", "busybox", "toybox"]  # the agent\'s own',
        ],
    ),
    (
        "allow-list entry appended to a multi-line array",
        lambda c: add_allow_value(c, "lab", PROC, "sh"),
        ['+    "sh",'],
    ),
    (
        "allow-list entry removed from a multi-line array",
        lambda c: remove_allow_value(c, "lab", PROC, 1),
        ['-    "python3",'],
    ),
    (
        "allow-list entry replaced",
        lambda c: replace_allow_value(c, "default", PROC, 1, "ash"),
        [
            '-allow = ["/usr/bin/sensord", "busybox"]  # the agent\'s own',
            '+allow = ["/usr/bin/sensord", "ash"]  # the agent\'s own',
        ],
    ),
    (
        "allow-list rule turned off",
        lambda c: set_allow_enabled(c, "default", PROC, False),
        ["+enabled = false"],
    ),
    (
        "new group at the end",
        lambda c: add_group(c, "edge"),
        ["+", "+[groups.edge]"],
    ),
    (
        "group renamed: its headers and the devices that name it",
        lambda c: rename_group(c, "lab", "bench"),
        [
            "-'lab-*' = \"lab\"",
            "+'lab-*' = \"bench\"",
            "-[groups.lab.rules.ProcessNotAllowed]",
            "+[groups.bench.rules.ProcessNotAllowed]",
        ],
    ),
    (
        "device declared",
        lambda c: _declare(c, "sensor-13", "lab"),
        ['+"sensor-13" = "lab"'],
    ),
    (
        "device moved",
        lambda c: _declare(c, "sensor-12", "lab"),
        [
            '-"sensor-12" = "default"      # never powered: declared, so its silence shows',
            '+"sensor-12" = "lab"      # never powered: declared, so its silence shows',
        ],
    ),
    (
        "rule removed: the next section's comment stays",
        lambda c: remove_rule(c, "default", D2C),
        [
            "-[groups.default.rules.MqttD2CMessagesNotInAllowedRange]",
            "-min = 5                      # a reading a minute",
            "-max = 40",
            '-window = "PT15M"',
            "-",
        ],
    ),
    (
        "last rule of a group removed: the comment it ended stays",
        lambda c: remove_rule(c, "default", PROC),
        [
            "-[groups.default.rules.ProcessNotAllowed]",
            '-allow = ["/usr/bin/sensord", "busybox"]  # the agent\'s own',
            "-",
        ],
    ),
    (
        "engine timing",
        lambda c: c.replace(quiet=1800),
        [
            '-quiet = "PT10M"              # a quiet sensor closes its alert after ten minutes',
            '+quiet = "PT30M"              # a quiet sensor closes its alert after ten minutes',
        ],
    ),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [(e, x) for _, e, x in EDITS], ids=[n for n, _, _ in EDITS]
)
def test_an_edit_changes_only_its_own_lines(
    tmp_path: Path, edit: Callable[[Config], Config], expected: list[str]
) -> None:
    path = tmp_path / "iotwatch.toml"
    path.write_text(COMMENTED)
    config = load_config(path)
    edited = edit(config)
    assert write_config(edited) == str(path)
    after = path.read_text()
    assert _diff(COMMENTED, after) == expected
    back = load_config(path)
    assert (back.groups, back.devices, back.quiet) == (edited.groups, edited.devices, edited.quiet)
    assert (back.sources, back.db_path) == (config.sources, config.db_path)
    assert after.count("[[sources]]") == 2  # arrays of tables stay arrays of tables
    assert path.with_name("iotwatch.toml.bak").read_text() == COMMENTED


def test_successive_edits_keep_every_comment(tmp_path: Path) -> None:
    path = tmp_path / "iotwatch.toml"
    path.write_text(COMMENTED)
    config = load_config(path)
    for _, edit, lines in EDITS:
        if any(line.startswith("-") and "#" in line for line in lines):
            continue  # removes a line with a comment: checked above
        config = edit(config)
        write_config(config)
        config = load_config(path)
    text = path.read_text()
    comments = [line.split("#", 1)[1] for line in COMMENTED.splitlines() if "#" in line]
    for comment in comments:
        assert comment in text
    assert load_config(path).groups == config.groups


def test_a_file_that_no_longer_reads_is_written_afresh(tmp_path: Path) -> None:
    # The file was broken by hand after the console loaded it: the console's configuration is
    # written whole (and the broken file kept as .bak).
    path = tmp_path / "iotwatch.toml"
    path.write_text(COMMENTED)
    config = add_group(load_config(path), "edge")
    path.write_text("[groups.default.rules.Nope]\nmax = 1\n")
    write_config(config)
    assert load_config(path).groups == config.groups
    assert path.with_name("iotwatch.toml.bak").read_text().startswith("[groups.default.rules.Nope]")


def test_the_hub_id_survives_edits_in_place_and_whole_writes(tmp_path: Path) -> None:
    path = tmp_path / "iotwatch.toml"
    path.write_text(f'[engine]\nhub = "{HUB}"\nlateness = "PT1M"\n')
    config = load_config(path)
    later = replace(config, lateness=config.lateness * 5)
    write_config(later)  # in place
    assert load_config(path).hub == HUB
    other = tmp_path / "copy.toml"
    write_config(later, other)  # a new file is written whole
    assert load_config(other).hub == HUB
    assert load_config(other).lateness == later.lateness
