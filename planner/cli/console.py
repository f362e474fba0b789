"""What every command shares: the console on standard error, output to stdout or a file, option checks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console

from planner.errors import InputError
from planner.io import SafeStdout, atomic_write_text, write_stdout

err = Console(stderr=True, highlight=False, soft_wrap=True)
"""Messages, warnings, progress and summaries (standard output carries only a command's result)."""


def esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def stdout_console(**kw) -> Console:
    """A console on standard output (a closed pipe ends the command with exit 141, quietly)."""
    kw.setdefault("soft_wrap", True)
    return Console(file=SafeStdout(), highlight=False, **kw)


def emit_json(text: str, output: Optional[Path]) -> None:
    if output is None or str(output) == "-":
        write_stdout(text)
    else:
        atomic_write_text(output, text)


ALLOW_DIR_HELP = ("Let the scenario's table paths point into this folder too (repeatable); by default they "
                  "must lie inside the scenario's own folder.")


def finite(name: str, value: Optional[float], positive: bool = False, minimum: Optional[float] = None) -> None:
    """Every numeric option is finite (no nan/inf), and in range."""
    import math

    if value is None:
        return
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value:g}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum:g}, got {value:g}")
