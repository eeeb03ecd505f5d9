"""``iotwatch simulate board|fleet`` and ``iotwatch ports``.

Wiring: ``add_parsers(subparsers)`` adds the ``simulate`` and ``ports`` commands to the
``iotwatch`` parser; ``run(args)`` runs whichever of them ``args.command`` names.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator

from engine.simulators.fleet import ANOMALIES, FILES, FleetRunner, FleetSimulator, wall_clock
from engine.simulators.pty import board_server

COMMANDS = ("simulate", "ports")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    if text.strip() in ("0", "0.0"):
        return 0.0
    return _positive_float(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _tcp_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return value


def _anomalies(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name not in ANOMALIES:
            raise argparse.ArgumentTypeError(
                f"unknown anomaly {name!r} (known: {','.join(ANOMALIES)})"
            )
    return names


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate board``, ``simulate fleet`` and ``ports`` to ``subparsers``."""
    sp = subparsers.add_parser(
        "simulate", help="simulated devices: a serial board, or a fleet's log files"
    )
    ssub = sp.add_subparsers(
        dest="simulate_target", metavar="{board,fleet}", required=True, parser_class=type(sp)
    )

    b = ssub.add_parser(
        "board",
        help="an Azure RTOS board on a pseudo-terminal or a TCP port, in real time",
        description="Run a simulated board and write its UART bytes to a new pseudo-terminal "
        "(default) or to every client of a TCP server on 127.0.0.1. The first line on stdout is "
        "what to open: 'pty PATH', or 'socket://127.0.0.1:PORT'. Stops on Ctrl-C or SIGTERM.",
    )
    where = b.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="a pseudo-terminal (the default)")
    where.add_argument(
        "--tcp", type=_tcp_port, metavar="PORT", help="a TCP server on 127.0.0.1:PORT (0: any)"
    )
    b.add_argument("--link", metavar="PATH", help="with a pty: a stable symlink to it at PATH")
    b.add_argument(
        "--device", metavar="ID", help="the DeviceId in its frames (default: frames carry none)"
    )
    b.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    b.add_argument(
        "--clock",
        choices=("rtc", "none"),
        default="rtc",
        help="rtc: event times are real; none: the board has no clock (uptime, or no time)",
    )
    b.add_argument(
        "--speed", type=_positive_float, default=1.0, metavar="X", help="board time runs X times"
    )
    b.add_argument(
        "--seconds", type=_positive_float, metavar="S", help="stop after S seconds of wall time"
    )

    f = ssub.add_parser(
        "fleet",
        help="append a fleet's IoT Hub logs, hub events and security messages, in real time",
        description=f"Append live traffic of N devices to DIR/{FILES[0]}, DIR/{FILES[1]} and "
        f"DIR/{FILES[2]}, with the chosen anomalies from --anomaly-after on. Stops on Ctrl-C or "
        "SIGTERM.",
    )
    f.add_argument("directory", metavar="DIR", help="the folder to write the log files in")
    f.add_argument("--devices", type=_positive_int, default=10, metavar="N", help="default 10")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument(
        "--rate",
        type=_non_negative_float,
        default=20.0,
        metavar="EVENTS_PER_S",
        help="normal records per second over the fleet (default 20)",
    )
    f.add_argument(
        "--seconds", type=_positive_float, metavar="S", help="stop after S seconds of wall time"
    )
    f.add_argument(
        "--anomalies",
        type=_anomalies,
        default=(),
        metavar="LIST",
        help=f"comma-separated, from: {','.join(ANOMALIES)}",
    )
    f.add_argument(
        "--anomaly-after",
        type=_non_negative_float,
        default=30.0,
        metavar="S",
        help="anomalies start S seconds in (default 30)",
    )
    f.add_argument(
        "--partial", action="store_true", help="split lines across writes (to exercise tailers)"
    )

    subparsers.add_parser(
        "ports", help="list serial ports", description="List this machine's serial ports."
    )


def run(args: argparse.Namespace) -> int:
    """Run ``simulate board``, ``simulate fleet`` or ``ports``; the exit status."""
    if args.command == "ports":
        return cmd_ports(args)
    if args.simulate_target == "board":
        return cmd_board(args)
    return cmd_fleet(args)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (main thread only) instead of raising."""
    handler: Callable[[int, object], None] = lambda _signum, _frame: stop.set()  # noqa: E731
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: signals stay as they are
            break
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _fail(message: str) -> int:
    print(f"iotwatch: {message}", file=sys.stderr)
    return 2


def cmd_board(args: argparse.Namespace) -> int:
    if args.link is not None and args.tcp is not None:
        return _fail("simulate board: --link goes with a pty, not with --tcp")
    server = board_server(
        args.device,
        args.seed,
        tcp_port=args.tcp,
        link=args.link,
        clock=args.clock,
        speed=args.speed,
    )
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            server.start()
        except OSError as exc:
            return _fail(f"simulate board: {exc.strerror or exc}")
        try:
            first = server.address if args.tcp is not None else f"pty {server.address}"
            print(first, flush=True)
            stop.wait(args.seconds)
        finally:
            server.stop()
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    fleet = FleetSimulator(
        args.devices,
        args.seed,
        wall_clock(),
        rate=args.rate,
        anomalies=args.anomalies,
        anomaly_after=args.anomaly_after,
    )
    runner = FleetRunner(fleet, args.directory, partial=args.partial)
    try:
        runner.open()
    except OSError as exc:
        return _fail(f"simulate fleet: {args.directory}: {exc.strerror or exc}")
    print(f"fleet {args.directory}", flush=True)
    for name, device in fleet.anomaly_devices.items():
        print(f"anomaly {name} {device}", flush=True)
    stop = threading.Event()
    with _stop_on_signals(stop):
        runner.run(stop, args.seconds)
    print(
        f"simulate fleet: {runner.lines_written} lines, {runner.bytes_written} bytes",
        file=sys.stderr,
    )
    return 0


def _printable(text: str) -> str:
    """``text`` with control characters escaped: port descriptions come from USB devices."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def cmd_ports(args: argparse.Namespace) -> int:
    from engine.serial_source import list_ports

    ports = list_ports()
    if not ports:
        print("no serial ports found")
        return 0
    for port in ports:
        by_id = " ".join(port.by_id) or "-"
        print("\t".join(_printable(x) for x in (port.device, by_id, port.description)))
    return 0
