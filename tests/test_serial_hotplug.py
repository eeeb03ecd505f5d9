"""Several boards at once: a glob port finds boards on real pseudo-terminals behind by-id style
links, follows them as they are unplugged and plugged back, and counts what their consoles say."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.alert import Alert
from engine.config import load_config
from engine.formats.serial import encode_frame
from engine.session import Session
from engine.simulators.pty import PtyEndpoint
from engine.store import Store

BOARDS = ("usb-Acme_Board_A0001-if00", "usb-Acme_Board_B0002-if00", "usb-Acme_Board_C0003-if02")


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def telemetry(board: str, first: int, n: int) -> bytes:
    """Getting-started telemetry lines, then a frame: its 0x00 releases the lines at once."""
    lines = b"".join(
        f'Telemetry message sent: {{"board":"{board}","seq":{i}}}.\r\n'.encode()
        for i in range(first, first + n)
    )
    frame = encode_frame({"Events": [{"Name": "Heartbeat", "Payload": []}]})
    return lines + frame


def write(endpoint: PtyEndpoint, data: bytes) -> None:
    endpoint.write(data)
    deadline = time.monotonic() + 5
    while endpoint._pending and time.monotonic() < deadline:  # the pty takes it all soon
        time.sleep(0.005)
        endpoint.service()
    assert not endpoint._pending


def boards_of(session: Session) -> dict[str, dict[str, Any]]:
    return session.status[0].extra.get("boards", {})


def d2c(session: Session, path: Path) -> int:
    """D2C events counted from the board at ``path`` (its stream, in this process)."""
    handle = session.streams.get(f"serial:{path}")
    return 0 if handle is None else handle.decoder.patterned


async def test_three_boards_one_unplugged_and_plugged_back(tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    links = [by_id / name for name in BOARDS]
    (tmp_path / "iotwatch.toml").write_text(
        f'[[sources]]\ntype = "serial"\nport = "{by_id}/usb-Acme_*"\n'
        '[sources.boards]\n"usb-Acme_Board_A*" = "bench-a"\n'
    )
    endpoints = [PtyEndpoint(link) for link in links]
    endpoints[0].open()
    endpoints[1].open()  # C comes later: a board plugged in while running
    store = await Store.open(tmp_path / "s.db")
    session = Session(
        load_config(tmp_path / "iotwatch.toml"), store, commit_interval=0.02, tick_interval=0.05
    )
    await session.start()
    try:

        def following(*paths: Path) -> bool:
            boards = boards_of(session)
            return all(boards.get(str(p), {}).get("state") == "following" for p in paths)

        await until(lambda: following(links[0], links[1]), "boards A and B")
        endpoints[2].open()
        await until(lambda: following(*links), "board C, plugged in while running")
        assert {p: b["device"] for p, b in boards_of(session).items()} == {
            str(links[0]): "bench-a",  # from [sources.boards]
            str(links[1]): "Acme_Board_B0002",  # from its by-id name
            str(links[2]): "Acme_Board_C0003",
        }
        assert session.status[0].streams == 3 and session.status[0].state == "following"

        for k, endpoint in enumerate(endpoints):
            write(endpoint, telemetry("ABC"[k], 0, 20))
        await until(lambda: [d2c(session, p) for p in links] == [20, 20, 20], "first lines")

        endpoints[1].close()  # B unplugged: its link disappears
        await until(
            lambda: boards_of(session)[str(links[1])].get("unplugged") is True, "B unplugged"
        )
        assert boards_of(session)[str(links[1])]["state"] == "reconnecting"
        for k in (0, 2):  # the others go on meanwhile
            write(endpoints[k], telemetry("ABC"[k], 20, 30))
        await until(lambda: [d2c(session, links[k]) for k in (0, 2)] == [50, 50], "A and C")
        await asyncio.sleep(0.3)  # a few looks at the glob without B
        assert boards_of(session)[str(links[1])]["unplugged"] is True  # still away

        endpoints[1].open()  # B plugged back: a new pty behind the same link
        await until(lambda: following(links[1]), "B back", timeout=5)
        write(endpoints[1], telemetry("B", 20, 7))
        await until(lambda: d2c(session, links[1]) == 27, "B's lines after the replug")
        assert [d2c(session, p) for p in links] == [50, 27, 50]
    finally:
        await session.close()
        await store.close()
        for endpoint in endpoints:
            endpoint.close()

    # Everything is stored, per device, on one stream per board (B's is the same after replug).
    with sqlite3.connect(tmp_path / "s.db") as conn:
        rows = conn.execute(
            "SELECT d.name, e.name, count(*), sum(e.weight) FROM events e "
            "JOIN devices d ON d.id = e.device GROUP BY d.name, e.name ORDER BY 1, 2"
        ).fetchall()
        streams = conn.execute(
            "SELECT name FROM streams WHERE kind = 'serial' ORDER BY name"
        ).fetchall()
    assert rows == [
        ("Acme_Board_B0002", "Heartbeat", 2, 2),
        ("Acme_Board_B0002", "d2c", 27, 27),
        ("Acme_Board_C0003", "Heartbeat", 2, 2),
        ("Acme_Board_C0003", "d2c", 50, 50),
        ("bench-a", "Heartbeat", 2, 2),
        ("bench-a", "d2c", 50, 50),
    ]
    assert [s for (s,) in streams] == sorted(str(p) for p in links)


async def test_a_board_printing_getting_started_text_raises_an_alert(tmp_path: Path) -> None:
    endpoint = PtyEndpoint(tmp_path / "usb-Board-if00")
    endpoint.open()
    (tmp_path / "iotwatch.toml").write_text(
        f'[[sources]]\ntype = "serial"\nport = "{endpoint.address}"\ndevice = "bench-1"\n'
        '[groups.default.rules.MqttD2CMessagesNotInAllowedRange]\nmax = 3\nwindow = "PT1M"\n'
    )
    store = await Store.open(tmp_path / "s.db")
    session = Session(load_config(tmp_path / "iotwatch.toml"), store, commit_interval=0.02)
    heard: list[tuple[str, Alert]] = []
    session.listeners.append(heard.extend)
    await session.start()
    try:
        await until(lambda: session.status[0].state == "following", "the board")
        write(endpoint, telemetry("x", 0, 5))
        await until(lambda: any(kind == "opened" for kind, _ in heard), "the alert")
        (alert,) = {id(a): a for _, a in heard}.values()
        assert (alert.rule.name, alert.device, alert.state) == (
            "MqttD2CMessagesNotInAllowedRange",
            "bench-1",
            "open",
        )
        assert session.status[0].extra["patterned"] == 5
    finally:
        await session.close()
        await store.close()
        endpoint.close()
