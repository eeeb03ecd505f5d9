"""Exports of a store (SPEC §6): a self-contained SQLite file, or alerts as CSV, JSON lines or
Log Analytics ``SecurityAlert`` JSON lines, filtered by time range, device and group.

The source is opened read-only and everything is read inside ONE read transaction: in WAL mode
(every iotwatch store) that is a snapshot of one commit, so a batch a live session is writing is
either wholly in the export or not at all. WAL readers never block the writer; while the snapshot
lasts, checkpoints cannot pass it and the WAL grows, so the snapshot ends as soon as the rows are
copied and the output's indexes are built after it.

The work is synchronous and needs no event loop: a console calls :func:`export_async` (or
:func:`export` in a worker thread) with an :class:`ExportFilter`, a progress callback (called
from that thread) and a :class:`threading.Event` to cancel. The output is written to a temporary
file next to it and renamed into place at the end, so a failed or cancelled export leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fnmatch
import io
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import orjson

from engine import catalogue as c
from engine import jsonline
from engine.alert import Alert
from engine.files import create_private
from engine.store import SCHEMA_VERSION, schema_statements
from engine.timestamps import US, format_time

FORMATS = ("sqlite", "csv", "jsonl", "securityalert")
LINE_FORMATS = ("csv", "jsonl", "securityalert")
EXPORT_FORMAT_VERSION = 2  # 2: view hub_records_readable, quarantine_readable.part
CHUNK_IDS = 100_000  # events are copied in id ranges of this size, with progress between them
QUARANTINE_SCANS = 16  # up to this many quarantined records: one events scan each, else a sort
BOARD_STREAMS = ("serial", "capture")  # one board each: their console/quarantine follow a device

# The SPEC §5 fields, in record order: the columns of the CSV export.
ALERT_FIELDS = (
    "rule",
    "type",
    "name",
    "severity",
    "source",
    "device",
    "group",
    "start",
    "end",
    "state",
    "window",
    "min",
    "max",
    "counts",
    "value",
    "occurrences",
    "description",
    "remediation",
)
# The columns of Log Analytics' SecurityAlert table, in the order and with the types of Azure
# Monitor's table reference (docs/export.md cites it): every one is written, empty ("", or null
# for the real ConfidenceScore) where iotwatch has no value. The reference also lists
# _BilledSize and _IsBillable, which the workspace computes at ingestion and no record may carry.
SECURITY_ALERT_COLUMNS: dict[str, str] = {
    "AlertLink": "string",
    "AlertName": "string",
    "AlertSeverity": "string",
    "AlertType": "string",
    "CompromisedEntity": "string",
    "ConfidenceLevel": "string",
    "ConfidenceScore": "real",
    "Description": "string",
    "DisplayName": "string",
    "EndTime": "datetime",
    "Entities": "string",
    "ExtendedLinks": "string",
    "ExtendedProperties": "string",
    "IsIncident": "bool",
    "ProcessingEndTime": "datetime",
    "ProductComponentName": "string",
    "ProductName": "string",
    "ProviderName": "string",
    "RemediationSteps": "string",
    "ResourceId": "string",
    "SourceComputerId": "string",
    "StartTime": "datetime",
    "Status": "string",
    "SubTechniques": "string",
    "SystemAlertId": "string",
    "Tactics": "string",
    "Techniques": "string",
    "TimeGenerated": "datetime",
    "Type": "string",
    "VendorName": "string",
    "VendorOriginalId": "string",
    "WorkspaceResourceGroup": "string",
    "WorkspaceSubscriptionId": "string",
}
_ALERT_COLUMNS = (
    "id, rule, device, grp, value, start_us, end_us, state, severity, window_s, min, max, "
    "counts, occurrences, acknowledged_us, closed_by_hand_us, silenced, amended"
)
_ALLOW_IDS = ", ".join(str(r.id) for r in c.ALLOWLIST_RULES)
_MIN_INT = -(2**63)
_MAX_INT = 2**63 - 1
_SYSTEM_ALERT_NS = uuid.UUID("6f1c2a52-3d0e-5b8e-9a57-69f7a1c0e7d1")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: the table being copied and how far (events: in ids)."""


class ExportError(Exception):
    """The export cannot be made: a missing or foreign source, an output that exists or cannot
    be written. The message is one line and names the file."""


class ExportCancelled(ExportError):
    """The caller's cancel event was set; nothing was written."""


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """What to export. Times in µs: ``since`` inclusive, ``until`` exclusive (None: unbounded).
    ``devices``: exact ids or fnmatch globs, case-sensitive (any matches); ``groups``: group
    keys, case-insensitive (any matches). Empty tuples select everything."""

    since: int | None = None
    until: int | None = None
    devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "groups", tuple(dict.fromkeys(g.lower() for g in self.groups)))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ExportError("--since must be earlier than --until")

    @property
    def by_time(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def by_device(self) -> bool:
        return bool(self.devices or self.groups)

    @property
    def any(self) -> bool:
        return self.by_time or self.by_device

    def device_selected(self, name: str, group: str | None) -> bool:
        """Whether device ``name`` of group key ``group`` (None: unknown) passes the filter."""
        if self.devices and not any(
            name == p or fnmatch.fnmatchcase(name, p) for p in self.devices
        ):
            return False
        return not self.groups or (group is not None and group.lower() in self.groups)

    def describe(self) -> dict[str, str]:
        """The filter as ``meta`` rows of the export."""
        return {
            "filter_since": format_time(self.since) if self.since is not None else "",
            "filter_until": format_time(self.until) if self.until is not None else "",
            "filter_devices": orjson.dumps(list(self.devices)).decode(),
            "filter_groups": orjson.dumps(list(self.groups)).decode(),
        }


@dataclass
class ExportResult:
    """What an export wrote: rows per table (line formats: ``alerts``), where, and how long."""

    format: str
    out: str
    rows: dict[str, int]
    seconds: float
    exported_at: str

    def summary(self) -> str:
        """One line for stderr."""
        keys = ("events", "alerts", "devices", "console", "quarantine")
        parts = [f"{self.rows[k]:,} {k}" for k in keys if k in self.rows]
        return f"exported {', '.join(parts)} to {self.out} in {self.seconds:.1f} s"


# -- public entry points ---------------------------------------------------------------------------


def export(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | IO[bytes],
    *,
    fmt: str = "sqlite",
    flt: ExportFilter | None = None,
    force: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    hub: str | None = None,
) -> ExportResult:
    """Export the store ``src`` to ``out`` (a path; a binary stream for the line formats) in
    format ``fmt`` (:data:`FORMATS`). ``hub``: the IoT hub's resource id (``[engine] hub``),
    the ``ResourceId`` of ``securityalert`` rows. Raises :class:`ExportError`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    flt = flt or ExportFilter()
    started = time.monotonic()
    exported_at = format_time(time.time_ns() // 1000 // US * US)
    src_path = Path(src)
    source_version = check_source(src_path)
    stream: IO[bytes] | None = out if hasattr(out, "write") else None  # type: ignore[assignment]
    if stream is not None and fmt not in LINE_FORMATS:
        raise ExportError("a SQLite export needs an output file")
    target = None if stream is not None else Path(out)  # type: ignore[arg-type]
    if target is not None:
        _check_target(target, src_path, force)
    tmp = _temp_path(target) if target is not None else None
    try:
        if fmt == "sqlite":
            assert tmp is not None
            rows = _export_sqlite(src_path, tmp, flt, source_version, exported_at, progress, cancel)
        else:
            if tmp is not None:
                with open(tmp, "wb") as f:
                    rows = _export_lines(src_path, f, fmt, flt, exported_at, progress, cancel, hub)
            else:
                assert stream is not None
                rows = _export_lines(src_path, stream, fmt, flt, exported_at, progress, cancel, hub)
        if target is not None and tmp is not None:
            for suffix in ("-wal", "-shm", "-journal"):
                # A stale sidecar of a replaced database would be applied to the new file.
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            for path in (tmp, Path(f"{tmp}-journal")):
                path.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.OperationalError
        ):  # damaged pages: of the source, the only database read
            raise ExportError(f"{src_path}: cannot read: {exc}") from None
        if isinstance(exc, sqlite3.Error | OSError) and not isinstance(exc, BrokenPipeError):
            # A full disk, an I/O error: one line, like every other export error.
            raise ExportError(f"{target or 'stdout'}: export failed: {exc}") from None
        raise
    name = str(target) if target is not None else "stdout"
    return ExportResult(fmt, name, rows, time.monotonic() - started, exported_at)


async def export_async(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str = "sqlite",
    flt: ExportFilter | None = None,
    force: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    hub: str | None = None,
) -> ExportResult:
    """:func:`export` in a worker thread; ``progress`` is called from that thread. Cancelling
    the awaiting task sets ``cancel`` (or an internal event) so the worker stops soon after."""
    cancel = cancel if cancel is not None else threading.Event()
    task = asyncio.ensure_future(
        asyncio.to_thread(
            export,
            src,
            out,
            fmt=fmt,
            flt=flt,
            force=force,
            progress=progress,
            cancel=cancel,
            hub=hub,
        )
    )
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(ExportError):
            await task
        raise


def check_source(path: Path) -> int:
    """The schema version of the iotwatch store at ``path``; ExportError when it is missing,
    not an iotwatch database, or newer than this iotwatch."""
    if not path.exists():
        raise ExportError(f"{path}: no such database")
    if not path.is_file():
        raise ExportError(f"{path}: not a database file")
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise ExportError(f"{path}: cannot open: {exc}") from None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc) or "not a database" in str(exc):
            raise ExportError(f"{path}: not an iotwatch database") from None
        raise ExportError(f"{path}: cannot read: {exc}") from None
    finally:
        conn.close()
    if row is None or not {"events", "alerts", "devices"} <= tables:
        raise ExportError(f"{path}: not an iotwatch database")
    try:
        version = int(row[0])
    except ValueError:
        raise ExportError(f"{path}: not an iotwatch database") from None
    if version > SCHEMA_VERSION:
        raise ExportError(
            f"{path}: schema version {version} is newer than this iotwatch ({SCHEMA_VERSION})"
        )
    return version


# -- alert records ---------------------------------------------------------------------------------


def alert_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Alert:
    """The :class:`Alert` of an ``alerts`` row (columns as in ``_ALERT_COLUMNS``; only the first
    14 are used), so that ``to_record()`` gives its SPEC §5 record."""
    aid, rule_id, device, grp, value, start, end, state, severity = tuple(row)[:9]
    window_s, lo, hi, counts, occurrences = tuple(row)[9:14]
    rule = c.BY_ID.get(rule_id)
    if rule is None:
        raise ExportError(f"alert {aid}: unknown rule id {rule_id}")
    alert = Alert(aid, rule, device, grp, severity)
    alert.state = state
    alert.start = start
    alert.end = end
    if rule.is_range:
        alert.size = (window_s or 0) * US
        alert.first = start // alert.size if alert.size else 0
        alert.counts = list(orjson.loads(counts)) if counts else []
        alert.min = lo
        alert.max = hi
    else:
        alert.value = value
        alert.occurrences = occurrences or 0
    alert.amended = len(row) > 17 and bool(tuple(row)[17])
    return alert


def csv_row(record: dict[str, Any]) -> list[Any]:
    """A SPEC §5 record as CSV cells in :data:`ALERT_FIELDS` order; ``counts`` as a JSON array."""
    cells: list[Any] = []
    for key in ALERT_FIELDS:
        value = record.get(key)
        if key == "counts" and value is not None:
            value = orjson.dumps(value).decode()
        cells.append("" if value is None else value)
    return cells


def security_alert(
    alert: Alert,
    exported_at: str,
    acknowledged_us: int | None = None,
    closed_by_hand_us: int | None = None,
    silenced: bool = False,
    resource_id: str = "",
) -> dict[str, Any]:
    """The alert as a row of Log Analytics' ``SecurityAlert`` table (see docs/export.md): the
    columns of :data:`SECURITY_ALERT_COLUMNS`, in that order; ``resource_id`` is the IoT hub's
    resource id ("" when none is configured). ``ExtendedProperties``, ``Entities`` and
    ``RemediationSteps`` are JSON text, as there."""
    rule = alert.rule
    rec = alert.to_record()
    props: dict[str, str] = {
        "DeviceId": alert.device,
        "DeviceGroup": alert.group,
        "RuleType": rule.name,
        "DataSource": rule.source,
        "State": alert.state,
    }
    if alert.is_range:
        props["TimeWindow"] = rec["window"]
        props["MinThreshold"] = str(alert.min)
        props["MaxThreshold"] = str(alert.max)
        props["Counts"] = orjson.dumps(alert.counts).decode()
        props["TotalCount"] = str(sum(alert.counts))
    else:
        props["Value"] = alert.value or ""
        props["Occurrences"] = str(alert.occurrences)
    props["Silenced"] = "true" if silenced else "false"
    if acknowledged_us is not None:
        props["AcknowledgedTime"] = format_time(acknowledged_us)
    if closed_by_hand_us is not None:
        props["ClosedByHandTime"] = format_time(closed_by_hand_us)
    props["AlertId"] = str(alert.id)
    if silenced:
        status = "Dismissed"
    elif closed_by_hand_us is not None or alert.state == "resolved":
        status = "Resolved"
    elif acknowledged_us is not None:
        status = "InProgress"
    else:
        status = "New"
    key = f"{rule.name}\x1f{alert.device}\x1f{alert.value or ''}\x1f{alert.start}"
    entity = {"$id": "1", "Type": "iotdevice", "DeviceId": alert.device}
    row: dict[str, Any] = {
        "AlertLink": "",
        "AlertName": rule.display_name,
        "AlertSeverity": alert.severity,
        "AlertType": rule.alert_type,
        "CompromisedEntity": alert.device,
        "ConfidenceLevel": "",
        "ConfidenceScore": None,  # a real: empty is null, not ""
        "Description": rule.description,
        "DisplayName": rule.display_name,
        "EndTime": rec["end"],
        "Entities": orjson.dumps([entity]).decode(),
        "ExtendedLinks": "",
        "ExtendedProperties": orjson.dumps(props).decode(),
        "IsIncident": False,
        "ProcessingEndTime": exported_at,
        "ProductComponentName": "Custom alerts",
        "ProductName": "iotwatch",
        "ProviderName": "iotwatch",
        "RemediationSteps": orjson.dumps([rule.remediation]).decode(),
        "ResourceId": resource_id,
        "SourceComputerId": "",
        "StartTime": rec["start"],
        "Status": status,
        "SubTechniques": "",
        "SystemAlertId": str(uuid.uuid5(_SYSTEM_ALERT_NS, key)),
        "Tactics": "",
        "Techniques": "",
        "TimeGenerated": rec["start"],
        "Type": "SecurityAlert",
        "VendorName": "iotwatch",
        "VendorOriginalId": str(alert.id),
        "WorkspaceResourceGroup": "",
        "WorkspaceSubscriptionId": "",
    }
    return row


# -- SQL pieces ------------------------------------------------------------------------------------


def rfc3339_sql(col: str) -> str:
    """SQL for ``col`` (µs, may be NULL) as RFC 3339 UTC text, exactly as ``format_time``."""
    frac = f"((({col}) % 1000000 + 1000000) % 1000000)"
    secs = f"((({col}) - {frac}) / 1000000)"
    return (
        f"CASE WHEN ({col}) IS NULL THEN NULL WHEN {frac} = 0 "
        f"THEN strftime('%Y-%m-%dT%H:%M:%SZ', {secs}, 'unixepoch') "
        f"ELSE strftime('%Y-%m-%dT%H:%M:%S', {secs}, 'unixepoch') || '.' || "
        f"printf('%06d', {frac}) || 'Z' END"
    )


def duration_sql(col: str) -> str:
    """SQL for ``col`` (whole seconds > 0, may be NULL) as ISO 8601, as ``format_duration``."""
    # Parentheses matter: in SQL, || binds tighter than / and %.
    d, h, m, s = (
        f"(({col}) / 86400)",
        f"((({col}) % 86400) / 3600)",
        f"((({col}) % 3600) / 60)",
        f"(({col}) % 60)",
    )
    return (
        f"CASE WHEN ({col}) IS NULL THEN NULL ELSE 'P' "
        f"|| CASE WHEN {d} THEN {d} || 'D' ELSE '' END "
        f"|| CASE WHEN (({col}) % 86400) THEN 'T' "
        f"|| CASE WHEN {h} THEN {h} || 'H' ELSE '' END "
        f"|| CASE WHEN {m} THEN {m} || 'M' ELSE '' END "
        f"|| CASE WHEN {s} THEN {s} || 'S' ELSE '' END "
        f"ELSE '' END END"
    )


def _alert_conds(flt: ExportFilter, a: str) -> list[str]:
    """WHERE terms for the alerts (alias ``a``) within ``flt``: alerts overlapping the time range
    (a range alert covers [start, end), an allow-list alert [start, end]) of selected devices."""
    conds = []
    if flt.by_time:
        conds += [
            f"{a}.start_us < :until",
            f"{a}.end_us > :since OR ({a}.end_us = :since AND {a}.rule IN ({_ALLOW_IDS}))",
        ]
    if flt.by_device:
        conds.append(_by_name(a, f"{a}.grp"))
    return conds


def _by_name(a: str, grp: str) -> str:
    """WHERE term: the device named in ``a.device`` is selected (devices the ``devices`` table
    does not hold are judged by name and ``grp``)."""
    return (
        f"{a}.device IN (SELECT name FROM temp.sel) OR ({a}.device NOT IN "
        f"(SELECT name FROM src.devices) AND iw_selected({a}.device, {grp}))"
    )


def _floor_div(a: str, b: str) -> str:
    """SQL for floor(a / b) of integers (SQLite's ``/`` truncates toward zero)."""
    return f"(CASE WHEN ({a}) >= 0 THEN ({a}) / ({b}) ELSE -((-({a}) - 1) / ({b})) - 1 END)"


def protocol_of_sql(e: str) -> str:
    """SQL for the protocol of event ``e``'s device's latest connection at or before it (the
    engine's tie-break at equal times: the greatest protocol name)."""
    return (
        f"SELECT k.value FROM events k WHERE k.device = {e}.device AND k.rule = {c.CONNECT}"
        f" AND k.expired = 0 AND k.time_us <= {e}.time_us ORDER BY k.time_us DESC, k.value DESC"
        " LIMIT 1"
    )


def _resolved_rule_sql(kind: str, protocol: str) -> str:
    """SQL for the per-protocol rule id of a message of pseudo rule ``kind``."""
    arms = " ".join(
        f"WHEN {kind} = {pseudo} AND {protocol} = '{p}' THEN {rules[p]}"
        for pseudo, rules in c.BY_PROTOCOL.items()
        for p in c.PROTOCOLS
    )
    return f"(CASE {arms} END)"


_UNKNOWN_IDS = ", ".join(str(i) for i in c.BY_PROTOCOL)
_WINDOW_US = "(r.window_s * 1000000)"
_WINDOW_START = f"{_floor_div('k.time_us', _WINDOW_US)} * {_WINDOW_US}"

# Tables only the export has.
EXTRA_TABLES = """
CREATE TABLE rule_texts (
    rule        INTEGER PRIMARY KEY,        -- rule_types.id
    description TEXT NOT NULL,
    remediation TEXT NOT NULL
)
"""

VIEWS: dict[str, str] = {
    "events_readable": f"""
SELECT e.id, {rfc3339_sql("e.time_us")} AS time, d.name AS device, d.grp AS grp, e.name AS event,
       rt.name AS rule, e.unauthorized, ra.name AS allow_rule, e.value, e.weight, e.expired,
       e.host_timed, s.name AS stream, e.pos, e.time_us
FROM events e
LEFT JOIN devices d ON d.id = e.device
LEFT JOIN rule_types rt ON rt.id = e.rule
LEFT JOIN rule_types ra ON ra.id = e.allow
LEFT JOIN streams s ON s.id = e.stream""",
    "alerts_readable": f"""
SELECT a.id, rt.name AS rule, rt.alert_type AS type, rt.display_name AS name, a.severity,
       rt.source, a.device, a.grp, {rfc3339_sql("a.start_us")} AS start,
       {rfc3339_sql("a.end_us")} AS "end", a.state, {duration_sql("a.window_s")} AS window,
       a.min, a.max, a.counts, a.value, a.occurrences, a.amended, a.merged_into,
       {rfc3339_sql("a.acknowledged_us")} AS acknowledged,
       {rfc3339_sql("a.closed_by_hand_us")} AS closed_by_hand, a.silenced,
       (SELECT count(*) FROM alert_notes n WHERE n.alert = a.id) AS notes,
       x.description, x.remediation, a.start_us, a.end_us
FROM alerts a
LEFT JOIN rule_types rt ON rt.id = a.rule
LEFT JOIN rule_texts x ON x.rule = a.rule""",
    "alerts_by_device_rule": f"""
SELECT a.device, a.grp, rt.name AS rule, rt.kind, count(*) AS alerts,
       sum(a.state = 'open') AS open, sum(a.state = 'resolved') AS resolved,
       sum(a.state = 'withdrawn') AS withdrawn,
       sum(a.acknowledged_us IS NOT NULL) AS acknowledged, sum(a.silenced != 0) AS silenced,
       {rfc3339_sql("min(a.start_us)")} AS first_start, {rfc3339_sql("max(a.end_us)")} AS last_end,
       sum(a.occurrences) AS occurrences
FROM alerts a
LEFT JOIN rule_types rt ON rt.id = a.rule
GROUP BY a.device, a.grp, a.rule""",
    # A message without a protocol (catalogue.D2C_UNKNOWN, ...) counts under the protocol of its
    # device's latest connection (catalogue.CONNECT) at or before it, as the engine counts it;
    # connection records themselves count toward no rule (no ``rules`` row joins them).
    "window_counts": f"""
WITH counted (device, rule, time_us, weight) AS (
    SELECT device, rule, time_us, weight FROM events
    WHERE expired = 0 AND rule IS NOT NULL AND rule < {c.CONNECT}
    UNION ALL
    SELECT device, {c.UNAUTHORIZED}, time_us, weight FROM events WHERE expired = 0 AND unauthorized != 0
    UNION ALL
    SELECT device, {_resolved_rule_sql("u.kind", "u.protocol")}, time_us, weight FROM (
        SELECT e.device, e.rule AS kind, e.time_us, e.weight, ({protocol_of_sql("e")}) AS protocol
        FROM events e WHERE e.expired = 0 AND e.rule IN ({_UNKNOWN_IDS})
    ) u WHERE u.protocol IS NOT NULL
), windows AS (
    SELECT d.name AS device, d.grp AS grp, rt.name AS rule, r.enabled, r.window_s,
           {_WINDOW_START} AS window_start_us, count(*) AS events, sum(k.weight) AS count,
           r.min, r.max
    FROM counted k
    JOIN devices d ON d.id = k.device
    JOIN rules r ON r.grp = d.grp AND r.rule = k.rule AND r.window_s IS NOT NULL
    JOIN rule_types rt ON rt.id = k.rule
    GROUP BY k.device, k.rule, window_start_us
)
SELECT device, grp, rule, {rfc3339_sql("window_start_us")} AS window_start,
       {rfc3339_sql("window_start_us + window_s * 1000000")} AS window_end,
       {duration_sql("window_s")} AS window, events, count, min, max,
       (max IS NOT NULL AND count > max) OR (min IS NOT NULL AND count < min) AS out_of_range,
       enabled, window_s, window_start_us
FROM windows""",
    "event_counts": """
SELECT d.name AS device, d.grp AS grp, e.name AS event, rt.name AS rule, count(*) AS events,
       sum(e.weight) AS weight, sum(e.expired) AS expired, sum(e.unauthorized != 0) AS unauthorized
FROM events e
LEFT JOIN devices d ON d.id = e.device
LEFT JOIN rule_types rt ON rt.id = e.rule
GROUP BY e.device, e.name, e.rule""",
    "device_summary": f"""
SELECT d.id, d.name AS device, d.grp, g.name AS group_name, d.declared,
       {rfc3339_sql("d.first_us")} AS first_seen, {rfc3339_sql("d.last_us")} AS last_seen,
       (SELECT count(*) FROM events e WHERE e.device = d.id) AS events,
       (SELECT count(*) FROM events e WHERE e.device = d.id AND e.expired != 0) AS expired,
       (SELECT count(*) FROM alerts a WHERE a.device = d.name) AS alerts,
       (SELECT count(*) FROM alerts a WHERE a.device = d.name AND a.state = 'open') AS open_alerts
FROM devices d
LEFT JOIN groups g ON g.key = d.grp""",
    "notes_readable": f"""
SELECT n.id, n.alert, {rfc3339_sql("n.at_us")} AS at, rt.name AS rule, a.device, a.value,
       n.text
FROM alert_notes n
LEFT JOIN alerts a ON a.id = n.alert
LEFT JOIN rule_types rt ON rt.id = a.rule""",
    "silences_readable": f"""
SELECT s.id, rt.name AS rule, s.device, s.value, {rfc3339_sql("s.from_us")} AS "from",
       {rfc3339_sql("s.until_us")} AS until
FROM silences s
LEFT JOIN rule_types rt ON rt.id = s.rule""",
    "console_readable": f"""
SELECT l.id, {rfc3339_sql("l.time_us")} AS time, s.name AS stream, l.pos, l.line
FROM console l
LEFT JOIN streams s ON s.id = l.stream""",
    "quarantine_readable": """
SELECT q.id, s.name AS stream, s.format, q.pos, q.part, q.reason, length(q.raw) AS bytes
FROM quarantine q
LEFT JOIN streams s ON s.id = q.stream""",
    "hub_records_readable": f"""
SELECT h.id, {rfc3339_sql("h.time_us")} AS time, h.category, h.operation, h.result,
       s.name AS stream, h.pos, h.time_us
FROM hub_records h
LEFT JOIN streams s ON s.id = h.stream""",
}


# -- the SQLite export -----------------------------------------------------------------------------


def _ro_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path`` (any characters in the name)."""
    return f"{path.absolute().as_uri()}?mode=ro"


_SIDE_FILES = ("-wal", "-shm", "-journal")


def _check_target(target: Path, src: Path, force: bool) -> None:
    """ExportError unless ``target`` may be written (or, with ``force``, replaced). The source
    database and any database's ``-wal``, ``-shm`` or ``-journal`` file are never replaced, even
    with ``force``: that would corrupt a database, or lose what a live session has committed."""
    if target.is_dir():
        raise ExportError(f"{target}: is a directory")
    for suffix in _SIDE_FILES:
        if target.name.endswith(suffix):
            database = target.with_name(target.name[: -len(suffix)])
            if database.is_file():
                raise ExportError(
                    f"{target}: is the {suffix[1:]} file of the database {database}; "
                    "choose another name"
                )
    if target.exists() or target.is_symlink():
        if target.exists() and any(
            os.path.samefile(target, side)
            for side in (src, *(f"{src}{suffix}" for suffix in _SIDE_FILES))
            if os.path.exists(side)
        ):
            raise ExportError(f"{target}: is the source database or one of its files")
        if not force:
            raise ExportError(f"{target}: already exists (use --force to replace it)")
    if not target.parent.is_dir():
        raise ExportError(f"{target}: no such folder {target.parent}")


def _temp_path(target: Path) -> Path:
    """Create an empty temporary file next to ``target``; ExportError if that is not writable."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        create_private(tmp)  # an export holds what the database holds: 0600, as it does
    except OSError as exc:
        raise ExportError(f"{target}: cannot write: {exc.strerror}") from None
    return tmp


def _columns(conn: sqlite3.Connection, schema: str, table: str) -> list[str]:
    """The column names of ``schema.table`` ([] when it does not exist)."""
    return [r[1] for r in conn.execute(f"PRAGMA {schema}.table_info({table})")]


class _Copier:
    """Copies filtered rows from ``src`` into ``main`` on one connection, in one transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        flt: ExportFilter,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> None:
        self.conn = conn
        self.flt = flt
        self.progress = progress
        self.cancel = cancel
        self.rows: dict[str, int] = {}
        self.columns: dict[str, list[tuple[str, str]]] = {}
        self.params: dict[str, Any] = {
            "since": flt.since if flt.since is not None else _MIN_INT,
            "until": flt.until if flt.until is not None else _MAX_INT,
        }

    def check(self) -> None:
        """Raise ExportCancelled once the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise ExportCancelled("export cancelled")

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def copy(self, table: str, where: Iterable[str] = (), report: bool = True) -> int:
        """``INSERT INTO main.table SELECT ... FROM src.table t WHERE ...``; rows copied.
        Columns the source lacks (an older schema) are left to their defaults."""
        self.check()
        cols = self.columns.get(table)
        if cols is None:
            src_cols = {col: f"t.{col}" for col in _columns(self.conn, "src", table)}
            if "late" in src_cols:  # schema 1 called expired events late
                src_cols["expired"] = "t.late"
            cols = [(col, src_cols[col]) for col in _columns(self.conn, "main", table)]
            cols = [(col, expr) for col, expr in cols if col in src_cols]
            self.columns[table] = cols
        n = 0
        if cols:
            names = ", ".join(col for col, _ in cols)
            picked = ", ".join(expr for _, expr in cols)
            sql = f"INSERT INTO main.{table} ({names}) SELECT {picked} FROM src.{table} t"
            conds = list(where)
            if conds:
                sql += " WHERE " + " AND ".join(f"({w})" for w in conds)
            n = self.conn.execute(sql, self.params).rowcount
        self.rows[table] = self.rows.get(table, 0) + n
        if report:
            self.report(table, 1, 1)
        return n

    def copy_events(self, where: list[str]) -> None:
        """Copy the events in id ranges of CHUNK_IDS, reporting progress after each."""
        lo, hi = self.conn.execute("SELECT min(id), max(id) FROM src.events").fetchone()
        self.rows["events"] = 0
        if lo is None:
            self.report("events", 1, 1)
            return
        total = hi - lo + 1
        start = lo - 1
        while start < hi:
            end = min(start + CHUNK_IDS, hi)
            self.params["lo"], self.params["hi"] = start, end
            self.copy("events", [*where, "t.id > :lo", "t.id <= :hi"], report=False)
            self.report("events", end - lo + 1, total)
            start = end


def _export_sqlite(
    src: Path,
    tmp: Path,
    flt: ExportFilter,
    source_version: int,
    exported_at: str,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> dict[str, int]:
    """The SQLite export of ``src`` into the new file ``tmp``; rows per table."""
    try:
        conn = sqlite3.connect(tmp, isolation_level=None, uri=False, check_same_thread=True)
    except sqlite3.Error as exc:
        raise ExportError(f"{tmp}: cannot write: {exc}") from None
    try:
        conn.execute("PRAGMA main.journal_mode = OFF")  # a temporary file: deleted on failure
        conn.execute("PRAGMA main.synchronous = OFF")
        conn.execute("PRAGMA main.cache_size = -65536")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA threads = 4")  # helper threads for the index build's sort
        conn.execute("ATTACH DATABASE ? AS src", (_ro_uri(src),))
        if cancel is not None:
            conn.set_progress_handler(cancel.is_set, 100_000)
        try:
            rows = _copy_all(conn, flt, source_version, exported_at, progress, cancel)
        except sqlite3.OperationalError as exc:
            if cancel is not None and cancel.is_set():
                raise ExportCancelled("export cancelled") from None
            raise ExportError(f"{src}: export failed: {exc}") from None
    finally:
        conn.close()
    return rows


def _copy_all(
    conn: sqlite3.Connection,
    flt: ExportFilter,
    source_version: int,
    exported_at: str,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> dict[str, int]:
    """Create the export's schema and copy every table within ``flt`` in one snapshot."""
    cp = _Copier(conn, flt, progress, cancel)
    statements = schema_statements()
    indexes = [s for s in statements if s.upper().startswith("CREATE INDEX")]
    conn.execute("BEGIN")
    # The first read of src starts its read transaction: the snapshot everything below sees.
    src_meta = conn.execute("SELECT key, value FROM src.meta").fetchall()
    for statement in statements:
        if statement not in indexes:
            conn.execute(statement)
    conn.execute(EXTRA_TABLES)
    _select_devices(conn, flt)

    time_cond = ["t.time_us >= :since", "t.time_us < :until"] if flt.by_time else []
    dev_cond = ["t.device IN (SELECT id FROM temp.sel)"] if flt.by_device else []
    grp_cond = ["t.grp IN (SELECT key FROM temp.selgrp)"] if flt.groups else []

    cp.copy("rule_types")
    # The names of this iotwatch (Defender's exact ones), whatever an older source holds.
    conn.executemany(
        "UPDATE main.rule_types SET display_name = ? WHERE id = ?",
        [(r.display_name, r.id) for r in c.RULE_TYPES],
    )
    conn.executemany(
        "INSERT INTO main.rule_texts VALUES (?, ?, ?)",
        [(r.id, r.description, r.remediation) for r in c.RULE_TYPES],
    )
    cp.copy("groups", ["t.key IN (SELECT key FROM temp.selgrp)"] if flt.groups else [])
    for table in ("rules", "allowlist", "device_map"):
        cp.copy(table, grp_cond)
    cp.copy("devices", ["t.id IN (SELECT id FROM temp.sel)"] if flt.by_device else [])
    cp.copy_events(time_cond + dev_cond)

    cp.copy("alerts", _alert_conds(flt, "t"))
    cp.copy("alert_notes", ["t.alert IN (SELECT id FROM main.alerts)"] if flt.any else [])
    cp.copy("amendments", ["t.alert IN (SELECT id FROM main.alerts)"] if flt.any else [])
    silence_conds = []
    if flt.by_time:
        silence_conds += ["t.from_us < :until", "t.until_us > :since"]
    if flt.by_device:
        silence_conds.append(_by_name("t", "NULL"))
    cp.copy("silences", silence_conds)

    # Console lines and quarantined records have no device: with a device or group filter, only
    # those of board streams (serial, capture: one board each) that carry a selected device.
    board_cond = []
    if flt.by_device:
        conn.execute(
            "CREATE TEMP TABLE boards AS SELECT s.id FROM src.streams s WHERE s.kind IN "
            f"({', '.join(repr(k) for k in BOARD_STREAMS)}) AND EXISTS (SELECT 1 FROM temp.sel "
            "JOIN src.events e ON e.device = sel.id WHERE e.stream = s.id)"
        )
        board_cond = ["t.stream IN (SELECT id FROM temp.boards)"]
    cp.copy("console", time_cond + board_cond)
    # Quarantined records have no time either: with a time filter, each is placed at its
    # stream's clock (the latest event time at an earlier position of its stream; at the start
    # of a stream, the earliest event time after it).
    quarantine_cond = list(board_cond)
    if flt.by_time:
        _quarantine_clocks(conn, "stream IN (SELECT id FROM temp.boards)" if board_cond else "1")
        quarantine_cond.append(
            "t.id IN (SELECT id FROM temp.qtime WHERE t >= :since AND t < :until)"
        )
    cp.copy("quarantine", quarantine_cond)
    # Hub-wide records belong to no device: a device or group filter keeps none of them.
    cp.copy("hub_records", [*time_cond, "0"] if flt.by_device else time_cond)
    cp.copy(
        "streams",
        [
            "t.id IN (SELECT stream FROM main.events UNION SELECT stream FROM main.console "
            "UNION SELECT stream FROM main.quarantine UNION SELECT stream FROM main.hub_records)"
        ]
        if flt.any
        else [],
    )

    meta = {
        "schema_version": str(SCHEMA_VERSION),
        "export_format_version": str(EXPORT_FORMAT_VERSION),
        "exported_at": exported_at,
        "exported_by": f"iotwatch {_version()}",
        "source_schema_version": str(source_version),
        **flt.describe(),
    }
    for key, value in src_meta:
        if key != "schema_version":
            meta.setdefault(f"source_{key}", value)
    conn.execute("DELETE FROM main.meta")
    conn.executemany("INSERT INTO main.meta VALUES (?, ?)", sorted(meta.items()))
    cp.check()
    # Everything is read: end the snapshot before the slow part, building the indexes, so the
    # live session's checkpoints are held back no longer than necessary.
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE src")
    cp.report("indexes", 0, 1)
    conn.execute("BEGIN")
    for statement in indexes:
        conn.execute(statement)
    for name, sql in VIEWS.items():
        conn.execute(f"CREATE VIEW {name} AS {sql.strip()}")
    conn.execute("COMMIT")
    cp.report("indexes", 1, 1)
    return cp.rows


def _quarantine_clocks(conn: sqlite3.Connection, streams: str) -> None:
    """Temp table ``qtime (id, t)``: the stream clock of each quarantined record of the streams
    ``streams`` (a WHERE term) selects, NULL for a stream without events."""
    (n,) = conn.execute(f"SELECT count(*) FROM src.quarantine WHERE {streams}").fetchone()
    if n <= QUARANTINE_SCANS:
        # A few records (the usual case): one scan of the events each is cheapest.
        conn.execute(
            f"""CREATE TEMP TABLE qtime AS
            SELECT q.id, coalesce(
                (SELECT max(e.time_us) FROM src.events e
                 WHERE e.stream = q.stream AND e.pos <= q.pos),
                (SELECT min(e.time_us) FROM src.events e WHERE e.stream = q.stream)) AS t
            FROM src.quarantine q WHERE {streams}"""
        )
        return
    # Many: one sort of the events of their streams, then a running maximum in stream order.
    conn.execute(
        f"""CREATE TEMP TABLE qtime AS
        WITH marks AS (
            SELECT stream, pos, 0 AS kind, time_us AS t, NULL AS qid FROM src.events
            WHERE stream IN (SELECT stream FROM src.quarantine WHERE {streams})
            UNION ALL
            SELECT stream, pos, 1, NULL, id FROM src.quarantine WHERE {streams}
        ), clocks AS (
            SELECT qid, kind,
                max(t) OVER (PARTITION BY stream ORDER BY pos, kind
                             ROWS UNBOUNDED PRECEDING) AS before,
                min(t) OVER (PARTITION BY stream) AS first
            FROM marks
        )
        SELECT qid AS id, coalesce(before, first) AS t FROM clocks WHERE kind = 1"""
    )


def _select_devices(conn: sqlite3.Connection, flt: ExportFilter) -> None:
    """Temp tables ``sel`` (selected devices) and ``selgrp`` (group keys), and the SQL function
    ``iw_selected(name, grp)`` for devices the ``devices`` table does not hold."""
    conn.create_function(
        "iw_selected", 2, lambda name, grp: int(flt.device_selected(name, grp)), deterministic=True
    )
    conn.execute("CREATE TEMP TABLE selgrp (key TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO temp.selgrp VALUES (?)", [(g,) for g in flt.groups])
    conn.execute("CREATE TEMP TABLE sel (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    if flt.by_device:
        conn.execute(
            "INSERT INTO temp.sel SELECT id, name FROM src.devices WHERE iw_selected(name, grp)"
        )


def _version() -> str:
    """The installed iotwatch version."""
    try:
        return metadata.version("iotwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- the alert formats -----------------------------------------------------------------------------


def _export_lines(
    src: Path,
    out: IO[bytes],
    fmt: str,
    flt: ExportFilter,
    exported_at: str,
    progress: Progress | None,
    cancel: threading.Event | None,
    hub: str | None = None,
) -> dict[str, int]:
    """Write the alerts within ``flt`` to ``out`` as ``fmt`` lines; ``{'alerts': n}``."""
    rows = _read_alerts(src, flt)
    alerts = sorted(((alert_from_row(r), r) for r in rows), key=lambda ar: ar[0].key)
    if fmt == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(ALERT_FIELDS)
    for n, (alert, row) in enumerate(alerts, 1):
        if cancel is not None and cancel.is_set():
            raise ExportCancelled("export cancelled")
        if fmt == "csv":
            writer.writerow(csv_row(alert.to_record()))
        elif fmt == "jsonl":
            out.write(jsonline.dumps(alert.to_record()))
        else:
            ack, closed, silenced = row[14], row[15], bool(row[16])
            record = security_alert(alert, exported_at, ack, closed, silenced, hub or "")
            out.write(jsonline.dumps(record))
        if progress is not None and n % 10_000 == 0:
            progress("alerts", n, len(alerts))
    if fmt == "csv":
        text.flush()
        text.detach()
    out.flush()
    if progress is not None:
        progress("alerts", len(alerts), len(alerts))
    return {"alerts": len(alerts)}


def _read_alerts(src: Path, flt: ExportFilter) -> list[tuple[Any, ...]]:
    """The alerts rows within ``flt``, read in one snapshot of ``src``."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS src", (_ro_uri(src),))
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM src.meta").fetchone()  # pins the snapshot
        _select_devices(conn, flt)
        params = {
            "since": flt.since if flt.since is not None else _MIN_INT,
            "until": flt.until if flt.until is not None else _MAX_INT,
        }
        conds = _alert_conds(flt, "a")
        sql = f"SELECT {_ALERT_COLUMNS} FROM src.alerts a"
        if conds:
            sql += " WHERE " + " AND ".join(f"({w})" for w in conds)
        rows = conn.execute(sql, params).fetchall()
        conn.execute("COMMIT")
        return rows
    except sqlite3.Error as exc:
        raise ExportError(f"{src}: cannot read: {exc}") from None
    finally:
        conn.close()
