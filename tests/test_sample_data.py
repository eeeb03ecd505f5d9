"""The sample bench session replays to the alerts it ships with, and exercises every rule type."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine.catalogue import RULE_TYPES
from engine.config import load_config
from tests.conftest import run_replay

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def test_sample_session_replays_to_the_expected_alerts() -> None:
    config = load_config(SAMPLE / "iotwatch.toml")
    inputs = sorted((SAMPLE / "session").iterdir())
    alerts, summary = run_replay(config, inputs)
    expected = [
        orjson.loads(line) for line in (SAMPLE / "expected-alerts.jsonl").read_bytes().splitlines()
    ]
    assert alerts == expected
    assert {a["rule"] for a in alerts} == {r.name for r in RULE_TYPES}
    first = (SAMPLE / "expected-summary.txt").read_text().splitlines()[0]
    assert first == (
        f"records {summary.records}, events {summary.events}, expired {summary.expired}, "
        f"quarantined {sum(summary.quarantined.values())}, alerts {len(alerts)}"
    )
