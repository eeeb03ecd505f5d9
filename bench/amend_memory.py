"""Memory of the state a live session keeps for amendments (contract v2), over simulated days.

Drives the live (incremental) evaluator in-process: D devices, all 16 range rules at one window
size, ``horizon`` P1D, a wall clock that advances one window per step over two simulated days,
steady events with current times plus a share of late ones (hours late, within the horizon: each
amends a judged window). Every simulated hour it prints the process's RSS and the judged counts
kept per (rule, device). The judged counts must stop growing once the horizon is behind the
wall clock, and RSS with them: the report gives the RSS slope over the second day against the
first day's. A benchmark, not a test; exits non-zero only when something broke.

Usage: ``python bench/amend_memory.py [--devices 10000] [--days 2] [--events-per-step 20000]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Sequence

import psutil

from engine.catalogue import RANGE_RULES, UNAUTHORIZED
from engine.config import parse_config
from engine.evaluator import Evaluator
from engine.event import new_event
from engine.timestamps import US

START = 1_795_824_000 * US  # 2026-11-28T00:00:00Z


def config_text(window: str, horizon: str, low: int) -> str:
    lines = ["[engine]", 'lateness = "PT1M"', f'horizon = "{horizon}"', ""]
    lines += ["[[sources]]", 'type = "hub-events"', 'path = "x"', ""]
    lines += ["[[sources]]", 'type = "security-messages"', 'path = "y"', ""]
    for rule in RANGE_RULES:
        lines += [f"[groups.default.rules.{rule.name}]", f"min = {low}", "max = 1000000"]
        lines += [f'window = "{window}"', ""]
    return "\n".join(lines)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=10_000, help="devices (10000)")
    p.add_argument("--days", type=float, default=2.0, help="simulated days (2)")
    p.add_argument("--window", default="PT15M", help="window of every range rule (PT15M)")
    p.add_argument("--horizon", default="P1D", help="[engine] horizon (P1D)")
    p.add_argument("--events-per-step", type=int, default=20_000, help="events per window (20000)")
    p.add_argument("--late", type=float, default=0.01, help="share of late events (0.01)")
    p.add_argument(
        "--min",
        type=int,
        default=0,
        help="min of every rule (0); 1 makes every empty window an open below-min alert",
    )
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    config = parse_config(
        __import__("tomllib").loads(config_text(args.window, args.horizon, args.min)), "b"
    )
    size = config.group("default").range_rules[RANGE_RULES[0].name].window * US
    horizon = config.horizon * US
    ev = Evaluator(config, incremental=True)
    ev.configure_sources(config)
    hub = ev.add_stream("hub", "hub-events")
    agent = ev.add_stream("agent", "security-messages")
    hub.holding = agent.holding = False
    rng = random.Random(args.seed)
    devices = [f"dev-{i:05d}" for i in range(args.devices)]
    rules = [r.id for r in RANGE_RULES if r.id != UNAUTHORIZED]
    agent_rules = {r.id for r in RANGE_RULES if r.source == "Agent"}

    def send(now: int, n: int) -> None:
        hub_events, agent_events = [], []
        for _ in range(n):
            device = devices[rng.randrange(len(devices))]
            rule = rules[rng.randrange(len(rules))]
            t = now - rng.randrange(size)
            if rng.random() < args.late:
                t -= rng.randrange(horizon // 2)  # hours late: amends a judged window
            event = new_event((t, device, "e", rule, rule % 5 == 0, 0, None, 1, False, 0))
            (agent_events if rule in agent_rules else hub_events).append(event)
        ev.process(hub, hub_events)
        ev.process(agent, agent_events)

    gc.collect()
    base = rss_mb()
    t0 = time.monotonic()
    wall = START
    ev.advance(wall)
    # Every device is known at once: all its tracks exist from the first step.
    ev.process(
        hub, [new_event((wall, d, "e", rules[0], False, 0, None, 1, False, 0)) for d in devices]
    )
    steps = int(args.days * 86400 * US // size)
    per_hour = max(1, 3600 * US // size)
    samples: list[tuple[float, float]] = []
    print(
        f"{args.devices:,} devices x {len(RANGE_RULES)} range rules at {args.window}, horizon "
        f"{args.horizon}, {args.events_per_step:,} events per window ({args.late:.0%} late)"
    )
    print(f"  RSS before the session: {base:.0f} MB")
    for step in range(1, steps + 1):
        wall += size
        send(wall, args.events_per_step)
        ev.advance(wall + 61 * US)
        if step % per_hour == 0:
            hours = step * size / (3600 * US)
            tracks = [t for d in ev.devices.values() for t in d.tracks.values()]
            kept = statistics.fmean(len(t.judged) for t in tracks)
            rss = rss_mb()
            samples.append((hours, rss))
            if hours % 4 == 0:
                print(
                    f"  {hours:5.0f} h: RSS {rss:6.0f} MB, judged counts kept per track"
                    f" {kept:5.1f} (max {max(len(t.judged) for t in tracks)}),"
                    f" {len(tracks):,} tracks, {ev.events:,} events, {len(ev.book.amendments):,}"
                    f" amendments, {time.monotonic() - t0:.0f} s",
                    flush=True,
                )
            ev.book.take_changes()  # a session's commit takes these; keep the bench honest
            ev.book.take_amendments()
    bound = config.horizon * US // size + 2 + 16 + 12
    tracks = [t for d in ev.devices.values() for t in d.tracks.values()]
    worst = max(len(t.judged) for t in tracks)
    day = 24.0
    first = [(h, r) for h, r in samples if h <= day]
    second = [(h, r) for h, r in samples if h > day + 1]
    slope1 = statistics.linear_regression(*zip(*first, strict=True)).slope if len(first) > 2 else 0
    slope2 = (
        statistics.linear_regression(*zip(*second, strict=True)).slope if len(second) > 2 else 0
    )
    print()
    print(
        f"judged counts per track   max {worst} (bound: horizon/window + trim step + history = {bound})"
    )
    print(f"RSS at the end            {samples[-1][1]:.0f} MB (target < 400 MB)")
    print(f"RSS slope, first day      {slope1:+.2f} MB per simulated hour")
    print(
        f"RSS slope, after a day    {slope2:+.2f} MB per simulated hour (flat: the horizon bounds it)"
    )
    broken = []
    if worst > bound:
        broken.append(f"a track keeps {worst} judged counts, more than {bound}")
    for line in broken:
        print(f"BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
