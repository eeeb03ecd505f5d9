"""Following ``hub-messages`` sources live (docs/formats.md, "Following Avro files"): a new or
grown Avro container is read block by block, a partial block waits for the rest, a restart
resumes at the committed block with the file's header read again, and nothing is counted twice.
Hub-wide resource-log records of a ``hub-log`` source are stored live too."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import fastavro
import orjson

from tests.test_hub_messages import ROUTING_SCHEMA, avro_file, json_line, telemetry, twin_change
from tests.test_session import Clock, start, until

CONFIG = """
[engine]
lateness = "PT10S"

[[sources]]
type = "hub-messages"
path = "routed/**/*"

[[sources]]
type = "hub-log"
path = "logs/*.json"
"""


def grown(data: bytes, records: list[dict]) -> bytes:
    """``data`` with blocks of ``records`` appended, as a writer appending to the file would."""
    out = io.BytesIO(data)
    out.seek(0, io.SEEK_END)
    fastavro.writer(out, fastavro.parse_schema(ROUTING_SCHEMA), records)
    return out.getvalue()


def stored(tmp: Path) -> dict[str, object]:
    with sqlite3.connect(tmp / "s.db") as conn:
        return {
            "events": conn.execute("SELECT name FROM events ORDER BY id").fetchall(),
            "quarantine": conn.execute("SELECT reason FROM quarantine").fetchall(),
            "hub": conn.execute("SELECT category FROM hub_records").fetchall(),
            "offsets": dict(conn.execute("SELECT name, offset FROM streams")),
        }


async def test_avro_files_are_followed_block_by_block(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    (tmp_path / "routed" / "hub" / "0").mkdir(parents=True)
    path = tmp_path / "routed" / "hub" / "0" / "10.avro"
    first = avro_file([telemetry("d", 1), telemetry("d", 2), twin_change("d", 3)])
    second = grown(first, [telemetry("d", 4), telemetry("d", 5)])
    third = grown(second, [telemetry("d", 6)])
    session, store, _ = await start(tmp_path, Clock("2026-11-28T10:00:00Z"))
    session.settle_partial, session.give_up_partial = 0.05, 0.1
    try:
        path.write_bytes(first)
        (tmp_path / "logs" / "hub.json").write_bytes(
            orjson.dumps(
                {
                    "time": "2026-11-28T10:00:05Z",
                    "category": "Routes",
                    "operationName": "endpointUnhealthy",
                    "properties": {"deviceId": None, "endpointName": "sb"},
                }
            )
            + b"\n"
        )
        await until(lambda: session.evaluator.events == 3)  # type: ignore[union-attr]
        # The file grows: half of a block first. It waits, even past the give-up time of a
        # partial line: Avro files are written whole, a partial block is being copied.
        cut = len(first) + (len(second) - len(first)) // 2
        with path.open("ab") as f:
            f.write(second[len(first) : cut])
        await session.commit()
        await until(lambda: stored(tmp_path)["hub"] == [("Routes",)])
        got = stored(tmp_path)
        assert got["offsets"][str(path)] == len(first) and got["quarantine"] == []
        with path.open("ab") as f:
            f.write(second[cut:])
        await until(lambda: session.evaluator.events == 5)  # type: ignore[union-attr]
        await session.commit()
        assert stored(tmp_path)["offsets"][str(path)] == len(second)
    finally:
        await session.close()
        await store.close()
    # A restart resumes at the committed block, reading the header again.
    path.write_bytes(third)
    session, store, _ = await start(tmp_path, Clock("2026-11-28T10:00:00Z"))
    try:
        await until(lambda: len(stored(tmp_path)["events"]) == 6)  # type: ignore[arg-type]
        await session.commit()
        got = stored(tmp_path)
        assert (
            got["events"]
            == [("Telemetry",)] * 2 + [("twinChangeEvents/updateTwin",)] + [("Telemetry",)] * 3
        )
        assert got["offsets"][str(path)] == len(third) and got["quarantine"] == []
    finally:
        await session.close()
        await store.close()


async def test_json_encoded_routing_files_are_followed_too(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    (tmp_path / "routed").mkdir()
    path = tmp_path / "routed" / "00.json"
    session, store, _ = await start(tmp_path, Clock("2026-11-28T10:00:00Z"))
    try:
        path.write_bytes(
            b"".join(orjson.dumps(json_line(telemetry("d", s))) + b"\n" for s in (1, 2))
        )
        await until(lambda: session.evaluator.events == 2)  # type: ignore[union-attr]
    finally:
        await session.close()
        await store.close()
