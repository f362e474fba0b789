"""File I/O for users' files.

Reading (:func:`read_input`): only regular files are read, never devices, FIFOs, sockets or
directories; a file larger than the size limit, or a table with more rows than the row limit, is
refused before it is parsed (:mod:`planner.limits`). Table paths named inside a scenario resolve
inside the scenario's folder (:func:`confine`) unless a folder is explicitly allowed. Error messages
quote at most a short, sanitised token of a table's content (:func:`token`).

Writing (:func:`check_outputs`, :func:`atomic_write_text`): an output is written to a temporary file
in the destination folder and renamed onto the path, so a failed run never leaves a partial file or
destroys an existing one. The rules, applied before any work starts (exit 2 when one is broken):

* ``-`` means standard output;
* an output may not resolve to any input of the run (the scenario document, its tables, the plan
  being read, a trace) nor to another output of the same run;
* a symbolic link is followed: the file it points to is replaced (the link stays a link); the final
  target must be a regular file or not exist yet: devices, FIFOs, sockets and folders are refused,
  and so is anything under ``/dev``, ``/proc`` or ``/sys`` (``-o /dev/stdout`` included: use ``-o -``);
* the destination folder must exist and be writable; errors while writing (read-only file system,
  permissions, a full disk) are reported with the path.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from planner.errors import InputError, PlannerError, Problem
from planner.limits import limits

STDOUT = "-"
"""The output path meaning standard output."""

SYSTEM_DIRS = ("dev", "proc", "sys")
"""Outputs resolving under these top-level folders are refused (``/dev/stdout`` resolves to the
process's descriptor 1, which may be a file that must not be replaced)."""


# --------------------------------------------------------------------------------------------
# sanitised quoting


def token(value, limit: int = 40) -> str:
    """``repr`` of a short, printable prefix of ``value``: what an error may quote of a file's content."""
    s = str(value)
    cut = len(s) > limit
    s = s[:limit]
    s = "".join(ch if ch.isprintable() else "?" for ch in s)
    return repr(s) + ("..." if cut else "")


def tokens(values: Iterable, limit: int = 8) -> str:
    vals = [token(v, 32) for v in values]
    more = f" (+{len(vals) - limit} more)" if len(vals) > limit else ""
    return ", ".join(vals[:limit]) + more


# --------------------------------------------------------------------------------------------
# reading


def confine(value: str | os.PathLike, base_dir: Path, allow_dirs: Iterable[Path] = (), what: str = "table") -> Path:
    """The path a scenario's ``value`` names, checked to lie inside ``base_dir`` (or an allowed folder).

    Absolute paths and paths that climb out of the folder (``..``, or a symbolic link pointing
    outside) raise :class:`InputError` unless they resolve inside one of ``allow_dirs``.
    """
    raw = Path(value)
    if "\x00" in str(value):
        raise InputError([Problem(repr(str(value))[:60], f"{what} path holds a NUL byte")])
    p = raw if raw.is_absolute() else base_dir / raw
    real = Path(os.path.realpath(p))
    roots = [Path(os.path.realpath(base_dir))] + [Path(os.path.realpath(d)) for d in allow_dirs]
    for root in roots:
        if real == root or root in real.parents:
            return p
    where = "an absolute path" if raw.is_absolute() else "outside the scenario's folder"
    raise InputError([Problem(str(value), f"{what} path is {where} ({base_dir}); keep tables in the scenario's "
                                          "folder, or allow a folder explicitly (--allow-dir / allow_dirs)")])


def _limit_error(where: str, what: str) -> InputError:
    return InputError([Problem(where, what)])


def read_input(path: str | Path, what: str = "file") -> bytes:
    """The bytes of a regular file, within the size limit; :class:`InputError` naming the path otherwise."""
    path = Path(path)
    where = str(path)
    lim = limits()
    if "\x00" in where:
        raise InputError([Problem(repr(where)[:60], f"{what} path holds a NUL byte")])
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError([Problem(where, f"{what} not found")]) from None
    except OSError as e:
        raise InputError([Problem(where, f"cannot read: {e.strerror}")]) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError([Problem(where, f"is a directory, not a {what}")])
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InputError([Problem(where, f"is {kind}; only regular files are read")])
    if st.st_size > lim.max_file_bytes:
        raise _limit_error(where, f"is {st.st_size / 2**20:.1f} MiB, above the {lim.max_file_mb:g} MiB limit "
                                  f"(raise it with PLANNER_MAX_FILE_MB)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError([Problem(where, f"cannot read: {e.strerror}")]) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat above
            raise InputError([Problem(where, "is not a regular file; only regular files are read")])
        chunks, total = [], 0
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > lim.max_file_bytes:  # a file that grows, or reports no size (/proc)
                raise _limit_error(where, f"is larger than the {lim.max_file_mb:g} MiB limit "
                                          f"(raise it with PLANNER_MAX_FILE_MB)")
    except OSError as e:
        raise InputError([Problem(where, f"cannot read: {e.strerror}")]) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text_input(path: str | Path, what: str = "file") -> str:
    """:func:`read_input` decoded as UTF-8 (a BOM is dropped); empty files and other encodings refused."""
    raw = read_input(path, what)
    where = str(path)
    if not raw.strip():
        raise InputError([Problem(where, "file is empty")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError([Problem(where, f"not UTF-8 text (byte {e.start})")]) from None


def parse_csv_strings(text: str, where: str) -> pd.DataFrame:
    """A CSV text as strings (no NA guessing, headers stripped), within the row limit."""
    lim = limits()
    rows = text.count("\n")
    if rows > lim.max_rows + 1:
        raise _limit_error(where, f"has about {rows:,} lines, above the {lim.max_rows:,}-row limit "
                                  f"(raise it with PLANNER_MAX_ROWS)")
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:  # pandas parser errors name lines and field counts, never content
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError([Problem(where, f"malformed CSV: {msg[:200]}")]) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_csv_strings(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A user's CSV file as strings (no NA guessing, headers stripped) and its label for errors.

    Raises :class:`InputError` naming the file when it is missing, not a regular file, too large,
    not UTF-8, empty, malformed or without data rows."""
    where = str(path)
    df = parse_csv_strings(read_text_input(path, "CSV file"), where)
    if df.empty:
        raise InputError([Problem(where, "no data rows")])
    return df, where


# --------------------------------------------------------------------------------------------
# writing


def devnull_onto(fd: int) -> None:
    """Point file descriptor ``fd`` at /dev/null (also when ``fd`` is closed: it is then taken)."""
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str | Path, inputs: Iterable[str | Path] = (), option: str = "-o") -> Path | None:
    """Check one output path against the rules in the module docstring; None means stdout."""
    if str(path) == STDOUT:
        return None
    if "\x00" in str(path):
        raise InputError([Problem(option, "the path holds a NUL byte")], "cannot write output")
    path = Path(path)
    label = f"{option} {path}"
    real = Path(os.path.realpath(path))
    for p in (Path(os.path.abspath(path)), real):
        if p.parts[1:2] and p.parts[1] in SYSTEM_DIRS:
            raise InputError([Problem(label, f"is under /{p.parts[1]}; refusing to write a system entry "
                                             "(use -o - for standard output)")], "cannot write output")
    for src in inputs:
        if src is None or str(src).startswith("<"):
            continue
        if _same_file(real, Path(src)):
            raise InputError([Problem(label, f"is an input of this run ({src}); refusing to overwrite it")],
                             "cannot write output")
    if os.path.lexists(real):  # a link loop too: stat fails, reported below
        try:
            st = os.stat(real)
        except OSError as e:
            raise InputError([Problem(label, f"cannot use: {e.strerror}")], "cannot write output") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError([Problem(label, "is a directory")], "cannot write output")
        if not stat.S_ISREG(st.st_mode):
            hint = " (use -o - for standard output)" if str(path).startswith("/dev/") or "/proc/" in str(real) else ""
            raise InputError([Problem(label, f"is not a regular file; refusing to replace it{hint}")],
                             "cannot write output")
    parent = real.parent  # a dangling link's target is created
    if not parent.exists():
        raise InputError([Problem(label, f"output directory {path.parent} does not exist")], "cannot write output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError([Problem(label, f"output directory {path.parent} is not writable")], "cannot write output")
    return path


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path] = ()) -> None:
    """Check every output of a run (option name -> path) against the inputs and each other."""
    inputs = [p for p in inputs if p is not None]
    seen: list[tuple[str, Path]] = []
    stdout_users = []
    for opt, p in outputs.items():
        if p is None:
            continue
        q = check_output(p, inputs, opt)
        if q is None:
            stdout_users.append(opt)
            continue
        rq = Path(os.path.realpath(q))
        for opt2, r2 in seen:
            if rq == r2:
                raise InputError([Problem(f"{opt} {p}", f"is also the {opt2} output; give two different files")],
                                 "cannot write output")
        seen.append((opt, rq))
    if len(stdout_users) > 1:
        raise InputError([Problem(" and ".join(stdout_users), "both write to standard output; give one a file")],
                         "cannot write output")


def _final_mode(path: Path) -> int:
    """The mode the file would have had: the existing file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        um = os.umask(0)
        os.umask(um)
        return 0o666 & ~um


def _os_error(path: Path, e: OSError) -> InputError:
    return InputError([Problem(str(path), f"cannot write: {e.strerror or e}")], "cannot write output")


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path with the same suffix; on success rename it onto ``path``.

    A symbolic link is followed (its target is replaced, the link kept); non-regular targets are
    refused (:func:`check_output`)."""
    path = Path(path)
    check_output(path)
    target = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=str(target.parent))
        os.close(fd)
    except OSError as e:
        raise _os_error(path, e) from None
    try:
        yield tmp
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _os_error(path, e) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, then rename.

    ``-`` writes to standard output. The temporary file is private while written; it gets the final
    file's usual mode before the rename.
    """
    if str(path) == STDOUT:
        write_stdout(text)
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


class StdoutClosed(PlannerError):
    """Standard output was closed before the result was written (``plan solve | head``)."""

    exit_code = 141


def write_stdout(text: str) -> None:
    """Write the result to standard output; a closed pipe raises :class:`StdoutClosed`."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed("standard output was closed early") from None


class SafeStdout:
    """A file object over ``sys.stdout`` (for rich Consoles) whose closed pipe raises :class:`StdoutClosed`
    instead of an OSError that the command-line parser would turn into a silent exit 1."""

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except BrokenPipeError:
            raise StdoutClosed("standard output was closed early") from None

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            raise StdoutClosed("standard output was closed early") from None

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", "utf-8") or "utf-8"
