"""FileTail on real files: growth, rotation, truncation, deletion, resume, limits and odd paths.

Every scenario decodes what the tailer delivers the way the live session does (one JsonStream per
identity, a new one on ``restarted``) and checks that each written record arrives exactly once.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import orjson
import pytest

from engine.jsonstream import JsonStream
from engine.tail import Chunk, FileTail, fingerprint

FMT = "hub-events"


def rec(tag: str, i: int) -> bytes:
    obj = {
        "time": f"2026-11-28T10:{i // 60 % 60:02}:{i % 60:02}Z",
        "deviceId": f"{tag}-{i}",
        "op": "d2c",
        "protocol": "mqtt",
    }
    return orjson.dumps(obj) + b"\n"


def recs(tag: str, stop: int, start: int = 0) -> bytes:
    return b"".join(rec(tag, i) for i in range(start, stop))


def names(tag: str, stop: int, start: int = 0) -> list[str]:
    return [f"{tag}-{i}" for i in range(start, stop)]


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


class Sink:
    """Decodes chunks as the session does and checks that they are contiguous per stream."""

    def __init__(self) -> None:
        self.decoders: dict[str, JsonStream] = {}
        self.data: dict[str, bytearray] = {}
        self.devices: list[str] = []
        self.chunks: list[Chunk] = []

    def feed(self, chunks: list[Chunk]) -> list[Chunk]:
        for chunk in chunks:
            identity = chunk.stream.identity
            assert identity
            dec = self.decoders.get(identity)
            if dec is None or chunk.restarted:
                dec = self.decoders[identity] = JsonStream(FMT, chunk.offset)
                self.data[identity] = bytearray()
            assert chunk.offset == dec.offset + dec.pending, "a gap or an overlap"
            dec.feed(chunk.data)
            self.data[identity] += chunk.data
            events, bad = dec.take()
            assert bad == []
            self.devices.extend(ev.device for ev in events)
        self.chunks.extend(chunks)
        return chunks

    def run(self, tail: FileTail, polls: int = 1, budget: int = 1 << 22) -> list[Chunk]:
        out: list[Chunk] = []
        for _ in range(polls):
            out += self.feed(tail.poll(budget))
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def make(logs: Path, resume: dict[str, int] | None = None, **kw: object) -> FileTail:
    options: dict[str, object] = {"rescan_interval": 0, "drain_polls": 2, "drain_seconds": 0}
    options.update(kw)
    return FileTail(str(logs / "*.json"), resume, **options)  # type: ignore[arg-type]


def test_pieces_with_partial_lines_concatenate_to_the_file(logs: Path) -> None:
    blob = recs("a", 60)
    path = logs / "app.json"
    path.touch()
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(blob)), 40))
    sink = Sink()
    with make(logs) as tail:
        for start, stop in zip([0, *cuts], [*cuts, len(blob)], strict=True):
            append(path, blob[start:stop])
            sink.run(tail)
        (identity,) = sink.data
        assert bytes(sink.data[identity]) == blob
        assert sink.devices == names("a", 60)
        assert sink.chunks[-1].caught_up
        assert [s.state for s in tail.streams()] == ["caught-up"]


def test_a_file_is_pending_until_its_first_newline(logs: Path) -> None:
    path = logs / "app.json"
    path.touch()
    line = rec("a", 0)
    sink = Sink()
    with make(logs) as tail:
        assert sink.run(tail) == []
        append(path, line[:10])
        assert sink.run(tail) == []
        (pending,) = tail.streams()
        assert (pending.identity, pending.state, pending.size) == ("", "pending", 10)
        append(path, line[10:])
        (chunk,) = sink.run(tail)
        assert (chunk.offset, chunk.data, chunk.caught_up) == (0, line, True)
        assert chunk.stream.identity.split(":")[2] == str(len(line))


def test_rename_and_create_drains_the_old_file(logs: Path) -> None:
    """logrotate ``create``: the writer keeps writing to the renamed file for a while."""
    path = logs / "app.json"
    path.write_bytes(recs("a", 5))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        old_identity = first.stream.identity
        with path.open("ab") as writer:
            writer.write(recs("a", 7, 5))
            writer.flush()
            os.rename(path, logs / "app.json.1")
            writer.write(recs("a", 9, 7)[:-20])  # ends in a partial line
            writer.flush()
            path.write_bytes(recs("b", 3))
            sink.run(tail)
            states = {s.path: s.state for s in tail.streams()}
            assert states == {str(logs / "app.json.1"): "draining", str(path): "caught-up"}
            writer.write(recs("a", 9, 7)[-20:] + recs("a", 10, 9))
        sink.run(tail, polls=4)
        (released,) = tail.released()
        assert (released.identity, released.state) == (old_identity, "released")
        assert tail.released() == []
        assert [s.path for s in tail.streams()] == [str(path)]
        assert sorted(sink.devices) == sorted(names("a", 10) + names("b", 3))
        assert bytes(sink.data[old_identity]) == (logs / "app.json.1").read_bytes()
        assert tail.open_files == 1


def test_a_stream_renamed_within_the_glob_keeps_its_identity(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 5))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        os.rename(path, logs / "app-1.json")
        append(logs / "app-1.json", recs("a", 8, 5))
        path.write_bytes(recs("b", 2))
        sink.run(tail, polls=3)
        by_path = {s.path: s for s in tail.streams()}
        assert by_path[str(logs / "app-1.json")].identity == first.stream.identity
        assert by_path[str(logs / "app-1.json")].state == "caught-up"
        assert tail.released() == []
        assert sorted(sink.devices) == sorted(names("a", 8) + names("b", 2))


def test_copytruncate_restarts_with_a_new_identity(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 5))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        shutil.copyfile(path, logs / "app.json.1")  # outside the glob
        os.truncate(path, 0)
        append(path, rec("b", 0))
        (chunk,) = sink.run(tail)
        assert chunk.restarted and chunk.offset == 0 and chunk.data == rec("b", 0)
        assert chunk.stream.identity != first.stream.identity
        assert chunk.stream.previous == first.stream.identity
        assert [s.identity for s in tail.released()] == [first.stream.identity]
        append(path, recs("b", 3, 1))
        (chunk,) = sink.run(tail)
        assert not chunk.restarted
        assert sink.devices == names("a", 5) + names("b", 3)


def test_a_truncation_regrown_past_the_offset_is_seen_by_its_first_bytes(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 3))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        os.truncate(path, 0)
        append(path, recs("b", 10))
        (chunk,) = sink.run(tail)
        assert chunk.restarted and chunk.offset == 0
        assert chunk.stream.identity != first.stream.identity
        assert sink.devices == names("a", 3) + names("b", 10)


def test_truncation_to_empty_waits_and_then_restarts(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 3))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        os.truncate(path, 0)
        assert sink.run(tail) == []
        assert [s.identity for s in tail.released()] == [first.stream.identity]
        assert [s.state for s in tail.streams()] == ["pending"]
        append(path, rec("b", 0))
        (chunk,) = sink.run(tail)
        assert chunk.restarted and chunk.stream.previous == first.stream.identity
        assert sink.devices == [*names("a", 3), "b-0"]


def test_new_files_and_new_subdirectories_are_picked_up(logs: Path) -> None:
    sink = Sink()
    with FileTail(str(logs / "**" / "*.json"), rescan_interval=0) as tail:
        assert sink.run(tail) == []
        (logs / "top.json").write_bytes(recs("t", 2))
        sink.run(tail)
        deep = logs / "new" / "deeper"
        deep.mkdir(parents=True)
        (deep / "x.json").write_bytes(recs("x", 3))
        (deep / "x.txt").write_bytes(recs("n", 3))  # not matching
        sink.run(tail)
        assert sorted(s.path for s in tail.streams()) == [
            str(deep / "x.json"),
            str(logs / "top.json"),
        ]
        assert sorted(sink.devices) == sorted(names("t", 2) + names("x", 3))


def test_the_glob_is_evaluated_at_most_every_rescan_interval(logs: Path) -> None:
    clock = Clock()
    sink = Sink()
    with make(logs, rescan_interval=0.5, clock=clock) as tail:
        sink.run(tail)
        (logs / "a.json").write_bytes(recs("a", 1))
        clock.now += 0.4
        assert sink.run(tail) == []
        clock.now += 0.2
        assert len(sink.run(tail)) == 1
        append(logs / "a.json", recs("a", 3, 1))  # growth is seen on every poll
        clock.now += 0.1
        sink.run(tail)
        assert sink.devices == names("a", 3)


def test_resume_continues_at_the_committed_offset(logs: Path) -> None:
    path = logs / "app.json"
    blob = recs("a", 8)
    path.write_bytes(blob[:-25])  # the last line is partial
    first = Sink()
    with make(logs) as tail:
        first.run(tail)
        (identity,) = first.decoders
        committed = first.decoders[identity].resume_offset
        assert committed == len(recs("a", 7))
    append(path, blob[-25:] + recs("a", 10, 8))
    second = Sink()
    with make(logs, {identity: committed, "serial:/dev/ttyACM0": 5, "1:2:x:y": 0}) as tail:
        (chunk,) = second.run(tail)
        assert (chunk.stream.identity, chunk.offset, chunk.restarted) == (
            identity,
            committed,
            False,
        )
    assert first.devices + second.devices == names("a", 10)


def test_resume_beyond_the_end_is_a_truncation(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 6))
    with make(logs) as tail:
        (chunk,) = tail.poll()
        identity = chunk.stream.identity
    path.write_bytes(recs("a", 4))  # same first 256 bytes, shorter than the committed offset
    sink = Sink()
    with make(logs, {identity: len(recs("a", 6))}) as tail:
        (chunk,) = sink.run(tail)
        assert chunk.restarted and chunk.offset == 0
        assert chunk.stream.previous == identity
    assert sink.devices == names("a", 4)


def test_resume_matches_content_not_just_the_inode(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 6))
    st = path.stat()
    head = path.read_bytes()[:100]
    other = recs("z", 6)[:100]
    stale = f"{st.st_dev}:{st.st_ino}:100:{fingerprint(other)}"  # an earlier file at this inode
    sink = Sink()
    with make(logs, {stale: 300}) as tail:
        (chunk,) = sink.run(tail)
        assert chunk.offset == 0 and not chunk.restarted
        assert chunk.stream.identity != stale
    assert sink.devices == names("a", 6)
    # The device number may change across a reboot; inode and content still identify the file.
    moved = f"{st.st_dev + 1}:{st.st_ino}:100:{fingerprint(head)}"
    with make(logs, {moved: len(recs("a", 4))}) as tail:
        (chunk,) = tail.poll()
        assert (chunk.stream.identity, chunk.offset) == (moved, len(recs("a", 4)))


def _reuse_inode(directory: Path, inode: int, content: bytes, tries: int = 500) -> Path | None:
    """Create files in ``directory`` until one gets ``inode``; None if none does."""
    for i in range(tries):
        path = directory / f"new-{i}.json"
        path.write_bytes(content)
        if path.stat().st_ino == inode:
            return path
        path.unlink()
    return None


def test_inode_reuse_across_a_restart_is_a_new_stream(logs: Path) -> None:
    """A deleted file's inode given to a new file is a new stream, read from 0.

    Needs the filesystem to hand out the inode again: files are created and deleted up to 500
    times; the test is skipped only if the inode never comes back.
    """
    old = logs / "old.json"
    old.write_bytes(recs("a", 4))
    with make(logs) as tail:
        (chunk,) = tail.poll()
        identity, offset = chunk.stream.identity, chunk.offset + len(chunk.data)
    inode = old.stat().st_ino
    old.unlink()
    new = _reuse_inode(logs, inode, recs("b", 8))
    if new is None:
        pytest.skip("the filesystem did not reuse the inode")
    sink = Sink()
    with make(logs, {identity: offset}) as tail:
        (chunk,) = sink.run(tail)
        assert chunk.offset == 0 and chunk.stream.identity != identity
        assert chunk.stream.identity.split(":")[:2] == identity.split(":")[:2]
    assert sink.devices == names("b", 8)


def test_inode_reuse_while_running_is_a_new_stream(logs: Path) -> None:
    """As above, while the old file was closed to respect ``max_open`` (skipped likewise)."""
    old = logs / "old.json"
    old.write_bytes(recs("a", 4))
    sink = Sink()
    with make(logs, max_open=1) as tail:
        sink.run(tail)
        (logs / "other.json").write_bytes(recs("o", 2))
        sink.run(tail)  # opening other.json closes the caught-up old.json
        assert tail.open_files == 1
        (identity,) = [s.identity for s in tail.streams() if s.path == str(old)]
        inode = old.stat().st_ino
        old.unlink()
        new = _reuse_inode(logs, inode, recs("b", 8))
        if new is None:
            pytest.skip("the filesystem did not reuse the inode")
        sink.run(tail, polls=3)
        (stream,) = [s for s in tail.streams() if s.path == str(new)]
        assert stream.identity != identity and stream.previous == identity
        assert any(c.restarted for c in sink.chunks)
        assert tail.open_files <= 1
    assert sorted(sink.devices) == sorted(names("a", 4) + names("o", 2) + names("b", 8))


def test_a_deleted_file_is_drained_then_released(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 3))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        with path.open("ab") as writer:
            writer.write(recs("a", 5, 3))
            writer.flush()
            path.unlink()
            sink.run(tail)
            assert [s.state for s in tail.streams()] == ["draining"]
            writer.write(recs("a", 6, 5))
        sink.run(tail)
        assert tail.released() == []
        sink.run(tail, polls=2)
        assert [s.identity for s in tail.released()] == [first.stream.identity]
        assert tail.streams() == [] and tail.open_files == 0
    assert sink.devices == names("a", 6)


def test_draining_waits_for_the_quiet_period(logs: Path) -> None:
    clock = Clock()
    path = logs / "app.json"
    path.write_bytes(recs("a", 3))
    with make(logs, drain_seconds=1.0, clock=clock) as tail:
        tail.poll()
        os.rename(path, logs / "app.old")
        for _ in range(5):
            clock.now += 0.1
            tail.poll()
        assert tail.released() == []
        clock.now += 1.0
        tail.poll()
        assert len(tail.released()) == 1


def test_the_budget_is_shared_fairly(logs: Path) -> None:
    files = [logs / f"f{i:02}.json" for i in range(20)]
    for i, path in enumerate(files):
        path.write_bytes(recs(f"f{i}", 600))  # about 48 KiB each
    sink = Sink()
    with make(logs, chunk_size=16 * 1024) as tail:
        chunks = sink.feed(tail.poll(40 * 1024))
        assert sum(len(c.data) for c in chunks) <= 40 * 1024
        served = {c.stream.path for c in chunks if c.data}
        assert len(served) == 10  # equal shares of 4 KiB, the smallest read
        chunks = sink.feed(tail.poll(40 * 1024))
        assert served.isdisjoint(c.stream.path for c in chunks if c.data)
        for _ in range(200):
            chunks = sink.feed(tail.poll(40 * 1024))
            assert sum(len(c.data) for c in chunks) <= 40 * 1024
            if all(s.state == "caught-up" for s in tail.streams()):
                break
    for path in files:
        identity = next(s.identity for s in tail.streams() if s.path == str(path))
        assert bytes(sink.data[identity]) == path.read_bytes()
    assert sorted(sink.devices) == sorted(d for i in range(20) for d in names(f"f{i}", 600))


def test_a_large_budget_is_split_evenly_and_reads_are_bounded(logs: Path) -> None:
    for i in range(4):
        (logs / f"f{i}.json").write_bytes(recs(f"f{i}", 1000))  # about 80 KiB each
    with make(logs, chunk_size=16 * 1024) as tail:
        chunks = tail.poll(32 * 1024)
        assert sorted(len(c.data) for c in chunks) == [8192] * 4
        chunks = tail.poll(10 * 1024 * 1024)
        assert all(c.caught_up for c in chunks)


def test_a_short_file_keeps_its_identity_as_it_grows(logs: Path) -> None:
    path = logs / "app.json"
    line = rec("a", 0)
    path.write_bytes(line)
    sink = Sink()
    with make(logs, fingerprint_size=256) as tail:
        (chunk,) = sink.run(tail)
        identity = chunk.stream.identity
        assert identity.split(":")[2:] == [str(len(line)), fingerprint(line)]
        append(path, recs("a", 6, 1))  # now past the fingerprint size
        assert path.stat().st_size > 256
        (chunk,) = sink.run(tail)
        assert chunk.stream.identity == identity
        committed = sink.decoders[identity].resume_offset
    append(path, recs("a", 8, 6))
    with make(logs, {identity: committed}) as tail:
        (chunk,) = sink.run(tail)
        assert (chunk.stream.identity, chunk.offset) == (identity, committed)
    assert sink.devices == names("a", 8)


def test_descriptors_stay_under_max_open(logs: Path) -> None:
    files = [logs / f"f{i}.json" for i in range(8)]
    sink = Sink()
    with make(logs, max_open=3) as tail:
        for round_ in range(3):
            for i, path in enumerate(files):
                append(path, rec(f"f{i}", round_))
            for _ in range(6):
                sink.run(tail)
                assert tail.open_files <= 3
        assert all(s.state == "caught-up" for s in tail.streams())
    assert sorted(sink.devices) == sorted(d for i in range(8) for d in names(f"f{i}", 3))


def test_a_rotation_while_stopped_is_drained_on_restart(logs: Path) -> None:
    """Stopped, then logrotate ran: the rest of the old stream is in the rotated file."""
    path = logs / "app.json"
    path.write_bytes(recs("a", 3))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)
        identity = first.stream.identity
    committed = sink.decoders[identity].resume_offset
    append(path, recs("a", 6, 3))
    os.rename(path, logs / "app.json.1")
    path.write_bytes(recs("b", 2))
    sink.decoders.clear()
    with make(logs, {identity: committed}) as tail:
        chunks = sink.run(tail)
        old = next(c for c in chunks if c.stream.identity == identity)
        assert old.offset == committed and old.stream.state == "draining"
        assert old.stream.path == str(logs / "app.json.1")
        sink.run(tail, polls=2)
        assert [s.identity for s in tail.released()] == [identity]
    assert sorted(sink.devices) == sorted(names("a", 6) + names("b", 2))


def test_a_closed_file_rotated_away_is_found_beside_the_glob(logs: Path) -> None:
    """With ``max_open`` reached, a caught-up file is closed; renamed away meanwhile, it is
    found by inode in its directory and drained."""
    sink = Sink()
    with make(logs, max_open=1) as tail:
        (logs / "a.json").write_bytes(recs("a", 2))
        sink.run(tail)
        (logs / "b.json").write_bytes(recs("b", 2))
        sink.run(tail)  # closes a.json
        append(logs / "a.json", recs("a", 4, 2))
        os.rename(logs / "a.json", logs / "a.json.1")
        sink.run(tail, polls=4)
        assert len(tail.released()) == 1
        assert tail.open_files <= 1
    assert sorted(sink.devices) == sorted(names("a", 4) + names("b", 2))


def test_a_pending_file_rotated_away_is_drained_from_the_start(logs: Path) -> None:
    path = logs / "app.json"
    line = rec("a", 0)
    path.write_bytes(line[:20])
    sink = Sink()
    with make(logs) as tail:
        assert sink.run(tail) == []
        os.rename(path, logs / "app.json.1")
        append(logs / "app.json.1", line[20:])
        (chunk,) = sink.run(tail)
        assert (chunk.offset, chunk.data, chunk.stream.state) == (0, line, "draining")
        sink.run(tail, polls=2)
        assert len(tail.released()) == 1
    assert sink.devices == ["a-0"]


def test_a_file_waiting_for_a_descriptor_is_not_caught_up(logs: Path) -> None:
    (logs / "a.json").write_bytes(recs("a", 200))
    sink = Sink()
    with make(logs, max_open=1, chunk_size=4096) as tail:
        sink.feed(tail.poll(4096))
        (logs / "b.json").write_bytes(recs("b", 2))
        sink.feed(tail.poll(4096))  # a.json is not caught up: it keeps its descriptor
        waiting = [s for s in tail.streams() if s.state == "pending"]
        assert [(Path(s.path).name, s.error) for s in waiting] == [
            ("b.json", "waiting for a descriptor")
        ]
        assert not tail.caught_up
        for _ in range(100):
            sink.feed(tail.poll(4096))
            if tail.caught_up:
                break
        assert tail.caught_up
    assert sorted(sink.devices) == sorted(names("a", 200) + names("b", 2))


def test_a_deletion_is_seen_between_scans(logs: Path) -> None:
    clock = Clock()
    path = logs / "app.json"
    path.write_bytes(recs("a", 2))
    with make(logs, rescan_interval=60, clock=clock) as tail:
        tail.poll()
        path.unlink()
        clock.now += 1
        tail.poll()
        assert [s.state for s in tail.streams()] == ["draining"]
        tail.poll()
        assert len(tail.released()) == 1


def test_a_closed_file_that_is_deleted_is_released(logs: Path) -> None:
    with make(logs, max_open=1) as tail:
        (logs / "a.json").write_bytes(recs("a", 2))
        (first,) = tail.poll()
        (logs / "b.json").write_bytes(recs("b", 2))
        tail.poll()  # closes a.json
        (logs / "a.json").unlink()
        tail.poll()
        assert [s.identity for s in tail.released()] == [first.stream.identity]
        assert [Path(s.path).name for s in tail.streams()] == ["b.json"]


def test_truncated_to_the_same_first_bytes_keeps_the_identity(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(rec("a", 0))
    sink = Sink()
    with make(logs) as tail:
        (first,) = sink.run(tail)  # identified by its one line
        append(path, recs("a", 4, 1))
        sink.run(tail)
        os.truncate(path, 0)
        append(path, rec("a", 0))
        (chunk,) = sink.run(tail)
        assert chunk.restarted and chunk.offset == 0
        assert chunk.stream.identity == chunk.stream.previous == first.stream.identity
        assert tail.released() == []
    assert sink.devices == [*names("a", 4), "a-0"]


def test_an_empty_file_that_left_the_glob_is_forgotten_after_the_drain_period(
    logs: Path,
) -> None:
    path = logs / "app.json"
    path.touch()
    with make(logs) as tail:
        tail.poll()
        os.rename(path, logs / "app.json.1")
        tail.poll()
        assert [(Path(s.path).name, s.state) for s in tail.streams()] == [("app.json.1", "pending")]
        for _ in range(3):
            tail.poll()
        assert tail.streams() == [] and tail.caught_up


def test_links_to_one_file_are_one_stream(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 3))
    os.link(path, logs / "hard.json")
    os.symlink("app.json", logs / "soft.json")
    sink = Sink()
    with make(logs) as tail:
        sink.run(tail, polls=2)
        assert len(tail.streams()) == 1
    assert sink.devices == names("a", 3)


def test_odd_paths_never_raise(logs: Path) -> None:
    (logs / "dir.json").mkdir()
    os.mkfifo(logs / "fifo.json")
    os.symlink("loop.json", logs / "loop.json")
    os.symlink("missing", logs / "dangling.json")
    garbage = bytes(random.Random(3).randrange(256) for _ in range(5000))
    (logs / "garbage.json").write_bytes(garbage)
    (logs / "good.json").write_bytes(recs("g", 2))
    chunks: list[Chunk] = []
    with make(logs) as tail:
        for _ in range(3):
            chunks += tail.poll()
        states = {Path(s.path).name: (s.state, s.error) for s in tail.streams()}
    assert states["fifo.json"] == ("error", "not a regular file")
    assert states["loop.json"][0] == "error" and states["loop.json"][1]
    assert states["garbage.json"] == ("caught-up", None)
    assert states["good.json"] == ("caught-up", None)
    assert "dir.json" not in states and "dangling.json" not in states
    delivered = b"".join(c.data for c in chunks if c.stream.path.endswith("garbage.json"))
    assert delivered == garbage


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_an_error_until_it_is_readable(logs: Path) -> None:
    path = logs / "app.json"
    path.write_bytes(recs("a", 2))
    path.chmod(0)
    sink = Sink()
    with make(logs) as tail:
        assert sink.run(tail) == []
        (stream,) = tail.streams()
        assert (stream.identity, stream.state) == ("", "error")
        assert stream.error == "Permission denied"
        path.chmod(0o644)
        sink.run(tail)
    assert sink.devices == names("a", 2)


def test_closed_tail_returns_nothing(logs: Path) -> None:
    (logs / "a.json").write_bytes(recs("a", 2))
    tail = make(logs)
    assert len(tail.poll()) == 1
    tail.close()
    assert tail.open_files == 0
    (logs / "b.json").write_bytes(recs("b", 2))
    assert tail.poll() == []


class _Writer:
    """Writes one log as a program would, rotated, truncated or deleted at random."""

    def __init__(self, logs: Path, name: str, rng: random.Random) -> None:
        self.logs, self.name, self.rng = logs, name, rng
        self.path = logs / f"{name}.json"
        self.file = self.path.open("ab")
        self.count = 0
        self.rest = b""  # the unwritten part of the record being written
        self.rotations = 0

    def write(self) -> None:
        if not self.rest:
            self.rest = rec(self.name, self.count)
            self.count += 1
        cut = self.rng.randrange(1, len(self.rest) + 1)
        self.file.write(self.rest[:cut])
        self.file.flush()
        self.rest = self.rest[cut:]

    def finish_line(self) -> None:
        if self.rest:
            self.file.write(self.rest)
            self.file.flush()
            self.rest = b""

    def rotate(self) -> None:
        """Rename away (out of the glob or within it) and create anew; the old handle writes on."""
        self.rotations += 1
        suffix = ".old" if self.rng.random() < 0.5 else "-old.json"
        os.rename(self.path, self.logs / f"{self.name}.{self.rotations}{suffix}")
        for _ in range(self.rng.randrange(3)):
            self.write()
        self.finish_line()
        self.file.close()
        self.file = self.path.open("ab")

    def delete(self) -> None:
        self.path.unlink()
        self.finish_line()
        self.file.close()
        self.file = self.path.open("ab")

    def truncate(self) -> None:
        """copytruncate; the copy is not kept, so the caller lets the tail read everything first."""
        self.finish_line()
        os.truncate(self.path, 0)


@pytest.mark.parametrize("seed", range(10))
def test_random_histories_deliver_every_record_once(tmp_path: Path, seed: int) -> None:
    """Appends in pieces, rotations (out of and within the glob), copytruncate, deletion and
    restarts from committed offsets, interleaved at random: every record arrives exactly once.

    What no tailer can read is avoided: a file deleted before it was read to its end, and, with
    a tiny ``max_open``, a restart while a file outside the glob still waits for a descriptor.
    """
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    writers = [_Writer(logs, f"w{i}", rng) for i in range(3)]
    sink = Sink()
    committed: dict[str, int] = {}
    max_open = 64

    def poll(tail: FileTail) -> None:
        for chunk in sink.feed(tail.poll(rng.choice([300, 4096, 1 << 20]))):
            committed[chunk.stream.identity] = sink.decoders[chunk.stream.identity].resume_offset

    def catch_up(tail: FileTail) -> None:
        poll(tail)
        for _ in range(1000):
            if tail.caught_up:
                return
            poll(tail)
        raise AssertionError("never caught up")

    def new_tail() -> FileTail:
        nonlocal max_open
        sink.decoders.clear()  # a new process: decoders start from the committed offsets
        max_open = rng.choice([2, 64])
        return make(
            logs,
            dict(committed),
            chunk_size=rng.choice([64, 1024]),
            fingerprint_size=rng.choice([64, 256]),
            max_open=max_open,
        )

    tail = new_tail()
    for _ in range(600):
        writer = rng.choice(writers)
        action = rng.random()
        if action < 0.7:
            writer.write()
        elif action < 0.8:
            poll(tail)
        elif action < 0.85:
            poll(tail)  # the file has been seen
            writer.rotate()
        elif action < 0.88:
            writer.finish_line()
            catch_up(tail)
            writer.delete()
        elif action < 0.92:
            writer.finish_line()
            catch_up(tail)
            writer.truncate()
        elif action < 0.95:
            if max_open > 2:
                poll(tail)
            else:
                catch_up(tail)
            tail.close()  # a restart: what was not committed is decoded again
            tail = new_tail()
        assert tail.open_files <= max_open
    for writer in writers:
        writer.finish_line()
        writer.file.close()
    catch_up(tail)
    tail.close()
    written = [d for w in writers for d in names(w.name, w.count)]
    assert sorted(sink.devices) == sorted(written)
