"""Layering: the engine never imports the console (``textual``) or the ``tui`` package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import engine

ENGINE = Path(engine.__file__).resolve().parent
FORBIDDEN = ("textual", "tui")


def forbidden_imports(source: str, name: str) -> list[str]:
    """``name:line: module`` for every import of a forbidden package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [f"{name}:{node.lineno}: {m}" for m in modules if m.split(".")[0] in FORBIDDEN]
    return found


def test_engine_sources_do_not_import_textual_or_tui() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 5
    found = [
        hit
        for path in files
        for hit in forbidden_imports(
            path.read_text(encoding="utf-8"), str(path.relative_to(ENGINE.parent))
        )
    ]
    assert found == []


def test_forbidden_import_check_sees_every_spelling() -> None:
    """The checker catches plain, dotted, ``from`` and nested (function-level) imports, and
    leaves look-alikes and relative imports alone."""
    source = (
        "import textual\n"
        "import os, tui.cli\n"
        "from textual.app import App\n"
        "def f():\n"
        "    from tui import cli\n"
        "import textualize\n"
        "from . import tui\n"
    )
    assert forbidden_imports(source, "x.py") == [
        "x.py:1: textual",
        "x.py:2: tui.cli",
        "x.py:3: textual.app",
        "x.py:5: tui",
    ]


def test_importing_the_engine_loads_no_textual() -> None:
    code = (
        "import engine.replay, engine.evaluator, engine.store, engine.config, engine.jsonstream\n"
        "import sys\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
