"""What an operator does to alerts: acknowledge, resolve by hand, annotate, silence, and undo
each of them (un-acknowledge, reopen, lift a silence).

Stored beside the engine's own columns, which the engine never overwrites: an alert resolved by
hand keeps its evaluated state, and the console shows both.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.store import Store


@dataclass(frozen=True, slots=True)
class Silence:
    """Alerts of (rule, device[, value]) from ``start`` until ``until`` (µs) are marked silenced."""

    id: int
    rule: int
    device: str
    value: str | None
    start: int
    until: int

    def covers(self, rule: int, device: str, value: str | None, at: int) -> bool:
        return (
            self.rule == rule
            and self.device == device
            and (self.value is None or self.value == value)
            and self.start <= at < self.until
        )


async def acknowledge(store: Store, alert_id: int, at: int) -> None:
    await _run(store, "UPDATE alerts SET acknowledged_us = ? WHERE id = ?", (at, alert_id))


async def resolve_by_hand(store: Store, alert_id: int, at: int) -> None:
    await _run(store, "UPDATE alerts SET closed_by_hand_us = ? WHERE id = ?", (at, alert_id))


async def unacknowledge(store: Store, alert_id: int) -> None:
    await _run(store, "UPDATE alerts SET acknowledged_us = NULL WHERE id = ?", (alert_id,))


async def reopen(store: Store, alert_id: int) -> None:
    """Undo a resolution by hand: the alert shows its evaluated state again."""
    await _run(store, "UPDATE alerts SET closed_by_hand_us = NULL WHERE id = ?", (alert_id,))


async def add_note(store: Store, alert_id: int, at: int, text: str) -> int:
    async with (
        store.lock,
        store.conn.execute(
            "INSERT INTO alert_notes (alert, at_us, text) VALUES (?, ?, ?)", (alert_id, at, text)
        ) as cur,
    ):
        return int(cur.lastrowid or 0)


async def silence(
    store: Store, rule: int, device: str, value: str | None, start: int, until: int
) -> Silence:
    """Silence (rule, device[, value]) from ``start`` to ``until``: the open alerts of that key are
    marked now, and the session marks every alert of it that changes while the silence lasts."""
    async with (
        store.lock,
        store.conn.execute(
            "INSERT INTO silences (rule, device, value, from_us, until_us) VALUES (?, ?, ?, ?, ?)",
            (rule, device, value, start, until),
        ) as cur,
    ):
        sid = int(cur.lastrowid or 0)
    await _run(
        store,
        "UPDATE alerts SET silenced = 1 WHERE rule = ? AND device = ? AND (? IS NULL OR value = ?)"
        " AND (state = 'open' OR end_us >= ?) AND start_us < ?",
        (rule, device, value, value, start, until),
    )
    return Silence(sid, rule, device, value, start, until)


async def unsilence(store: Store, silence_id: int, now: int, others: list[Silence]) -> bool:
    """Lift silence ``silence_id`` at ``now`` (it ends then; the row stays as a record). Its open
    alerts that no silence of ``others`` still covers lose their silenced mark; alerts that
    ended while it lasted keep it. False when it had already ended or does not exist."""
    async with store.lock:
        async with store.conn.execute(
            "SELECT id, rule, device, value, from_us, until_us FROM silences"
            " WHERE id = ? AND until_us > ?",
            (silence_id, now),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return False
        lifted = Silence(*row)
        await store.conn.execute(
            "UPDATE silences SET until_us = ? WHERE id = ?", (max(now, lifted.start), silence_id)
        )
        async with store.conn.execute(
            "SELECT id, value FROM alerts WHERE rule = ? AND device = ? AND state = 'open'"
            " AND silenced = 1 AND (? IS NULL OR value = ?)",
            (lifted.rule, lifted.device, lifted.value, lifted.value),
        ) as cur:
            rows = await cur.fetchall()
        clear = [
            (alert_id,)
            for alert_id, value in rows
            if not any(
                s.id != silence_id and s.covers(lifted.rule, lifted.device, value, now)
                for s in others
            )
        ]
        await store.conn.executemany("UPDATE alerts SET silenced = 0 WHERE id = ?", clear)
    return True


async def silences(store: Store, now: int) -> list[Silence]:
    """The silences still in force at ``now``."""
    async with store.conn.execute(
        "SELECT id, rule, device, value, from_us, until_us FROM silences WHERE until_us > ?", (now,)
    ) as cur:
        return [Silence(*row) for row in await cur.fetchall()]


async def _run(store: Store, sql: str, params: tuple[object, ...]) -> None:
    async with store.lock:
        await store.conn.execute(sql, params)
