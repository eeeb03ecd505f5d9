"""The rules editor: per security group, the 16 range rules with enabled, min, max and window.

Values are checked as the configuration file checks them (``engine.config``'s check helpers, via
``engine.config_edit.set_range_rule``), and a refused value shows the file's message, e.g.
``groups.default.rules.MqttD2CMessagesNotInAllowedRange.min: min 10 is above max 5``. An applied
change reaches the running engine at once and takes effect from the rule's next window (the
engine's ``apply_config``); the TOML file is rewritten when there is one.

Azure ``deviceSecurityGroups`` JSON: ``m`` imports a file (its groups replace the same-named
groups, ``engine.azure_groups.merge_groups``, then apply; after a confirmation when that changes
an existing group), ``x`` exports every group of the configuration (``dump_azure_groups``, as
``iotwatch groups export`` writes it; replacing an existing file after a confirmation). File names are
relative to the console's working folder; ``~`` is expanded.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Select

from engine.azure_groups import dump_azure_groups, load_azure_groups, merge_groups
from engine.catalogue import RANGE_RULES
from engine.config import (
    DEFAULT_GROUP,
    DEFAULT_WINDOW,
    Config,
    ConfigError,
    RangeRule,
    key_path,
)
from engine.config_edit import add_group, rename_group, set_range_rule
from engine.timestamps import format_duration
from tui.bridge import Bridge
from tui.safe import plain, safe
from tui.screens.dialogs import ConfirmDialog
from tui.widgets import Outcome, TextPrompt, apply_edit, error_text, group_name, group_options
from tui.widgets.kv_editor import RowTable

EXPORT_NAME = "device-security-groups.json"
_INT = re.compile(r"[+-]?\d+")


def parse_threshold(text: str) -> object:
    """A threshold as typed: an int when it is one, else a value whose kind the check names."""
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t)
    try:
        return float(t)
    except ValueError:
        return t


def form_values(
    enabled: bool, low: str, high: str, window: str
) -> tuple[bool, object, object, object]:
    """The (enabled, min, max, window) of the form: blank ``min`` is 0, blank ``window``
    PT15M, blank ``max`` is missing when enabled (the file's message) and ``min`` when not."""
    lo = parse_threshold(low) if low.strip() else 0
    if high.strip():
        hi: object = parse_threshold(high)
    else:
        hi = None if enabled else lo
    win = window.strip() or format_duration(DEFAULT_WINDOW)
    return enabled, lo, hi, win


def edit_range_rule(
    group: str, rule: str, enabled: bool, low: str, high: str, window: str
) -> Callable[[Config], Config]:
    """The edit that sets ``rule`` of ``group`` from the form's text."""

    def edit(config: Config) -> Config:
        on_, lo, hi, win = form_values(enabled, low, high, window)
        if hi is None:
            raise ConfigError(
                config.path or "(console)",
                key_path("groups", config.group(group).name, "rules", rule, "max"),
                "missing: an enabled range rule needs a max",
            )
        return set_range_rule(config, group, rule, enabled=on_, min=lo, max=hi, window=win)

    return edit


class RulesPane(Widget):
    """Edits the range rules of each security group; imports and exports Azure JSON."""

    DEFAULT_CSS = """
    RulesPane {
        height: 1fr;
        layout: vertical;
        padding: 0 1;
    }
    RulesPane > #rl-bar {
        height: auto;
    }
    RulesPane > #rl-bar > Label {
        padding: 1 1 0 1;
        width: auto;
    }
    RulesPane #rl-group {
        width: 32;
    }
    RulesPane #rl-hint {
        width: 1fr;
        padding: 1 1 0 2;
        color: $text-muted;
    }
    RulesPane > #rl-table {
        height: 1fr;
    }
    RulesPane > #rl-title {
        height: 1;
        padding: 0 1;
        margin-top: 1;
        text-style: bold;
    }
    RulesPane > #rl-form {
        height: auto;
    }
    RulesPane > #rl-form > Label {
        padding: 1 0 0 1;
        width: auto;
    }
    RulesPane #rl-min, RulesPane #rl-max {
        width: 16;
    }
    RulesPane #rl-window {
        width: 14;
    }
    RulesPane #rl-apply {
        margin-left: 1;
    }
    RulesPane > #rl-reason {
        height: auto;
        padding: 0 1;
        color: $text-error;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "edit", "Edit", key_display="e/⏎", id="rules.edit"),
        Binding("space", "toggle", "On/off", id="rules.toggle"),
        Binding("ctrl+s", "apply", "Apply", id="rules.apply"),
        Binding("escape", "cancel", "Cancel", show=False, id="rules.cancel"),
        Binding("n", "new_group", "New group", id="rules.new_group"),
        Binding("r", "rename_group", "Rename group", id="rules.rename_group"),
        Binding("m", "import_azure", "Import Azure", id="rules.import_azure"),
        Binding("x", "export_azure", "Export Azure", id="rules.export_azure"),
    ]

    def __init__(
        self,
        bridge: Bridge,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.bridge = bridge
        self.group = DEFAULT_GROUP  # key (lower case) of the group shown
        self.rule = RANGE_RULES[0].name  # the rule in the form
        self.last_outcome: Outcome | None = None
        self._group_keys: list[tuple[str, str]] = []  # (key, name) shown

    # -- composition ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="rl-bar"):
            yield Label("Group")
            yield Select(self._group_options(), value=self.group, allow_blank=False, id="rl-group")
            yield Label(
                "changes apply from each rule's next window · a rule without a table is off",
                id="rl-hint",
            )
        yield RowTable(id="rl-table", zebra_stripes=True)  # Home/End: first/last rule
        yield Label("", id="rl-title")
        with Horizontal(id="rl-form"):
            yield Checkbox("Enabled", id="rl-enabled")
            yield Label("Min")
            yield Input(id="rl-min", placeholder="0", type="text")
            yield Label("Max")
            yield Input(id="rl-max", placeholder="required", type="text")
            yield Label("Window")
            yield Input(id="rl-window", placeholder="PT15M")
            yield Button("Apply", id="rl-apply", variant="primary")
        yield Label("", id="rl-reason", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#rl-table", DataTable)
        for key, label in (
            ("rule", "Rule"),
            ("on", "On"),
            ("min", "Min"),
            ("max", "Max"),
            ("window", "Window"),
            ("severity", "Severity"),
            ("source", "Source"),
        ):
            table.add_column(label, key=key)
        for rt in RANGE_RULES:
            table.add_row(*self._cells(rt.name), key=rt.name)
        self.refresh_from_config()
        self._load_form(self.rule)

    def on_show(self) -> None:
        self.refresh_from_config()

    @property
    def config(self) -> Config:
        return self.bridge.config

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#rl-table", DataTable)

    def _group_options(self) -> list[tuple[Text, str]]:
        return group_options(self.config, self.group)

    def _group_name(self) -> str:
        return group_name(self.config, self.group)

    def _rule(self, name: str) -> RangeRule | None:
        return self.config.group(self.group).range_rules.get(name)

    def _cells(self, name: str) -> list[Text]:
        rr = self._rule(name)
        source = next(rt.source for rt in RANGE_RULES if rt.name == name)
        if rr is None:
            return [
                Text(name),
                Text("·", style="dim"),
                Text("—", style="dim"),
                Text("—", style="dim"),
                Text("—", style="dim"),
                Text("", style="dim"),
                Text(source, style="dim"),
            ]
        on_style = "bold green" if rr.enabled else "dim"
        return [
            Text(name, style="" if rr.enabled else "dim"),
            Text("on" if rr.enabled else "off", style=on_style),
            Text(f"{rr.min:,}", justify="right"),
            Text(f"{rr.max:,}", justify="right"),
            Text(format_duration(rr.window)),
            Text(rr.severity),
            Text(source, style="dim"),
        ]

    def refresh_from_config(self) -> None:
        """Show the rules of the configuration in force (``bridge.config``)."""
        if not self.is_mounted:
            return
        options = self._group_options()
        keys = [(k, t.plain) for t, k in options]
        if keys != self._group_keys:
            self._group_keys = keys
            select = self.query_one("#rl-group", Select)
            with self.prevent(Select.Changed):
                select.set_options(options)
                select.value = self.group
        table = self.table
        for rt in RANGE_RULES:
            for column, cell in zip(
                ("rule", "on", "min", "max", "window", "severity", "source"),
                self._cells(rt.name),
                strict=True,
            ):
                table.update_cell(rt.name, column, cell)

    # -- the form ---------------------------------------------------------------------------------

    def _load_form(self, name: str) -> None:
        """Put rule ``name`` of the group shown into the form."""
        self.rule = name
        rr = self._rule(name) or RangeRule(name, False, 0, 0, DEFAULT_WINDOW)
        blank = self._rule(name) is None
        with self.prevent(Input.Changed, Checkbox.Changed):
            self.query_one("#rl-enabled", Checkbox).value = rr.enabled
            self.query_one("#rl-min", Input).value = str(rr.min)
            self.query_one("#rl-max", Input).value = str(rr.max)
            self.query_one("#rl-window", Input).value = format_duration(rr.window)
        state = "no table: off" if blank else ("on" if rr.enabled else "off")
        self.query_one("#rl-title", Label).update(
            Text.assemble(
                "Edit ",
                (name, "bold"),
                " in ",
                safe(self._group_name(), 60, "bold"),
                (f"  ({state})", "dim"),
            )
        )
        self._show_reason(None)

    def _form_edit(self) -> Callable[[Config], Config]:
        return edit_range_rule(
            self._group_name(),
            self.rule,
            self.query_one("#rl-enabled", Checkbox).value,
            self.query_one("#rl-min", Input).value,
            self.query_one("#rl-max", Input).value,
            self.query_one("#rl-window", Input).value,
        )

    def form_error(self) -> ConfigError | None:
        """Why the form's values would be refused, or None."""
        try:
            self._form_edit()(self.config)
        except ConfigError as exc:
            return exc
        return None

    def _show_reason(self, error: ConfigError | None) -> None:
        self.query_one("#rl-reason", Label).update(Text(error_text(error) if error else ""))

    @property
    def reason(self) -> str:
        """The message shown under the form (empty when the form is valid)."""
        return str(self.query_one("#rl-reason", Label).content)

    @on(Input.Changed, "#rl-form Input")
    @on(Checkbox.Changed, "#rl-enabled")
    def _form_changed(self) -> None:
        self._show_reason(self.form_error())

    @on(Input.Submitted, "#rl-form Input")
    @on(Button.Pressed, "#rl-apply")
    def action_apply(self) -> None:
        error = self.form_error()
        self._show_reason(error)
        if error is not None:
            self.app.bell()
            return
        self._apply(
            self._form_edit(),
            done=f"{self.rule} in {self._group_name()}: applied from its next window",
        )

    @on(DataTable.RowHighlighted, "#rl-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            self._load_form(str(event.row_key.value))

    @on(DataTable.RowSelected, "#rl-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_edit()

    def action_edit(self) -> None:
        row = self.table.cursor_row
        self._load_form(RANGE_RULES[row].name)
        self.query_one("#rl-max", Input).focus()

    def action_cancel(self) -> None:
        self._load_form(self.rule)
        self.table.focus()

    def action_toggle(self) -> None:
        """Turn the highlighted rule on or off (a rule without a table needs a max first)."""
        name = RANGE_RULES[self.table.cursor_row].name
        rr = self._rule(name)
        group = self._group_name()
        if rr is None:
            self._load_form(name)
            self.query_one("#rl-enabled", Checkbox).value = True
            self.query_one("#rl-max", Input).focus()
            self.notify("Set the max, then enter applies it", title=name, markup=False)
            return
        enabled = not rr.enabled
        self._apply(
            lambda c: set_range_rule(c, group, name, enabled=enabled),
            done=f"{name} {'on' if enabled else 'off'} in {group} from its next window",
        )

    @on(Select.Changed, "#rl-group")
    def _group_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.group:
            self.show_group(event.value)

    def show_group(self, group: str) -> None:
        """Show the rules of ``group`` (case-insensitive)."""
        self.group = group.lower()
        if not self.is_mounted:
            return
        self._group_keys = []
        self.refresh_from_config()
        self._load_form(self.rule)

    # -- groups -----------------------------------------------------------------------------------

    def action_new_group(self) -> None:
        def check(name: str) -> str | None:
            try:
                add_group(self.config, name)
            except ConfigError as exc:
                return exc.reason
            return None

        def created(name: str | None) -> None:
            if name:
                self._apply(lambda c: add_group(c, name), done=f"group {name} created", show=name)

        self.app.push_screen(TextPrompt("New security group", check=check, ok="Create"), created)

    def action_rename_group(self) -> None:
        old = self._group_name()

        def check(name: str) -> str | None:
            try:
                rename_group(self.config, old, name)
            except ConfigError as exc:
                return exc.reason
            return None

        def renamed(name: str | None) -> None:
            if name and name != old:
                self._apply(
                    lambda c: rename_group(c, old, name),
                    done=f"group {old} renamed {name}",
                    show=name,
                )

        self.app.push_screen(
            TextPrompt(f"Rename group {plain(old, 60)}", value=old, check=check, ok="Rename"),
            renamed,
        )

    # -- Azure JSON -------------------------------------------------------------------------------

    def action_export_azure(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.export_azure(path)

        self.app.push_screen(
            TextPrompt(
                "Export every group as Azure deviceSecurityGroups JSON to",
                value=EXPORT_NAME,
                ok="Export",
            ),
            chosen,
        )

    def action_import_azure(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.import_azure(path)

        self.app.push_screen(
            TextPrompt(
                "Import Azure deviceSecurityGroups JSON from (its groups replace same-named ones)",
                placeholder=EXPORT_NAME,
                ok="Import",
            ),
            chosen,
        )

    @work(group="rules-azure", exit_on_error=False)
    async def export_azure(self, path: str) -> str | None:
        """Write every group of the configuration in force to ``path``; the path, or None."""
        target = os.path.expanduser(path)
        if await asyncio.to_thread(os.path.exists, target):
            body = Text.assemble(safe(target, 300, "bold"), " exists: its text is replaced.")
            if not await self.app.push_screen_wait(
                ConfirmDialog("Replace this file?", body, yes="Replace")
            ):
                return None
        data = orjson.dumps(
            dump_azure_groups(self.config.groups.values()), option=orjson.OPT_INDENT_2
        )
        try:
            await asyncio.to_thread(_write_bytes, target, data + b"\n")
        except OSError as exc:
            self.notify(
                plain(f"{target}: {exc.strerror or exc}", 300),
                title="Export failed",
                severity="error",
                markup=False,
            )
            return None
        n = len(self.config.groups)
        self.notify(
            plain(f"{n} group{'s' if n != 1 else ''} written to {target}", 300),
            title="Azure export",
            markup=False,
        )
        return target

    @work(group="rules-azure", exit_on_error=False)
    async def import_azure(self, path: str) -> Outcome | None:
        """Read Azure JSON from ``path`` and merge its groups into the running configuration."""
        source = os.path.expanduser(path)
        try:
            groups = await asyncio.to_thread(load_azure_groups, source)
        except ConfigError as exc:
            self.notify(
                plain(str(exc), 400), title="Import refused", severity="error", markup=False
            )
            return None
        current = self.config
        merged = merge_groups(current, groups)
        replaced = [
            current.groups[key].name
            for key, group in merged.groups.items()
            if key in current.groups and group != current.groups[key]
        ]
        if replaced:  # a destructive edit: the groups' own settings are lost
            body = Text.assemble(
                "The file's groups replace the rules of group",
                "s " if len(replaced) > 1 else " ",
                *_joined([safe(name, 60, "bold") for name in replaced]),
                " as a whole; their current settings are lost (the previous configuration file "
                "is kept as .bak).",
            )
            if not await self.app.push_screen_wait(
                ConfirmDialog("Replace groups from Azure JSON?", body, yes="Replace")
            ):
                return None
        outcome = await self._apply_now(lambda c: merge_groups(c, groups))
        if outcome.ok:
            names = ", ".join(g.name for g in groups) or "none"
            self.notify(
                plain(f"groups {names} imported from {source}", 300),
                title="Azure import",
                markup=False,
            )
        return outcome

    # -- applying ---------------------------------------------------------------------------------

    @work(group="rules-apply", exit_on_error=False)
    async def _apply(
        self, edit: Callable[[Config], Config], *, done: str = "", show: str | None = None
    ) -> Outcome:
        return await self._apply_now(edit, done=done, show=show)

    async def _apply_now(
        self, edit: Callable[[Config], Config], *, done: str = "", show: str | None = None
    ) -> Outcome:
        outcome = await apply_edit(self.bridge, edit)
        self.last_outcome = outcome
        if outcome.error is not None:
            self._show_reason(outcome.error)
            self.notify(
                plain(error_text(outcome.error), 400),
                title="Not applied",
                severity="error",
                markup=False,
            )
            return outcome
        if outcome.failure is not None:
            self.notify(
                plain(outcome.failure, 400),
                title="The engine refused it",
                severity="error",
                markup=False,
            )
            return outcome
        if show is not None:
            self.show_group(show)
        else:
            self.refresh_from_config()
            self._load_form(self.rule)
        if done:
            self.notify(plain(done, 300), title="Rules", markup=False)
        if outcome.save_error is not None:
            self.notify(
                plain(f"applied, but not saved: {outcome.save_error}", 400),
                title="Configuration",
                severity="warning",
                markup=False,
            )
        return outcome


def _joined(parts: list[Text]) -> list[Text | str]:
    """``parts`` separated by commas."""
    out: list[Text | str] = []
    for i, part in enumerate(parts):
        if i:
            out.append(", ")
        out.append(part)
    return out


def _write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
