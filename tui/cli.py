"""The ``iotwatch`` command line.

Commands that need no console never import Textual, so they start fast and run headless.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import orjson

from engine import jsonline
from engine.azure_groups import dump_azure_groups, groups_to_toml, load_azure_groups, merge_groups
from engine.config import Config, ConfigError, load_config
from engine.jsonstream import FORMATS
from engine.replay import CAPTURE, InputError, InputSpec, replay
from engine.store import StoreError, StoreFault
from tui import run_cmd, simulate_cmd

DEFAULT_CONFIG = "iotwatch.toml"


class UsageError(Exception):
    """A usage or configuration problem: one line, exit status 2."""


INPUT_FORMATS = (*FORMATS, CAPTURE)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # "iotwatch: replay: ..." — every error line starts with "iotwatch: " (main adds it).
        command = self.prog.removeprefix("iotwatch").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    try:
        return metadata.version("iotwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="iotwatch",
        description="Local custom security alerts for IoT Hub logs, security-agent messages "
        "and Azure RTOS boards. Without a command, iotwatch opens the console on "
        "./iotwatch.toml (the configuration in the current folder); 'iotwatch demo' opens it on "
        "a simulated fleet with nothing to set up.",
        epilog="'iotwatch COMMAND --help' describes a command. Errors are one line on stderr "
        "starting with 'iotwatch:'; a usage or configuration error exits with status 2.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    rp = sub.add_parser("replay", help="evaluate finished inputs; alerts as JSON lines on stdout")
    rp.add_argument(
        "--config", metavar="F", help="iotwatch.toml (default: ./iotwatch.toml if present)"
    )
    rp.add_argument(
        "--groups",
        metavar="AZURE.json",
        action="append",
        default=[],
        help="Azure deviceSecurityGroups JSON; replaces same-named groups",
    )
    rp.add_argument(
        "--db", metavar="F", help="store events, quarantine and alerts in this SQLite file"
    )
    rp.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a file, or FORMAT:PATH (hub-log, hub-events, hub-messages, security-messages, "
        "serial-capture)",
    )

    xp = sub.add_parser(
        "export",
        help="a self-contained SQLite file (or alerts as CSV / JSON lines) from a database",
        description="Export a snapshot of an iotwatch database, consistent while a live session "
        "keeps writing. See docs/export.md.",
    )
    xp.add_argument(
        "--db",
        metavar="SRC",
        help="the database (default: [database] path of the configuration, else iotwatch.db)",
    )
    xp.add_argument(
        "--config",
        metavar="F",
        help="iotwatch.toml (default: ./iotwatch.toml if present), for its [database] path and "
        "[engine] hub",
    )
    xp.add_argument(
        "--out",
        metavar="FILE",
        required=True,
        help="the output file; '-' writes csv, jsonl or securityalert to stdout",
    )
    xp.add_argument(
        "--format",
        choices=("sqlite", "csv", "jsonl", "securityalert"),
        default="sqlite",
        help="sqlite (default): every table within the filters; csv, jsonl: alerts only "
        "(the alert record fields); securityalert: alerts as Log Analytics SecurityAlert JSON lines",
    )
    xp.add_argument("--since", metavar="T", help="from time T (RFC 3339, inclusive)")
    xp.add_argument("--until", metavar="T", help="up to time T (RFC 3339, exclusive)")
    xp.add_argument(
        "--device",
        metavar="ID|GLOB",
        action="append",
        default=[],
        help="only this device id or glob (case-sensitive); repeatable",
    )
    xp.add_argument(
        "--group",
        metavar="G",
        action="append",
        default=[],
        help="only devices of this security group (case-insensitive); repeatable",
    )
    xp.add_argument("--force", action="store_true", help="replace FILE if it exists")

    gp = sub.add_parser("groups", help="Azure deviceSecurityGroups JSON round trip")
    gsub = gp.add_subparsers(dest="action", parser_class=_Parser, required=True)
    gi = gsub.add_parser("import", help="Azure JSON → TOML [groups] tables on stdout")
    gi.add_argument("file", metavar="AZURE.json", help="a deviceSecurityGroups JSON file")
    ge = gsub.add_parser("export", help="the configuration's groups → Azure JSON on stdout")
    ge.add_argument(
        "--config", metavar="F", help="iotwatch.toml (default: ./iotwatch.toml if present)"
    )
    ge.add_argument(
        "--groups",
        metavar="AZURE.json",
        action="append",
        default=[],
        help="Azure deviceSecurityGroups JSON; replaces same-named groups (repeatable)",
    )

    sub.add_parser(
        "demo",
        help="the console on a simulated fleet and serial board (nothing to set up)",
        description="Open the console on a built-in simulated fleet of 30 devices and a simulated "
        "serial board, with a temporary database; nothing is written outside a temporary folder.",
    )
    run_cmd.add_parser(sub)
    simulate_cmd.add_parsers(sub)
    return parser


def load(config_path: str | None, groups: Sequence[str]) -> Config:
    """The configuration: ``config_path``, else ./iotwatch.toml if present, plus Azure groups."""
    if config_path is None and Path(DEFAULT_CONFIG).exists():
        config_path = DEFAULT_CONFIG
    config = load_config(config_path) if config_path else Config.default()
    for path in groups:
        config = merge_groups(config, load_azure_groups(path))
    return config


def _progress(done: int, total: int) -> None:
    pct = 100 * done / total if total else 100
    sys.stderr.write(f"\rreplay: {done / 1e6:,.1f} of {total / 1e6:,.1f} MB ({pct:.0f}%)")
    sys.stderr.flush()


def input_spec(text: str) -> InputSpec:
    """The input ``text`` names: ``PATH`` or ``FORMAT:PATH``. A ``NAME:`` prefix that looks like a
    format but is none (``hub-logs:x.json``) is refused, unless a file has that whole name."""
    spec = InputSpec.parse(text)
    head, sep, rest = text.partition(":")
    if (
        spec.format is None
        and sep
        and rest
        and re.fullmatch(r"[A-Za-z][\w-]+", head)  # not a drive letter ("C:")
        and not os.path.exists(text)
    ):
        close = difflib.get_close_matches(head.lower(), INPUT_FORMATS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"{text}: unknown format {head!r}: expected one of {', '.join(INPUT_FORMATS)}{hint}"
        )
    return spec


def cmd_replay(args: argparse.Namespace) -> int:
    config = load(args.config, args.groups)
    specs = [input_spec(text) for text in args.inputs]
    progress = _progress if sys.stderr.isatty() else None
    alerts, summary = asyncio.run(replay(config, specs, db=args.db, progress=progress))
    if progress is not None:
        sys.stderr.write("\r\033[K")
    out = sys.stdout.buffer
    for alert in alerts:
        out.write(jsonline.dumps(alert.to_record()))
    out.flush()
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    if args.action == "import":
        sys.stdout.write(groups_to_toml(load_azure_groups(args.file)))
        return 0
    config = load(args.config, args.groups)
    sys.stdout.buffer.write(
        orjson.dumps(dump_azure_groups(config.groups.values()), option=orjson.OPT_INDENT_2) + b"\n"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``iotwatch export`` (docs/export.md): a snapshot of a database, filtered, to a file."""
    import time

    from engine.export import ExportError, ExportFilter, export
    from engine.timestamps import parse_time

    def when(option: str, text: str | None) -> int | None:
        try:
            return None if text is None else parse_time(text)
        except ValueError:
            raise UsageError(f"{option}: {text!r} is not an RFC 3339 time") from None

    config = load(args.config, [])  # [database] path, and [engine] hub for securityalert
    db = args.db or config.db_path or "iotwatch.db"
    showing = False
    next_report = time.monotonic() + 0.5  # quick exports print no progress

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal showing, next_report
        now = time.monotonic()
        if now >= next_report or (showing and stage == "indexes" and done == total):
            showing, next_report = True, now + 0.25
            pct = f" {100 * done / total:3.0f}%" if stage == "events" and total else ""
            sys.stderr.write(f"\rexport: {stage}{pct}\033[K")
            sys.stderr.flush()

    try:
        flt = ExportFilter(
            since=when("--since", args.since),
            until=when("--until", args.until),
            devices=tuple(args.device),
            groups=tuple(args.group),
        )
        out = sys.stdout.buffer if args.out == "-" else args.out
        result = export(
            db,
            out,
            fmt=args.format,
            flt=flt,
            force=args.force,
            progress=progress if sys.stderr.isatty() else None,
            hub=config.hub,
        )
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if showing:
            sys.stderr.write("\r\033[K")
    print(result.summary(), file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args.config, args.groups)
    if args.clock is not None:
        try:
            run_cmd.clock_from(args.clock)
        except ValueError:
            raise UsageError(f"--clock: {args.clock!r} is not an RFC 3339 time") from None
    return run_cmd.run(args, config)


def cmd_console() -> int:
    """Bare ``iotwatch``: the console on ./iotwatch.toml, or a hint when there is none."""
    if not Path(DEFAULT_CONFIG).exists():
        raise UsageError(
            f"no {DEFAULT_CONFIG} here; try 'iotwatch demo' for a simulated fleet, "
            "or 'iotwatch --help'"
        )
    config = load(DEFAULT_CONFIG, [])
    from tui.app import run_console  # Textual is loaded only for the console

    return run_console(config, config.db_path or run_cmd.DEFAULT_DB)


def cmd_demo() -> int:
    from tui.demo import run_demo

    return run_demo()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iotwatch`` script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "groups":
            return cmd_groups(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command in simulate_cmd.COMMANDS:
            return simulate_cmd.run(args)
        if args.command == "demo":
            return cmd_demo()
        return cmd_console()
    except (UsageError, ConfigError, InputError, StoreError) as exc:
        print(f"iotwatch: {exc}", file=sys.stderr)
        return 2
    except StoreFault as exc:  # the database failed while in use (replay --db's writer)
        print(f"iotwatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or port the command needed, named by the message
        print(f"iotwatch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
