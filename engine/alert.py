"""The alert record (SPEC §5): one range episode or one allow-list episode."""

from __future__ import annotations

from typing import Any

from engine.catalogue import RuleType
from engine.timestamps import US, format_duration, format_time

OPEN = "open"
RESOLVED = "resolved"
WITHDRAWN = "withdrawn"  # live only: no out-of-range window (or violation) is left of it


class Alert:
    """One alert. Range alerts cover windows ``first .. first + len(counts) - 1`` of ``size`` µs;
    allow-list alerts cover the violations from ``start`` to ``end`` (µs)."""

    __slots__ = (
        "amended",
        "counts",
        "device",
        "end",
        "first",
        "group",
        "id",
        "into",
        "max",
        "min",
        "occurrences",
        "rule",
        "severity",
        "size",
        "start",
        "state",
        "value",
    )

    def __init__(self, id: int, rule: RuleType, device: str, group: str, severity: str) -> None:
        self.id = id
        self.rule = rule
        self.device = device
        self.group = group
        self.severity = severity
        self.state = OPEN
        self.value: str | None = None
        self.start = 0
        self.end = 0
        # range
        self.first = 0
        self.size = 0
        self.counts: list[int] = []
        self.min = 0
        self.max = 0
        # allow-list
        self.occurrences = 0
        # live: changed by an event that arrived after its windows were judged
        self.amended = False
        self.into: int | None = None  # withdrawn because it was merged into this alert

    @property
    def is_range(self) -> bool:
        return self.rule.kind == "range"

    def span_windows(self) -> None:
        """Recompute ``start``/``end`` of a range alert from its windows."""
        self.start = self.first * self.size
        self.end = (self.first + len(self.counts)) * self.size

    @property
    def key(self) -> tuple[int, str, str, str]:
        """The output order of SPEC §6: start, rule, device, value."""
        return (self.start, self.rule.name, self.device, self.value or "")

    def to_record(self) -> dict[str, Any]:
        """The JSON form of SPEC §5."""
        rule = self.rule
        rec: dict[str, Any] = {
            "rule": rule.name,
            "type": rule.alert_type,
            "name": rule.display_name,
            "severity": self.severity,
            "source": rule.source,
            "device": self.device,
            "group": self.group,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "state": self.state,
        }
        if self.is_range:
            rec["window"] = format_duration(self.size // US)
            rec["min"] = self.min
            rec["max"] = self.max
            rec["counts"] = list(self.counts)
        else:
            rec["value"] = self.value
            rec["occurrences"] = self.occurrences
        rec["description"] = rule.description
        rec["remediation"] = rule.remediation
        if self.amended:
            rec["amended"] = True
        return rec

    def __repr__(self) -> str:
        return f"Alert({self.id}, {self.rule.name}, {self.device!r}, {self.to_record()})"


class AlertBook:
    """Every alert of a session, what changed since the store last took it, and who listens.

    The listener, if any, gets ``(change, alert)`` with change ``opened``, ``updated``,
    ``resolved`` or ``withdrawn``. A live book (``live``) keeps withdrawn alerts as records with
    state ``withdrawn`` and logs amendments; a replay's book forgets them, since a replay
    reports final episodes only.
    """

    def __init__(self, listener: Any = None, first_id: int = 1, live: bool = False) -> None:
        self.next_id = first_id
        self.live = live
        self.alerts: dict[int, Alert] = {}  # every alert that is not withdrawn
        self.dirty: dict[int, Alert] = {}
        self.listener = listener
        # (alert id, at µs, window start µs, count before, count after), for the store
        self.amendments: list[tuple[int, int, int, int, int]] = []
        # After a restart: stored alerts no rebuilt alert has claimed yet, by (rule id, device,
        # value); a new alert that overlaps one takes its id.
        self.unclaimed: dict[tuple[int, str, str | None], list[tuple[int, int, int]]] = {}

    def new(self, rule: RuleType, device: str, group: str, severity: str) -> Alert:
        alert = Alert(self.next_id, rule, device, group, severity)
        self.next_id += 1
        return alert

    def opened(self, alert: Alert) -> None:
        if self.unclaimed:
            self.claim(alert)
        self.alerts[alert.id] = alert
        self.dirty[alert.id] = alert
        if self.listener is not None:
            self.listener("opened", alert)

    def updated(self, alert: Alert) -> None:
        self.dirty[alert.id] = alert
        if self.listener is not None:
            self.listener("updated", alert)

    def resolved(self, alert: Alert) -> None:
        alert.state = RESOLVED
        self.dirty[alert.id] = alert
        if self.listener is not None:
            self.listener("resolved", alert)

    def withdrawn(self, alert: Alert, into: Alert | None = None) -> None:
        """No out-of-range window (or violation) is left of ``alert``; ``into`` took it over."""
        self.alerts.pop(alert.id, None)
        alert.state = WITHDRAWN
        alert.into = into.id if into is not None else None
        if not self.live:
            self.dirty.pop(alert.id, None)
            return
        self.dirty[alert.id] = alert
        if self.listener is not None:
            self.listener("withdrawn", alert)

    def amended(self, alert: Alert, at: int, window: int, before: int, after: int) -> None:
        """Live: an event counted into judged window ``window`` (start, µs) changed ``alert``."""
        if self.live:
            alert.amended = True
            self.amendments.append((alert.id, at, window, before, after))

    def forget(self, alert: Alert) -> None:
        """Live: ``alert`` can no longer change (every window of it and after it is beyond the
        horizon); keep it only until the store has taken its last change."""
        self.alerts.pop(alert.id, None)

    def claim(self, alert: Alert) -> bool:
        """Give ``alert`` the id of an unclaimed stored alert it continues: the one with the same
        span, else the oldest it overlaps (a range alert's windows are half-open, so alerts
        that only touch do not overlap)."""
        key = (alert.rule.id, alert.device, None if alert.is_range else alert.value)
        stored = self.unclaimed.get(key)
        if not stored:
            return False
        same = [e for e in stored if (e[1], e[2]) == (alert.start, alert.end)]
        if alert.is_range:
            over = [e for e in stored if e[1] < alert.end and alert.start < e[2]]
        else:
            over = [e for e in stored if e[1] <= alert.end and alert.start <= e[2]]
        for entry in sorted(same) or sorted(over):
            stored.remove(entry)
            alert.id = entry[0]
            return True
        return False

    def take_changes(self) -> list[Alert]:
        """The alerts changed since the last call (withdrawn ones included)."""
        dirty = list(self.dirty.values())
        self.dirty = {}
        return dirty

    def take_amendments(self) -> list[tuple[int, int, int, int, int]]:
        out, self.amendments = self.amendments, []
        return out
