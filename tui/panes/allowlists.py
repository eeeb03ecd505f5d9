"""The allow-list editors: per security group, the four lists of the allow-list rules.

Outbound IPs (``ConnectionToIpNotAllowed``), inbound IPs (``ConnectionFromIpNotAllowed``), users
(``LocalUserNotAllowed``) and processes (``ProcessNotAllowed``). Entries are checked as the
configuration file checks them (``engine.allowlist.validate_entry``), with the reason shown next to
the input; an accepted change goes to the running engine at once (from the next event) and to the
TOML file when there is one (see ``tui.widgets.apply_edit``).

From an allow-list alert, :meth:`AllowlistsPane.add_value` adds the offending value after a
:class:`ConfirmAddValue` dialog; ``d`` removes an entry after a ``ConfirmDialog``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Label, Select, Static

from engine.allowlist import IP_RULES
from engine.config import DEFAULT_GROUP, Config
from engine.config_edit import (
    add_allow_value,
    add_group,
    allow_values,
    entry_reason,
    normalize_value,
    remove_allow_value,
    replace_allow_value,
    rule_type,
    set_allow_enabled,
)
from tui.bridge import Bridge
from tui.safe import plain, safe
from tui.screens.dialogs import ConfirmDialog
from tui.widgets import (
    ListEditor,
    Outcome,
    TextPrompt,
    apply_edit,
    error_text,
    group_name,
    group_options,
)

LISTS: tuple[tuple[str, str], ...] = (
    ("ConnectionToIpNotAllowed", "Outbound IPs"),
    ("ConnectionFromIpNotAllowed", "Inbound IPs"),
    ("LocalUserNotAllowed", "Users"),
    ("ProcessNotAllowed", "Processes"),
)
LIST_LABEL = dict(LISTS)
HINTS = {
    "ConnectionToIpNotAllowed": "CIDRs (10.0.0.0/8, 2001:db8::/32); a bare address is one host",
    "ConnectionFromIpNotAllowed": "CIDRs (10.0.0.0/8, 2001:db8::/32); a bare address is one host",
    "LocalUserNotAllowed": "user names, exact and case-sensitive",
    "ProcessNotAllowed": "an entry with / or \\ must equal the whole executable; "
    "one without matches the base name",
}
PLACEHOLDERS = {
    "ConnectionToIpNotAllowed": "CIDR or address, e.g. 10.0.0.0/8",
    "ConnectionFromIpNotAllowed": "CIDR or address, e.g. 10.0.0.0/8",
    "LocalUserNotAllowed": "user name",
    "ProcessNotAllowed": "executable (full path) or base name",
}


def _rule_name(rule: str | int) -> str:
    rt = rule_type(rule)
    if rt.is_range:
        raise ValueError(f"{rt.name} is not an allow-list rule")
    return rt.name


def describe_entry(rule: str, entry: str) -> str:
    """What an entry matches, for the table's last column."""
    if rule_type(rule).id in IP_RULES:
        try:
            net = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            return ""
        mapped = isinstance(net, ipaddress.IPv6Network) and net.subnet_of(
            ipaddress.IPv6Network("::ffff:0:0/96")
        )
        version = "IPv4" if net.version == 4 or mapped else "IPv6"
        if net.num_addresses == 1:
            return f"one {version} host"
        bits = net.max_prefixlen - net.prefixlen
        count = f"{net.num_addresses:,}" if bits <= 32 else f"2^{bits}"
        return f"{version} network, {count} addresses"
    if rule == "ProcessNotAllowed":
        return "the full path" if "/" in entry or "\\" in entry else "any path with this base name"
    return "this user"


class ConfirmAddValue(ModalScreen[str | None]):
    """Confirms adding a value seen in an alert to a group's allow-list.

    Dismisses with the entry to add (for the IP rules the bare address: spaces, zone index and
    IPv4 mapping dropped), or None when cancelled. A value that cannot be an entry is shown with
    the reason and cannot be confirmed. Keys: ``y``/``enter`` add, ``n``/``escape`` cancel.
    """

    DEFAULT_CSS = """
    ConfirmAddValue {
        align: center middle;
    }
    ConfirmAddValue > Vertical {
        width: 76;
        max-width: 100%;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    ConfirmAddValue #confirm-title {
        text-style: bold;
        margin-bottom: 1;
    }
    ConfirmAddValue #confirm-value {
        background: $boost;
        padding: 0 1;
        margin-bottom: 1;
    }
    ConfirmAddValue #confirm-reason {
        color: $text-error;
        height: auto;
    }
    ConfirmAddValue #confirm-buttons {
        height: auto;
        align-horizontal: right;
        margin-top: 1;
    }
    ConfirmAddValue Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "confirm", "Add", id="confirm_add.yes"),
        Binding("n,escape", "cancel", "Cancel", id="confirm_add.no"),
    ]

    def __init__(
        self, group: str, rule: str | int, value: str, existing: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.group = group
        self.rule = _rule_name(rule)
        self.value = value
        self.entry = normalize_value(self.rule, value)
        self.reason = entry_reason(self.rule, self.entry, existing)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                Text.assemble(
                    "Allow this value in group ",
                    safe(self.group, 80, "bold"),
                    f", {LIST_LABEL[self.rule]} ({self.rule})?",
                ),
                id="confirm-title",
            )
            yield Static(safe(self.entry, 400), id="confirm-value")
            if self.entry != self.value:
                yield Label(
                    Text.assemble("as the alert wrote it: ", safe(self.value, 300)),
                    id="confirm-original",
                )
            yield Label(safe(self.reason or "", 400), id="confirm-reason")
            with Horizontal(id="confirm-buttons"):
                yield Button(
                    "Add", id="confirm-yes", variant="warning", disabled=self.reason is not None
                )
                yield Button("Cancel", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no" if self.reason else "#confirm-yes", Button).focus()

    @on(Button.Pressed, "#confirm-yes")
    def action_confirm(self) -> None:
        if self.reason is None:
            self.dismiss(self.entry)
        else:
            self.app.bell()

    @on(Button.Pressed, "#confirm-no")
    def action_cancel(self) -> None:
        self.dismiss(None)


class AllowlistsPane(Widget):
    """Edits the four allow-lists of each security group of the running configuration."""

    DEFAULT_CSS = """
    AllowlistsPane {
        height: 1fr;
        layout: vertical;
        padding: 0 1;
    }
    AllowlistsPane > #al-bar {
        height: auto;
    }
    AllowlistsPane > #al-bar > Label {
        padding: 1 1 0 1;
        width: auto;
    }
    AllowlistsPane #al-group {
        width: 32;
    }
    AllowlistsPane #al-list {
        width: 24;
    }
    AllowlistsPane > #al-status {
        height: auto;
        padding: 0 1;
        margin-bottom: 1;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "toggle_rule", "Rule on/off", id="allowlists.toggle"),
        Binding("n", "new_group", "New group", id="allowlists.new_group"),
        Binding(
            "right_square_bracket",
            "cycle_list(1)",
            "Next list",
            key_display="]",
            id="allowlists.next_list",
        ),
        Binding(
            "left_square_bracket",
            "cycle_list(-1)",
            "Previous list",
            key_display="[",
            show=False,
            id="allowlists.prev_list",
        ),
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
        self.rule = LISTS[0][0]
        self.last_outcome: Outcome | None = None
        self._group_keys: list[tuple[str, str]] = []  # (key, name) shown

    # -- composition ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="al-bar"):
            yield Label("Group")
            yield Select(self._group_options(), value=self.group, allow_blank=False, id="al-group")
            yield Label("List")
            yield Select(
                [(Text(label), rule) for rule, label in LISTS],
                value=self.rule,
                allow_blank=False,
                id="al-list",
            )
        yield Static("", id="al-status")
        yield ListEditor(
            self._check,
            describe=self._describe,
            placeholder=PLACEHOLDERS[self.rule],
            id="al-editor",
        )

    def on_mount(self) -> None:
        self.refresh_from_config()

    def on_show(self) -> None:
        # Another pane (rules, import) may have changed the configuration meanwhile.
        self.refresh_from_config()

    @property
    def config(self) -> Config:
        return self.bridge.config

    @property
    def editor(self) -> ListEditor:
        return self.query_one("#al-editor", ListEditor)

    def _group_options(self) -> list[tuple[Text, str]]:
        return group_options(self.config, self.group)

    def _group_name(self) -> str:
        return group_name(self.config, self.group)

    def refresh_from_config(self) -> None:
        """Show the lists of the configuration in force (``bridge.config``)."""
        if not self.is_mounted:
            return
        select = self.query_one("#al-group", Select)
        options = self._group_options()
        keys = [(k, t.plain) for t, k in options]
        if keys != self._group_keys:
            self._group_keys = keys
            with self.prevent(Select.Changed):
                select.set_options(options)
                select.value = self.group
        self.editor.set_values(allow_values(self.config, self.group, self.rule))
        self.editor.input.placeholder = PLACEHOLDERS[self.rule]
        self._show_status()

    def _show_status(self) -> None:
        group = self.config.group(self.group)
        rule = group.allow_rules.get(self.rule)
        if rule is None:
            state = Text("not set: the rule is off; the first entry turns it on", style="bold")
        elif rule.enabled:
            n = len(rule.values)
            state = Text(
                f"on, severity {rule.severity}, {n} entr{'y' if n == 1 else 'ies'}"
                + ("; an empty list allows nothing" if n == 0 else ""),
                style="bold green" if n else "bold yellow",
            )
        else:
            state = Text("off (t turns it on); its entries are kept", style="bold")
        self.query_one("#al-status", Static).update(
            Text.assemble(
                (f"{self.rule}", "bold"),
                " in ",
                safe(group.name, 60, "bold"),
                ": ",
                state,
                "\n",
                HINTS[self.rule],
            )
        )

    def _check(self, value: str, others: Sequence[str]) -> str | None:
        return entry_reason(self.rule, value, others)

    def _describe(self, value: str) -> str:
        return describe_entry(self.rule, value)

    # -- selection --------------------------------------------------------------------------------

    @on(Select.Changed, "#al-group")
    def _group_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.group:
            self.group = event.value
            self.editor.accepted()
            self.refresh_from_config()

    @on(Select.Changed, "#al-list")
    def _list_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.rule:
            self.rule = event.value
            self.editor.accepted()
            self.refresh_from_config()

    def show_list(self, group: str, rule: str | int) -> None:
        """Switch the editor to (``group``, ``rule``); a group without a table is listed too."""
        self.group = group.lower()
        self.rule = _rule_name(rule)
        if not self.is_mounted:
            return
        select = self.query_one("#al-group", Select)
        options = self._group_options()
        self._group_keys = [(k, t.plain) for t, k in options]
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = self.group
            self.query_one("#al-list", Select).value = self.rule
        self.editor.accepted()
        self.refresh_from_config()

    def action_cycle_list(self, step: int) -> None:
        names = [r for r, _ in LISTS]
        self.show_list(self.group, names[(names.index(self.rule) + step) % len(names)])

    # -- edits ------------------------------------------------------------------------------------

    @on(ListEditor.Submitted, "#al-editor")
    def _submitted(self, event: ListEditor.Submitted) -> None:
        group, rule, value, index = self._group_name(), self.rule, event.value, event.index
        if index is None:
            self._apply(lambda c: add_allow_value(c, group, rule, value), highlight=-1)
        else:
            self._apply(lambda c: replace_allow_value(c, group, rule, index, value), index)

    @on(ListEditor.RemoveRequested, "#al-editor")
    def _remove(self, event: ListEditor.RemoveRequested) -> None:
        """Remove an entry after a yes: a removed entry turns allowed traffic into alerts."""
        group, rule, index, value = self._group_name(), self.rule, event.index, event.value

        def remove(config: Config) -> Config:
            # The list may have changed since the key was pressed: remove the same text.
            values = allow_values(config, group, rule)
            at = index if index < len(values) and values[index] == value else values.index(value)
            return remove_allow_value(config, group, rule, at)

        def chosen(yes: bool | None) -> None:
            if yes:
                self._apply(
                    remove,
                    index,
                    clear=False,
                    done=f"{value} removed from {group} ({LIST_LABEL[rule]})",
                )

        body = Text.assemble(
            safe(value, 300, "bold"),
            f"\nfrom {LIST_LABEL[rule]} ({rule}) of group ",
            safe(group, 80, "bold"),
            ".\nFrom the next event on, this value raises alerts again.",
        )
        self.app.push_screen(ConfirmDialog("Remove this allow-list entry?", body), chosen)

    def action_toggle_rule(self) -> None:
        group, rule = self._group_name(), self.rule
        found = self.config.group(group).allow_rules.get(rule)
        on_now = found is not None and found.enabled
        self._apply(lambda c: set_allow_enabled(c, group, rule, not on_now), clear=False)

    def action_new_group(self) -> None:
        def check(name: str) -> str | None:
            try:
                add_group(self.config, name)
            except Exception as exc:  # ConfigError: its reason
                return getattr(exc, "reason", str(exc))
            return None

        def created(name: str | None) -> None:
            if name:
                self._apply(lambda c: add_group(c, name), select_group=name, clear=False)

        self.app.push_screen(TextPrompt("New security group", check=check, ok="Create"), created)

    def add_value(self, group: str, rule: str | int, value: str, confirm: bool = True) -> None:
        """Add ``value`` (as an allow-list alert of ``rule`` in ``group`` wrote it) to the list,
        after a :class:`ConfirmAddValue` dialog unless ``confirm`` is False. UI thread only."""
        rule = _rule_name(rule)
        self.show_list(group, rule)
        name = self._group_name() if group.lower() in self.config.groups else group
        existing = allow_values(self.config, group, rule)

        def chosen(entry: str | None) -> None:
            if entry is not None:
                self._apply(
                    lambda c: add_allow_value(c, name, rule, entry),
                    highlight=-1,
                    done=f"{entry} allowed in {name} ({LIST_LABEL[rule]}) from the next event",
                )

        if confirm:
            self.app.push_screen(ConfirmAddValue(group, rule, value, existing), chosen)
        else:
            chosen(normalize_value(rule, value))

    @work(group="allowlists-apply", exit_on_error=False)
    async def _apply(
        self,
        edit: Callable[[Config], Config],
        highlight: int | None = None,
        *,
        clear: bool = True,
        select_group: str | None = None,
        done: str = "",
    ) -> Outcome:
        outcome = await apply_edit(self.bridge, edit)
        self.last_outcome = outcome
        editor = self.editor
        if outcome.error is not None:
            editor.refused(outcome.error.reason)
            self.notify(
                plain(error_text(outcome.error), 400),
                title="Not applied",
                severity="error",
                markup=False,
            )
        elif outcome.failure is not None:
            self.notify(
                plain(outcome.failure, 400),
                title="The engine did not take it",
                severity="error",
                markup=False,
            )
        else:
            if select_group is not None:
                self.show_list(select_group, self.rule)
            values = allow_values(self.config, self.group, self.rule)
            at = len(values) - 1 if highlight == -1 else highlight
            editor.set_values(values, at)
            if clear:
                editor.accepted()
            self._show_status()
            if done:
                self.notify(plain(done, 300), title="Allow-list", markup=False)
            if outcome.save_error is not None:
                self.notify(
                    plain(f"applied, but not saved: {outcome.save_error}", 400),
                    title="Configuration",
                    severity="warning",
                    markup=False,
                )
        return outcome
