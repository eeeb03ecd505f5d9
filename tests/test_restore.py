"""Restart: the evaluator rebuilt from the store holds the same alerts as the run that stored it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from engine.restore import restore
from engine.store import Store
from tests.conftest import config_from, run_replay
from tests.test_worked_example import CONFIG, write_inputs


def test_restore_rebuilds_alerts_with_their_ids(tmp: Path) -> None:
    config = config_from(tmp, CONFIG)
    db = str(tmp / "s.db")
    expected, _ = run_replay(config, write_inputs(tmp), db=db)
    with sqlite3.connect(db) as conn:
        stored = sorted(conn.execute("SELECT id, rule, device, value, start_us FROM alerts"))

    async def rebuild() -> tuple[list[dict], list[tuple], int]:
        store = await Store.open(db)
        try:
            restored = await restore(store, config)
            alerts = restored.evaluator.finish()
            ids = sorted((a.id, a.rule.id, a.device, a.value, a.start) for a in alerts)
            return [a.to_record() for a in alerts], ids, restored.evaluator.events
        finally:
            await store.close()

    records, ids, events = asyncio.run(rebuild())
    assert records == expected
    assert ids == stored
    assert events == 8
