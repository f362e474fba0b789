"""The ``plan`` process: standard output kept for the result alone, signals mapped to exit codes."""

from __future__ import annotations

import os
import sys

from planner.io import devnull_onto

EXIT_SIGNAL = {"SIGHUP": 129, "SIGINT": 130, "SIGTERM": 143}
EXIT_BROKEN_PIPE = 141


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM / SIGHUP handlers of the command line."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def drop_stdout() -> None:
    """After a broken pipe: send what is left to /dev/null, so that the exit flush stays quiet."""
    try:
        devnull_onto(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def isolate_stdout() -> None:
    """Keep the process's stdout for the command's result alone.

    File descriptor 1 is pointed at standard error (a solver library's C code that prints there,
    e.g. highspy's banner, now reaches stderr), and ``sys.stdout`` writes through a private
    duplicate of the original descriptor 1."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        fd = os.dup(1)
    except (OSError, ValueError, AttributeError):
        # no stdout at all: /dev/null on fd 1 (so no file opened later lands there) and for sys.stdout
        devnull_onto(1)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        return
    try:
        os.dup2(2, 1)
    except OSError:
        devnull_onto(1)
    sys.stdout = open(fd, "w", encoding="utf-8", buffering=1 if os.isatty(fd) else -1, closefd=True)


def install_signal_handlers() -> None:
    import signal

    def handler(signum, _frame):
        raise Terminated(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover - not the main thread
                pass
