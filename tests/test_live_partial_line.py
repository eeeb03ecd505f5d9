"""A live stream's last line without a newline (docs/live.md, "Partial last lines"): once its file
has been idle a moment, a line that is a whole record is counted; after a long idle time whatever
is held is decoded (a broken line quarantined); offsets move only with what is committed, so
nothing is lost or counted twice across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.jsonstream import JsonStream
from tests.conftest import hub_event
from tests.test_session import CONFIG, Clock, start, until

T = "2026-11-28T10:00:0"


def rec(second: int, device: str = "d1") -> bytes:
    return orjson.dumps(hub_event(f"{T}{second}Z", device))


# --- the decoder ------------------------------------------------------------------------------


def test_settle_decodes_a_whole_record_without_newline_once() -> None:
    stream = JsonStream("hub-events")
    stream.feed(rec(1) + b"\n" + rec(2))
    assert (len(stream.events), stream.offset, stream.holding) == (1, len(rec(1)) + 1, True)
    stream.settle()
    assert len(stream.events) == 2 and not stream.holding
    assert stream.offset == stream.resume_offset == 2 * len(rec(1)) + 1
    stream.feed(b"\r\n" + rec(3) + b"\n")  # the newline comes after all: a blank line
    stream.finish()
    whole = JsonStream("hub-events")
    whole.feed(rec(1) + b"\n" + rec(2) + b"\r\n" + rec(3) + b"\n")
    assert stream.events == whole.events and len(whole.events) == 3
    assert stream.bad == [] and stream.records == 3


def test_settle_leaves_a_broken_line_until_it_gives_up() -> None:
    stream = JsonStream("hub-events")
    stream.feed(rec(1) + b"\n" + rec(2)[:20])
    stream.settle()
    assert (len(stream.events), stream.pending) == (1, 20)
    assert stream.resume_offset == len(rec(1)) + 1
    stream.settle(give_up=True)
    assert len(stream.events) == 1 and not stream.holding
    assert [b.reason for b in stream.bad] == ["unterminated JSON document"]
    assert stream.offset == len(rec(1)) + 1 + 20
    stream.feed(rec(2)[20:] + b"\n" + rec(3) + b"\n")  # the rest of the line, at last
    assert len(stream.events) == 2 and len(stream.bad) == 2  # the rest is bad JSON


def test_settle_gives_up_on_text_and_on_an_open_document() -> None:
    stream = JsonStream("security-messages")
    stream.feed(b"not json")
    stream.settle()
    assert stream.pending == 8
    stream.settle(give_up=True)
    assert [b.reason[:9] for b in stream.bad] == ["bad JSON:"]
    stream = JsonStream("security-messages")
    stream.feed(b'{\n  "deviceId": "d",\n')
    stream.settle()
    assert stream.holding and stream.resume_offset == 0
    stream.settle(give_up=True)
    assert [b.reason for b in stream.bad] == ["unterminated JSON document"]
    assert stream.resume_offset == stream.offset == 21


def test_settle_decodes_a_document_whose_closing_line_has_no_newline() -> None:
    message = {"deviceId": "d", "body": {"Events": [{"Name": "Heartbeat", "Payload": []}]}}
    message["body"]["Events"][0]["TimestampUTC"] = f"{T}1Z"
    text = orjson.dumps(message, option=orjson.OPT_INDENT_2)
    assert text.endswith(b"\n}")
    stream = JsonStream("security-messages")
    stream.feed(text)
    assert stream.holding and stream.events == []
    stream.settle()
    assert len(stream.events) == 1 and not stream.holding and stream.offset == len(text)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=8),
    st.data(),
)
def test_any_split_with_settles_gives_the_whole_file_once(
    seconds: list[int], data: st.DataObject
) -> None:
    """Settling (without giving up) at any moment never changes what a file decodes to: a prefix
    of a record is never a whole record, and a whole record cannot become another one."""
    text = b"".join(rec(s) + b"\n" for s in seconds)
    pretty = orjson.dumps(
        {
            "deviceId": "d",
            "body": {"Events": [{"Name": "Heartbeat", "Payload": [], "TimestampUTC": f"{T}1Z"}]},
        },
        option=orjson.OPT_INDENT_2,
    )
    fmt = data.draw(st.sampled_from(["hub-events", "security-messages"]))
    if fmt == "security-messages":
        text = b"".join(pretty + b"\n" for _ in seconds)
    whole = JsonStream(fmt)
    whole.feed(text)
    whole.finish()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    stream = JsonStream(fmt)
    start = 0
    for cut in [*cuts, len(text)]:
        stream.feed(text[start:cut])
        start = cut
        if data.draw(st.booleans()):
            stream.settle()
    stream.finish()
    assert stream.events == whole.events
    assert stream.bad == whole.bad == []
    assert stream.records == whole.records


# --- live -------------------------------------------------------------------------------------


def stored(tmp: Path) -> tuple[int, list[str], int]:
    with sqlite3.connect(tmp / "s.db") as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        reasons = [r for (r,) in conn.execute("SELECT reason FROM quarantine ORDER BY id")]
        ((offset,),) = conn.execute("SELECT offset FROM streams").fetchall()
    return events, reasons, offset


async def test_idle_last_line_without_newline_is_counted_once(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    session, store, _heard = await start(tmp_path, Clock(f"{T}0Z"))
    session.settle_partial = 0.2
    path = tmp_path / "logs" / "a.jsonl"
    try:
        path.write_bytes(rec(1) + b"\n" + rec(2))
        await until(lambda: session.evaluator.events == 2)  # type: ignore[union-attr]
        await session.commit()
        assert stored(tmp_path) == (2, [], path.stat().st_size)
        with path.open("ab") as f:  # the newline after all, and more records
            f.write(b"\n" + rec(3) + b"\n")
        await until(lambda: session.evaluator.events == 3)  # type: ignore[union-attr]
        await session.commit()
        assert stored(tmp_path) == (3, [], path.stat().st_size)
    finally:
        await session.close()
        await store.close()
    # A restart resumes after what was committed: nothing twice.
    session, store, _heard = await start(tmp_path, Clock(f"{T}0Z"))
    try:
        with path.open("ab") as f:
            f.write(rec(4) + b"\n")
        await until(lambda: stored(tmp_path)[0] == 4)
        assert stored(tmp_path) == (4, [], path.stat().st_size)
    finally:
        await session.close()
        await store.close()


async def test_broken_last_line_is_quarantined_when_its_file_stays_idle(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    session, store, _heard = await start(tmp_path, Clock(f"{T}0Z"))
    session.settle_partial, session.give_up_partial = 0.1, 0.6
    path = tmp_path / "logs" / "a.jsonl"
    try:
        path.write_bytes(rec(1) + b"\n" + rec(2)[:25])
        await until(lambda: session.evaluator.events == 1)  # type: ignore[union-attr]
        await session.commit()
        assert stored(tmp_path) == (1, [], len(rec(1)) + 1)  # held while it may still grow
        await until(lambda: stored(tmp_path)[1] != [])
        assert stored(tmp_path) == (1, ["unterminated JSON document"], path.stat().st_size)
        with path.open("ab") as f:
            f.write(b"\n" + rec(3) + b"\n")
        await until(lambda: stored(tmp_path)[0] == 2)
        assert stored(tmp_path) == (2, ["unterminated JSON document"], path.stat().st_size)
    finally:
        await session.close()
        await store.close()


async def test_partial_line_completed_while_the_file_is_busy_is_one_record(tmp_path: Path) -> None:
    (tmp_path / "iotwatch.toml").write_text(CONFIG)
    session, store, _heard = await start(tmp_path, Clock(f"{T}0Z"))
    session.settle_partial, session.give_up_partial = 2.0, 3.0
    path = tmp_path / "logs" / "a.jsonl"
    try:
        path.write_bytes(rec(1) + b"\n" + rec(2)[:25])
        await until(lambda: session.evaluator.events == 1)  # type: ignore[union-attr]
        with path.open("ab") as f:
            f.write(rec(2)[25:] + b"\n")
        await until(lambda: session.evaluator.events == 2)  # type: ignore[union-attr]
        await session.commit()
        assert stored(tmp_path) == (2, [], path.stat().st_size)
    finally:
        await session.close()
        await store.close()
