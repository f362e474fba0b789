"""File I/O for users' files: atomic output (a failed run never leaves a partial file or destroys an
existing one) and reading a CSV with every problem reported against the file."""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .errors import InputError, Problem


def _check_dir(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError([Problem(str(path), f"output directory {parent} does not exist")], "cannot write output")
    if path.exists() and path.is_dir():
        raise InputError([Problem(str(path), "is a directory")], "cannot write output")


def _final_mode(path: Path) -> int:
    """The mode the file would have had: the existing file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        um = os.umask(0)
        os.umask(um)
        return 0o666 & ~um


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path with the same suffix; on success rename it onto ``path``."""
    path = Path(path)
    _check_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=str(path.parent or "."))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, then rename.

    The temporary file is private while written; it gets the final file's usual mode before the rename.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def read_csv_strings(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A user's CSV file as strings (no NA guessing, headers stripped) and its label for errors.

    Raises :class:`InputError` naming the file when it is missing, a directory, not UTF-8, empty,
    malformed or without data rows."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise InputError([Problem(where, "file not found")])
    if path.is_dir():
        raise InputError([Problem(where, "is a directory, not a CSV file")])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError([Problem(where, f"not UTF-8 text (byte {e.start})")]) from None
    if not text.strip():
        raise InputError([Problem(where, "file is empty")])
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:  # pandas parser errors
        raise InputError([Problem(where, f"malformed CSV: {str(e).strip()}")]) from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputError([Problem(where, "no data rows")])
    return df, where
