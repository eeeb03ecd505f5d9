"""The export dialog: a file name, a format, "replace", and the filters of the view it was opened
from (editable), then ``engine.export.export`` in a thread worker with progress and Cancel.

The app starts the worker (so its one worker handler reports the outcome) through the ``start``
callable the dialog is given; the dialog shows progress and, after a failure, the reason inline.
What a view filters by that an export cannot (an alert's state, severity or rule, free text) is
listed in the dialog, not silently dropped.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker

from engine.export import ExportCancelled, ExportError, ExportFilter, ExportResult, export
from engine.timestamps import parse_time
from tui.panes import TextFilter
from tui.panes.alerts import STATES, AlertsPane
from tui.panes.dashboard import Dashboard
from tui.panes.devices import DevicesPane
from tui.safe import plain, safe
from tui.screens.dialogs import DIALOG_CSS, Dialog

SUFFIXES = {"sqlite": ".sqlite", "csv": ".csv", "jsonl": ".jsonl", "securityalert": ".json"}
FORMAT_LABELS: tuple[tuple[str, str], ...] = (
    ("SQLite database (everything)", "sqlite"),
    ("CSV (alerts only)", "csv"),
    ("JSON lines (alerts only)", "jsonl"),
    ("SecurityAlert JSON lines (alerts only)", "securityalert"),
)
TIME_EXAMPLE = "2026-11-28T10:00:00Z"
_SPLIT = re.compile(r"[\s,]+")


def default_name(fmt: str = "sqlite", now: float | None = None) -> str:
    """``iotwatch-export-YYYYMMDD-HHMMSS.<suffix>`` (local time), in the current folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"iotwatch-export-{stamp}{SUFFIXES[fmt]}"


def with_suffix_of(name: str, fmt: str) -> str:
    """``name`` with its format suffix (if it has one of :data:`SUFFIXES`) replaced by ``fmt``'s."""
    for suffix in SUFFIXES.values():
        if name.endswith(suffix):
            return name[: -len(suffix)] + SUFFIXES[fmt]
    return name


def split_terms(text: str) -> tuple[str, ...]:
    """The words of a devices or groups field (separated by spaces or commas)."""
    return tuple(w for w in _SPLIT.split(text.strip()) if w)


def device_pattern(name: str) -> str:
    """An export pattern for the device ``name``: itself, with every character that cannot stand
    in the devices field (a space, a comma, a control character) as the glob ``?``."""
    return "".join("?" if ch.isspace() or ch == "," or plain(ch) != ch else ch for ch in name)


@dataclass(frozen=True)
class ViewFilter:
    """The filters a view hands to the export dialog, and what it filters by that an export
    cannot (``left_out``, one short phrase each)."""

    origin: str = ""
    devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    left_out: tuple[str, ...] = field(default=())


def from_text(
    text: str, groups: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Map a pane's text filter (``TextFilter`` syntax) onto export devices and groups.

    ``d:`` terms become device globs (a glob as it is, a substring ``x`` as ``*x*``, now
    case-sensitive); ``g:`` terms select the configured ``groups`` they match (every ``g:`` term
    must match, as in the view). ``r:``, ``v:`` and bare terms are not export filters: they are
    returned in the third item."""
    devices: list[str] = []
    group_terms: list[tuple[str, bool]] = []
    left_out: list[str] = []
    for word in text.split():
        name, sep, rest = word.partition(":")
        key = TextFilter.FIELDS.get(name.lower()) if sep and rest else None
        glob = any(ch in rest for ch in "*?[")
        if key == "device":
            devices.append(rest if glob else f"*{rest}*")
        elif key == "group":
            group_terms.append((rest if glob else rest.lower(), glob))
        else:
            left_out.append(f"text {word!r}")
    if len(devices) > 1:
        left_out.append("several d: terms (the export keeps devices matching any of them)")
    chosen: tuple[str, ...] = ()
    if group_terms:
        known = sorted(set(groups))
        matched = [
            g
            for g in known
            if all(fnmatch.fnmatchcase(g, w) if glob else w in g.lower() for w, glob in group_terms)
        ]
        # No configured group matches: keep the term, so the export is as empty as the view.
        chosen = tuple(matched) if matched else (group_terms[0][0],)
    return tuple(devices), chosen, left_out


def view_filter(origin: str, pane: Any, groups: Iterable[str]) -> ViewFilter:
    """The export filters of ``pane`` (the visible tab, titled ``origin``): the alerts' text
    filter, the dashboard's ``d:``/``g:`` terms, the selected device; nothing elsewhere."""
    left_out: list[str] = []
    devices: tuple[str, ...] = ()
    chosen: tuple[str, ...] = ()
    if isinstance(pane, AlertsPane):
        flt = pane.filter
        if flt.state != "all":
            label = dict((v, k) for k, v in STATES).get(flt.state, flt.state)
            left_out.append(f"state {label!r}")
        if flt.severity:
            left_out.append(f"severity {flt.severity}")
        if flt.rule:
            left_out.append(f"rule {flt.rule}")
        devices, chosen, more = from_text(flt.text.text, groups)
        left_out += more
    elif isinstance(pane, Dashboard):
        devices, chosen, more = from_text(pane.filter.text, groups)
        left_out += more
        if pane.only_out:
            left_out.append("! (out of range only)")
    elif isinstance(pane, DevicesPane):
        device = pane.selected()
        if device is not None:
            devices = (device_pattern(device.name),)
        else:
            devices, chosen, more = from_text(pane.filter.text, groups)
            left_out += more
    return ViewFilter(origin, devices, chosen, left_out=tuple(left_out))


@dataclass(frozen=True)
class ExportRequest:
    """One export the dialog asks for; ``run`` does it (blocking: call it from a thread)."""

    src: str
    out: Path
    fmt: str
    flt: ExportFilter
    force: bool
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    hub: str | None = None  # the configuration's ``[engine] hub``: securityalert's ResourceId

    def run(self, progress: Callable[[str, int, int], None] | None = None) -> ExportResult:
        return export(
            self.src,
            self.out,
            fmt=self.fmt,
            flt=self.flt,
            force=self.force,
            hub=self.hub,
            progress=progress,
            cancel=self.cancel,
        )


def export_message(error: BaseException) -> str:
    """An export error for the console (the engine's messages speak of ``--force``)."""
    return str(error).replace("use --force to replace it", "tick “Replace” to replace it")


def done_message(result: ExportResult) -> str:
    """``Exported 1,200 events, 3 alerts, 2 devices to FILE``."""
    keys = ("events", "alerts", "devices")
    parts = [f"{result.rows[k]:,} {k}" for k in keys if k in result.rows]
    return f"Exported {', '.join(parts)} to {result.out}"


class ExportProgress(Message):
    """Progress of the running export (posted from the worker thread). Coalesces."""

    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage, self.done, self.total = stage, done, total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExportProgress)


StartExport = Callable[[ExportRequest, "ExportDialog"], Worker[ExportResult]]


class ExportDialog(Dialog):
    """File, format, replace, filters; Export runs it with a progress bar, Cancel stops it.
    Dismissed with the :class:`ExportResult` (None when cancelled)."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ExportDialog")
        + """
    ExportDialog > Vertical { width: 96; overflow-y: auto; }
    ExportDialog .row { height: auto; }
    ExportDialog .row Label { width: 8; padding: 1 1 0 0; }
    ExportDialog .row Input { width: 1fr; }
    ExportDialog #export-format { width: 1fr; }
    ExportDialog #export-force { width: auto; }
    ExportDialog .msg { height: auto; display: none; padding-left: 8; }
    ExportDialog .msg.shown { display: block; }
    ExportDialog .warn { color: $warning; }
    ExportDialog #export-running { height: auto; display: none; margin-top: 1; }
    ExportDialog.running #export-running { display: block; }
    ExportDialog #export-stage { width: 24; color: $text-muted; }
    """
    )

    def __init__(
        self, src: str, view: ViewFilter, start: StartExport, known_groups: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self.src = src
        self.view = view
        self.start = start
        self.known_groups = sorted(set(known_groups))
        self.worker: Worker[ExportResult] | None = None
        self.request: ExportRequest | None = None

    def compose(self) -> ComposeResult:
        v = self.view
        with Vertical():
            title = Text("Export the database", style="bold")
            origin = f"filters from the {v.origin} tab" if v.origin else "no filters from this tab"
            title.append(f"  ·  {origin}; edit them, empty: everything", style="dim")
            yield Static(title, classes="title")
            with Horizontal(classes="row"):
                yield Label("File")
                yield Input(default_name(), id="export-file")
            yield Static("", id="export-folder", classes="msg shown hint", markup=False)
            yield Static("", id="export-file-error", classes="msg error", markup=False)
            with Horizontal(classes="row"):
                yield Label("Format")
                yield Select(
                    list(FORMAT_LABELS), value="sqlite", allow_blank=False, id="export-format"
                )
                yield Checkbox(
                    "Replace", id="export-force", tooltip="replace the file if it exists"
                )
            with Horizontal(classes="row"):
                yield Label("Devices")
                yield Input(
                    " ".join(v.devices),
                    placeholder="ids or globs (lab-*), any of them",
                    id="export-devices",
                )
            with Horizontal(classes="row"):
                yield Label("Groups")
                yield Input(
                    " ".join(v.groups), placeholder="group keys, any of them", id="export-groups"
                )
            yield Static("", id="export-groups-note", classes="msg warn", markup=False)
            with Horizontal(classes="row"):
                yield Label("Since")
                yield Input(placeholder="RFC 3339, inclusive", id="export-since")
                yield Label("Until")
                yield Input(placeholder="RFC 3339, exclusive", id="export-until")
            yield Static("", id="export-time-error", classes="msg error")
            if v.left_out:
                note = Text("Not export filters, so not applied: ", style="bold")
                note.append_text(safe("; ".join(v.left_out), 400))
                yield Static(note, id="export-left-out", classes="hint")
            with Horizontal(id="export-running"):
                yield Static("starting", id="export-stage", markup=False)
                yield ProgressBar(total=1, show_eta=False, id="export-progress")
            yield Static("", id="export-error", classes="msg error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Export", variant="primary", id="ok")

    def on_mount(self) -> None:
        self._check_file()
        self._check_groups()
        self.query_one("#export-file", Input).focus()

    # -- inline validation ----------------------------------------------------------------------

    def _say(self, widget_id: str, text: str | Text) -> None:
        box = self.query_one(widget_id, Static)
        box.update(text)
        box.set_class(bool(text), "shown")

    def _times(self) -> tuple[int | None, int | None, str]:
        """Since, until and the problem with them ("" when none)."""
        times: list[int | None] = []
        for which in ("since", "until"):
            text = self.query_one(f"#export-{which}", Input).value.strip()
            try:
                times.append(parse_time(text) if text else None)
            except ValueError:
                return None, None, f"{which}: not an RFC 3339 time (e.g. {TIME_EXAMPLE})"
        since, until = times
        if since is not None and until is not None and since >= until:
            return since, until, "since must be earlier than until"
        return since, until, ""

    def _check_times(self) -> bool:
        problem = self._times()[2]
        self._say("#export-time-error", problem)
        return not problem

    def _check_file(self) -> bool:
        name = self.query_one("#export-file", Input).value.strip()
        problem = "" if name and name != "-" else "A file name is needed."
        folder = (Path.cwd() / Path(name).expanduser()).parent if name else Path.cwd()
        self.query_one("#export-folder", Static).update(plain(f"in {folder}", 200))
        self._say("#export-file-error", problem)
        return not problem

    def _check_groups(self) -> None:
        """A group nobody configured is allowed (an older database may have it): a warning."""
        groups = split_terms(self.query_one("#export-groups", Input).value)
        unknown = [g for g in groups if g.lower() not in self.known_groups]
        note = ""
        if unknown and self.known_groups:
            note = (
                f"Not a configured group: {', '.join(unknown)} "
                f"(configured: {', '.join(self.known_groups)})"
            )
        self._say("#export-groups-note", plain(note, 300))

    @on(Input.Changed, "#export-since, #export-until")
    def _times_changed(self) -> None:
        self._check_times()

    @on(Input.Changed, "#export-file")
    def _file_changed(self) -> None:
        self._check_file()

    @on(Input.Changed, "#export-groups")
    def _groups_changed(self) -> None:
        self._check_groups()

    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            box = self.query_one("#export-file", Input)
            box.value = with_suffix_of(box.value, event.value)

    # -- running ------------------------------------------------------------------------------

    def build_request(self) -> ExportRequest | None:
        """The request the fields describe, or None (with the reasons shown inline)."""
        ok = self._check_file() & self._check_times()
        if not ok:
            return None
        since, until, _ = self._times()
        fmt = self.query_one("#export-format", Select).value
        assert isinstance(fmt, str)
        flt = ExportFilter(
            since=since,
            until=until,
            devices=split_terms(self.query_one("#export-devices", Input).value),
            groups=split_terms(self.query_one("#export-groups", Input).value),
        )
        return ExportRequest(
            self.src,
            Path(self.query_one("#export-file", Input).value.strip()).expanduser(),
            fmt,
            flt,
            self.query_one("#export-force", Checkbox).value,
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _export(self) -> None:
        if self.worker is not None:
            return
        request = self.build_request()
        if request is None:
            return
        self.request = request
        self._say("#export-error", "")
        self._set_running(True)
        self.worker = self.start(request, self)

    def _set_running(self, running: bool) -> None:
        self.set_class(running, "running")
        for widget in self.query("Input, Select, Checkbox, #ok"):
            widget.disabled = running
        if running:
            self.query_one("#export-stage", Static).update("starting")
            self.query_one("#export-progress", ProgressBar).update(total=1, progress=0)
            self.query_one("#cancel", Button).focus()

    def post_progress(self, stage: str, done: int, total: int) -> None:
        """The export's progress callback (worker thread): hand it to the dialog."""
        self.post_message(ExportProgress(stage, done, total))

    @on(ExportProgress)
    def _progress(self, message: ExportProgress) -> None:
        total = max(message.total, 1)
        percent = 100 * message.done // total
        self.query_one("#export-stage", Static).update(f"{message.stage} {percent}%")
        self.query_one("#export-progress", ProgressBar).update(total=total, progress=message.done)

    def finished(self, result: ExportResult | None, error: BaseException | None) -> None:
        """The app's worker handler: the export ended (``error`` None on success)."""
        self.worker = None
        if error is None or isinstance(error, ExportCancelled):
            self.dismiss(result)
            return
        self._set_running(False)
        text = export_message(error) if isinstance(error, ExportError) else repr(error)
        self._say("#export-error", plain(text, 400))
        self.query_one("#export-file", Input).focus()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        """Not running: close. Running: ask the export to stop; the dialog closes when it has."""
        if self.worker is None or self.request is None:
            self.dismiss(None)
            return
        self.request.cancel.set()
        self.query_one("#export-stage", Static).update("cancelling…")
