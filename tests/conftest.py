"""Shared helpers: write inputs and configurations, run replay in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import Config, load_config
from engine.replay import InputSpec, Summary, replay


def hub_event(
    time: str, device: str, op: str = "d2c", protocol: str | None = "mqtt", **extra: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {"time": time, "deviceId": device, "op": op}
    if protocol is not None:
        rec["protocol"] = protocol
    rec.update(extra)
    return rec


def security_message(device: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {
        "deviceId": device,
        "body": {
            "AgentVersion": "1.0",
            "AgentId": "agent",
            "MessageSchemaVersion": "1.0",
            "Events": list(events),
        },
    }


def agent_event(
    name: str, time: str, *payload: dict[str, Any], category: str = "Triggered"
) -> dict[str, Any]:
    return {
        "Name": name,
        "Category": category,
        "EventType": "Security",
        "IsEmpty": False,
        "Id": "00000000-0000-0000-0000-000000000000",
        "TimestampLocal": time,
        "TimestampUTC": time,
        "Payload": list(payload),
    }


def write_lines(path: Path, records: Sequence[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def run_replay(
    config: Config, inputs: Sequence[str | Path], db: str | None = None
) -> tuple[list[dict[str, Any]], Summary]:
    specs = [InputSpec.parse(str(p)) for p in inputs]
    alerts, summary = asyncio.run(replay(config, specs, db=db))
    return [a.to_record() for a in alerts], summary


def config_from(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "iotwatch.toml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
